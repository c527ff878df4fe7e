"""The adversarial-training pieces the GAN trainers share (StyleGAN2, e4e's latent
discriminator, L2M-GAN): the logistic losses, R1, the parameter EMA and NVIDIA's lazy Adam."""

import jax
import jax.numpy as jnp
import optax


def logistic_loss(logits, real: bool):
    """The non-saturating logistic loss, softplus(−logits) for reals and softplus(logits)
    for fakes (BCE with logits against 1 or 0), averaged over all entries."""
    return jnp.mean(jax.nn.softplus(-logits if real else logits))


def r1_penalty(discriminator, x):
    """Per-sample ‖∇_x D(x)‖² over every non-batch axis of x, where `discriminator` maps a
    batch to logits. The gradient is of the summed logits, as in the originals (StyleGAN2's
    minibatch-stddev couples the samples). It stays differentiable: the caller's parameter
    gradient goes through it."""
    grads = jax.grad(lambda v: jnp.sum(discriminator(v)))(x)
    return jnp.sum(jnp.square(grads), axis=tuple(range(1, x.ndim)))


def ema_update(ema, params, beta):
    """Moves the averaged parameters towards the trained ones: params + β·(ema − params)."""
    return jax.tree_util.tree_map(lambda p, e: p + beta * (e - p), params, ema)


def ema_beta(global_batch_size: int, cur_nimg, ema_kimg: float, rampup: float | None):
    """NVIDIA's generator EMA: half-life ema_kimg thousand images of the *global* batch,
    optionally ramped up over the first images (rampup × images seen)."""
    ema_nimg = ema_kimg * 1000.0
    if rampup is not None:
        ema_nimg = jnp.minimum(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (global_batch_size / jnp.maximum(ema_nimg, 1e-8))


def lazy_adam(lr: float, betas, interval: int | None):
    """Adam with NVIDIA's lazy-regularisation correction: a regulariser run every
    `interval` steps adds one update per interval, so lr and betas are scaled by
    c = interval / (interval + 1)."""
    c = 1.0 if not interval else interval / (interval + 1)
    return optax.adam(lr * c, b1=betas[0] ** c, b2=betas[1] ** c, eps=1e-8)
