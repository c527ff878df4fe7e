"""StyleGAN2 training with NVIDIA's semantics (stylegan2-ada-pytorch `loss.py` and
`training_loop.py`):

- per iteration the phases G main → G path-length (every pl_interval) → D main → D R1 (every
  r1_interval), each with its own latents, G's update visible to the D phases;
- non-saturating logistic loss; lazy R1 on reals scaled by the interval; path-length
  regularisation on a pl_batch_shrink-times smaller batch with noise scaled by 1/√(H·W) and
  its moving mean (decay pl_decay);
- style mixing with one crossover layer per batch (probability style_mixing_prob);
- Adam with the lazy-regularisation correction of lr and betas; the mapping network's ×0.01
  learning rate comes from its equalized-lr parameterisation, as in the original;
- generator EMA with a half-life of ema_kimg thousand images of the global batch, with an
  optional ramp-up; w_avg tracked by the D phase's generator call and copied to the EMA;
- ADA (config.augment, stylejax.augment): D sees augmented images everywhere, as the official
  run_D does: reals and fakes in D's main loss, fakes in G's, and the reals inside R1, whose
  gradient is taken with respect to the un-augmented reals, through the pipeline. p lives in
  the train state (a traced scalar: one compiled step for every p); r_t = E[sign(D(real))] is
  accumulated over the global batch (D main and R1 reals, as the official collector counts
  them) and p moves every ada_interval steps towards r_t = ada_target;
- transfer learning (model.resume: G, G_ema and D from a model folder), freezeD
  (train.freeze_d) and class-conditional G and D (model.c_dim, data.use_labels; batches
  carry one-hot labels "c", and fakes take labels drawn from the batch's, as the official
  loop draws them from the data set's).

The whole iteration is one jitted function; regularisers run under `lax.cond`, so one
compiled step serves every iteration.

With train.objective = "renderer" (the synthetic64 variant) there is no discriminator: G(z)
is taught the synthetic faces' renderer directly, `render(factors(z))` with
data.factor_latents' map from z to the 22 factors, by an L1 loss on an image pyramid
(full size and 2x, 4x, 8x average-pooled), on freshly rendered batches. w_avg and the EMA
are kept as in the adversarial objective, so the result is a standard StyleGAN2.
"""

import functools
import itertools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stylejax import augment, images
from stylejax.data import factor_latents
from stylejax.data import labels as labels_lib
from stylejax.metrics import pyramid_l1
from stylejax.models import stylegan2 as sg
from stylejax.train import gan, loop


def generator_kwargs(config) -> dict[str, Any]:
    """Generator constructor arguments (JSON-friendly: also the exported model config)."""
    m = config.model
    kwargs = dict(
        z_dim=m.z_dim,
        w_dim=m.w_dim,
        img_resolution=m.resolution,
        channels=list(sg.channels_from_base(m.resolution, m.channel_base, m.channel_max)),
        mapping_layers=m.mapping_layers,
        architecture=m.g_architecture,
        conv_clamp=m.conv_clamp,
    )
    if c_dim(config):
        kwargs["c_dim"] = c_dim(config)
    return kwargs


def discriminator_kwargs(config) -> dict[str, Any]:
    m = config.model
    kwargs = dict(
        img_resolution=m.resolution,
        channels=list(sg.channels_from_base(m.resolution, m.channel_base, m.channel_max)),
        architecture=m.d_architecture,
        conv_clamp=m.conv_clamp,
        mbstd_group_size=m.mbstd_group_size,
    )
    if c_dim(config):
        kwargs["c_dim"] = c_dim(config)
    return kwargs


def c_dim(config) -> int:
    """The number of classes G and D are conditioned on (0: unconditional)."""
    return int(config.model.get("c_dim", 0) or 0)


def build_models(config) -> tuple[sg.Generator, sg.Discriminator]:
    m = config.model
    dtype = jnp.dtype(m.dtype)
    tuples = lambda kw: dict(kw, channels=tuple(kw["channels"]))  # noqa: E731 (hashable)
    G = sg.Generator(**tuples(generator_kwargs(config)), fused_modconv=m.fused_modconv, dtype=dtype)
    D = sg.Discriminator(**tuples(discriminator_kwargs(config)), dtype=dtype)
    return G, D


def optimizers(config):
    """G's and D's Adam. The adversarial objective keeps the lazy-regularisation factor
    even when a regulariser's weight is 0, as the official loop does (its G_reg_interval
    and D_reg_interval stay 4 and 16; the empty phase only skips its update); the
    renderer objective has no regularisation phases."""
    t = config.train
    adversarial = t.objective == "adversarial"
    g_interval = t.pl_interval if adversarial else None
    d_interval = t.r1_interval if adversarial else None
    return (
        gan.lazy_adam(t.g_lr, t.betas, g_interval),
        gan.lazy_adam(t.d_lr, t.betas, d_interval),
    )


def init_state(config, G, D, g_tx, d_tx, rng) -> dict[str, Any]:
    g_rng, d_rng = jax.random.split(rng)
    m = config.model
    labels = (jnp.zeros((1, c_dim(config))),) if c_dim(config) else ()
    g_vars = sg.init_variables(G, g_rng, jnp.zeros((1, m.z_dim)), *labels)
    d_vars = D.init(d_rng, jnp.zeros((1, m.resolution, m.resolution, 3)), *labels)
    state = {
        "step": jnp.zeros((), jnp.int32),
        "g": g_vars,
        "g_ema": jax.tree_util.tree_map(jnp.copy, g_vars),
        "d": d_vars,
        "g_opt": g_tx.init(g_vars["params"]),
        "d_opt": d_tx.init(d_vars["params"]),
        "pl_mean": jnp.zeros((), jnp.float32),
    }
    if augment_spec(config) is not None:
        state["ada"] = {
            "p": jnp.asarray(config.augment.p, jnp.float32),
            # sign(D(real)) summed over the reals seen since p last moved, and their count.
            "rt_sum": jnp.zeros((), jnp.float32),
            "rt_count": jnp.zeros((), jnp.float32),
        }
    return state


def augment_spec(config) -> augment.AugmentSpec | None:
    """The ADA pipeline's spec, or None when D sees plain images: config.augment.preset "",
    or a fixed p of 0 (as in the official loop, which then builds no pipe)."""
    a = config.get("augment")
    if not a or not a.preset:
        return None
    if a.ada_target is None and not a.p:
        return None
    return augment.AugmentSpec.preset(a.preset)


def generate(G, config, g_vars, z, rng, update_w_avg=False, c=None):
    """G(z[, c]) with training-time style mixing and random noise. Returns (img, ws,
    buffers). The mixing latents share the labels c, as in the official run_G."""
    k_mix, k_cut, k_prob, k_noise = jax.random.split(rng, 4)
    labels = () if c is None else (c,)
    ws, updated = G.apply(
        g_vars, z, *labels, update_w_avg=update_w_avg, method=G.map, mutable=["buffers"]
    )
    prob = config.train.style_mixing_prob
    if prob > 0:
        num_ws = ws.shape[1]
        cutoff = jax.random.randint(k_cut, (), 1, num_ws)
        cutoff = jnp.where(jax.random.uniform(k_prob) < prob, cutoff, num_ws)
        ws2 = G.apply(g_vars, jax.random.normal(k_mix, z.shape), *labels, method=G.map)
        ws = sg.mix_styles(ws, ws2, cutoff)
    img = synthesize(G, g_vars, ws, k_noise)
    return img, ws, updated["buffers"]


def synthesize(G, g_vars, ws, noise_rng):
    return G.apply(g_vars, ws, "random", method=G.synthesize, rngs={"noise": noise_rng})


def path_lengths(G, g_vars, ws, noise_rng, pl_rng):
    """‖J_wᵀ y‖ per sample for y ~ N(0, I)/√(H·W) (the image-space noise)."""
    img_shape = jax.eval_shape(lambda w: synthesize(G, g_vars, w, noise_rng), ws).shape
    h, w = img_shape[1], img_shape[2]
    pl_noise = jax.random.normal(pl_rng, img_shape) / jnp.sqrt(h * w)
    grads = jax.grad(lambda w_: jnp.sum(synthesize(G, g_vars, w_, noise_rng) * pl_noise))(ws)
    return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads), axis=2), axis=1))


def global_norm(tree):
    return optax.tree.norm(tree)


def d_layers(config) -> list[str]:
    """The discriminator's layers ("b64/fromrgb", ...) in stylegan2-ada-pytorch's order, the
    order freezeD counts: blocks from the highest resolution down, in each fromrgb (the
    first block, or every block of a 'skip' D), conv0, conv1, then skip ('resnet'). The 4x4
    epilogue and a conditional D's label mapping are never counted (never frozen)."""
    m = config.model
    layers = []
    for res in sg.resolutions(m.resolution)[:0:-1]:
        if res == m.resolution or m.d_architecture == "skip":
            layers.append(f"b{res}/fromrgb")
        layers += [f"b{res}/conv0", f"b{res}/conv1"]
        if m.d_architecture == "resnet":
            layers.append(f"b{res}/skip")
    return layers


def frozen_d_layers(config) -> list[str]:
    """The first train.freeze_d layers of d_layers: freezeD (Mo et al. 2020) as
    stylegan2-ada-pytorch's --freezed counts them (its layers are then buffers)."""
    k = int(config.train.get("freeze_d", 0) or 0)
    if k < 0:
        raise ValueError(f"train.freeze_d={k}: expected a number of layers >= 0")
    return d_layers(config)[:k]


def freeze(updates, frozen: list[str]):
    """Zeroes the updates of the `frozen` layers' parameters (weights and biases)."""
    if not frozen:
        return updates
    prefixes = tuple(f"{name}/" for name in frozen)

    def leaf(path, u):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        return jnp.zeros_like(u) if name.startswith(prefixes) else u

    return jax.tree_util.tree_map_with_path(leaf, updates)


def r1_and_logits(discriminator, x):
    """gan.r1_penalty's per-sample ‖∇_x sum D(x)‖², and the logits of the same forward pass
    (ADA's r_t counts the R1 phase's real signs too)."""
    grads, logits = jax.grad(lambda v: (jnp.sum(out := discriminator(v)), out), has_aux=True)(x)
    return jnp.sum(jnp.square(grads), axis=tuple(range(1, x.ndim))), logits


def train_step(config, G, D, g_tx, d_tx, state, batch):
    t = config.train
    real = batch["image"]
    real_c = batch.get("c")  # one-hot labels of a conditional run
    batch_size = real.shape[0]
    z_dim = config.model.z_dim
    step = state["step"]
    rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), step)
    k_gmain, k_greg, k_dmain, k_dreg = jax.random.split(rng, 4)
    # Keys of ADA's draws and the fakes' labels: a stream of their own, so that a run
    # without them draws exactly what it always drew.
    k_aug_g, k_aug_fake, k_aug_real, k_aug_r1, k_c_g, k_c_pl, k_c_d = jax.random.split(
        jax.random.fold_in(rng, 1), 7
    )
    g_vars, d_vars = state["g"], state["d"]
    spec = augment_spec(config)
    p = state["ada"]["p"] if spec is not None else None
    frozen = frozen_d_layers(config)
    metrics = {}

    def run_D(variables, img, c, key):
        """D(augment(img), c), the official run_D: augmented with probability p when ADA
        is on (a fresh draw per call), differentiable through the pipeline."""
        if spec is not None:
            img = augment.augment(img, p, key, spec)
        return D.apply(variables, img, c)

    def fake_labels(key, n):
        """Labels for n fakes: drawn from the batch's labels (the data set's distribution)."""
        if real_c is None:
            return None
        return real_c[jax.random.randint(key, (n,), 0, batch_size)]

    # ---- G main: non-saturating loss.
    def g_main_loss(g_params, key):
        kz, kg = jax.random.split(key)
        z = loop.split_over_devices(jax.random.normal(kz, (batch_size, z_dim)))
        c = fake_labels(k_c_g, batch_size)
        img, _, _ = generate(G, config, {**g_vars, "params": g_params}, z, kg, c=c)
        return gan.logistic_loss(run_D(d_vars, img, c, k_aug_g), real=True)

    g_loss, g_grads = jax.value_and_grad(g_main_loss)(g_vars["params"], k_gmain)
    g_updates, g_opt = g_tx.update(g_grads, state["g_opt"], g_vars["params"])
    g_params = optax.apply_updates(g_vars["params"], g_updates)
    metrics["g_loss"] = g_loss
    metrics["g_grad_norm"] = global_norm(g_grads)

    # ---- G reg: path-length regularisation, lazily every pl_interval steps.
    def g_reg(operand):
        g_params, g_opt, pl_mean = operand
        kz, kg, kpl = jax.random.split(k_greg, 3)
        n = max(batch_size // t.pl_batch_shrink, 1)
        z = loop.split_over_devices(jax.random.normal(kz, (n, z_dim)))
        c = fake_labels(k_c_pl, n)

        def loss_fn(params):
            variables = {**g_vars, "params": params}
            k_gen, k_noise = jax.random.split(kg)
            _, ws, _ = generate(G, config, variables, z, k_gen, c=c)
            lengths = path_lengths(G, variables, ws, k_noise, kpl)
            new_mean = pl_mean + t.pl_decay * (jnp.mean(lengths) - pl_mean)
            penalty = jnp.square(lengths - new_mean)
            return jnp.mean(penalty) * t.pl_weight * t.pl_interval, (new_mean, jnp.mean(penalty))

        (_, (new_mean, penalty)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g_params)
        updates, g_opt = g_tx.update(grads, g_opt, g_params)
        return (
            optax.apply_updates(g_params, updates),
            g_opt,
            jax.lax.stop_gradient(new_mean),
            penalty,
        )

    def no_g_reg(operand):
        g_params, g_opt, pl_mean = operand
        return g_params, g_opt, pl_mean, jnp.zeros((), jnp.float32)

    pl_mean = state["pl_mean"]
    if t.pl_weight > 0:
        do_pl = step % t.pl_interval == 0
        g_params, g_opt, pl_mean, pl_penalty = jax.lax.cond(
            do_pl, g_reg, no_g_reg, (g_params, g_opt, pl_mean)
        )
        metrics["pl_penalty"] = (pl_penalty, do_pl.astype(jnp.float32))
        metrics["pl_mean"] = pl_mean

    # ---- D main: logistic loss on G's (updated) fakes and the reals; w_avg tracked here.
    kz, kg = jax.random.split(k_dmain)
    z = loop.split_over_devices(jax.random.normal(kz, (batch_size, z_dim)))
    gen_c = fake_labels(k_c_d, batch_size)
    gen_img, _, g_buffers = generate(
        G, config, {**g_vars, "params": g_params}, z, kg, update_w_avg=True, c=gen_c
    )
    gen_img = jax.lax.stop_gradient(gen_img)

    def d_main_loss(d_params):
        variables = {**d_vars, "params": d_params}
        fake_logits = run_D(variables, gen_img, gen_c, k_aug_fake)
        real_logits = run_D(variables, real, real_c, k_aug_real)
        loss = gan.logistic_loss(fake_logits, real=False) + gan.logistic_loss(real_logits, True)
        return loss, (jnp.mean(fake_logits), jnp.mean(real_logits), jnp.sum(jnp.sign(real_logits)))

    (d_loss, (fake_mean, real_mean, real_signs)), d_grads = jax.value_and_grad(
        d_main_loss, has_aux=True
    )(d_vars["params"])
    d_updates, d_opt = d_tx.update(d_grads, state["d_opt"], d_vars["params"])
    d_params = optax.apply_updates(d_vars["params"], freeze(d_updates, frozen))
    metrics.update(
        d_loss=d_loss,
        d_fake_logits=fake_mean,
        d_real_logits=real_mean,
        d_grad_norm=global_norm(d_grads),
    )

    # ---- D reg: R1 on reals, lazily every r1_interval steps. With ADA, R1's reals are
    # augmented inside D and the gradient is taken with respect to the un-augmented reals.
    def d_reg(operand):
        d_params, d_opt = operand

        def loss_fn(params):
            variables = {**d_vars, "params": params}
            if spec is None:
                penalty = gan.r1_penalty(lambda x: D.apply(variables, x, real_c), real)
                signs = jnp.zeros((), jnp.float32)
            else:
                penalty, logits = r1_and_logits(
                    lambda x: run_D(variables, x, real_c, k_aug_r1), real
                )
                signs = jnp.sum(jnp.sign(jax.lax.stop_gradient(logits)))
            loss = jnp.mean(penalty) * (t.r1_gamma / 2) * t.r1_interval
            return loss, (jnp.mean(penalty), signs)

        (_, (penalty, signs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_params)
        updates, d_opt = d_tx.update(grads, d_opt, d_params)
        return optax.apply_updates(d_params, freeze(updates, frozen)), d_opt, penalty, signs

    def no_d_reg(operand):
        d_params, d_opt = operand
        return d_params, d_opt, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)

    real_count = jnp.asarray(batch_size, jnp.float32)
    if t.r1_gamma > 0:
        do_r1 = step % t.r1_interval == 0
        d_params, d_opt, r1, r1_signs = jax.lax.cond(do_r1, d_reg, no_d_reg, (d_params, d_opt))
        metrics["r1_penalty"] = (r1, do_r1.astype(jnp.float32))
        real_signs = real_signs + r1_signs
        real_count = real_count + batch_size * do_r1.astype(jnp.float32)

    # ---- Generator EMA (parameters lerped, buffers copied), on the global batch size.
    beta = gan.ema_beta(batch_size, step * batch_size, t.ema_kimg, t.ema_rampup)
    g_ema_params = gan.ema_update(state["g_ema"]["params"], g_params, beta)
    new_g = {**g_vars, "params": g_params, "buffers": g_buffers}
    metrics["g_param_norm"] = global_norm(g_params)
    metrics["d_param_norm"] = global_norm(d_params)
    new_state = {
        "step": step + 1,
        "g": new_g,
        "g_ema": {**state["g_ema"], "params": g_ema_params, "buffers": g_buffers},
        "d": {**d_vars, "params": d_params},
        "g_opt": g_opt,
        "d_opt": d_opt,
        "pl_mean": pl_mean,
    }
    if spec is not None:
        new_state["ada"] = ada_update(config, state["ada"], step + 1, real_signs, real_count)
        # The p this step used, and r_t = E[sign(D(real))] over this step's reals (weighted
        # by their count, so a logged window's mean is that window's r_t).
        metrics["augment_p"] = p
        metrics["ada_rt"] = (real_signs / real_count, real_count)
    return new_state, metrics


def ada_update(config, ada, new_step, signs, count):
    """Adds a step's real signs to the running sums; every ada_interval steps (when the step
    counter reaches a multiple, as the official batch_idx does) moves p with
    augment.update_p (unless ada_target is None: fixed p) and restarts the sums."""
    a = config.augment
    rt_sum, rt_count = ada["rt_sum"] + signs, ada["rt_count"] + count
    due = new_step % a.ada_interval == 0
    p = ada["p"]
    if a.ada_target is not None:
        moved, _ = augment.update_p(
            p, rt_sum, rt_count, config.batch_size, a.ada_interval, a.ada_target, a.ada_kimg
        )
        # The official loop clips p at 0 only; issue 21 asks for [0, 1], so p is clipped at 1
        # too (every probability multiplier * p saturates there anyway, for the presets'
        # multipliers of 1).
        p = jnp.where(due, jnp.minimum(moved, 1.0), p)
    zero = jnp.zeros((), jnp.float32)
    return {
        "p": p,
        "rt_sum": jnp.where(due, zero, rt_sum),
        "rt_count": jnp.where(due, zero, rt_count),
    }


def lr_factor(config, step):
    """The renderer objective's learning-rate factor: 1, then a cosine to 0 from
    train.lr_decay_start × num_steps (a smaller step size for the fine details at the end)."""
    start = config.train.lr_decay_start * config.num_steps
    progress = jnp.clip((step - start) / max(config.num_steps - start, 1), 0.0, 1.0)
    return 0.5 * (1 + jnp.cos(jnp.pi * progress))


def init_renderer_state(config, G, g_tx, rng) -> dict[str, Any]:
    g_vars = sg.init_variables(G, rng, jnp.zeros((1, config.model.z_dim)))
    return {
        "step": jnp.zeros((), jnp.int32),
        "g": g_vars,
        "g_ema": jax.tree_util.tree_map(jnp.copy, g_vars),
        "g_opt": g_tx.init(g_vars["params"]),
    }


def renderer_step(config, G, g_tx, state, batch):
    """One supervised step: G(batch["z"]) against batch["image"] = render(factors(z))."""
    t = config.train
    step, g_vars = state["step"], state["g"]
    k_noise = jax.random.fold_in(jax.random.PRNGKey(config.seed), step)

    def loss_fn(params):
        variables = {**g_vars, "params": params}
        ws, updated = G.apply(
            variables, batch["z"], update_w_avg=True, method=G.map, mutable=["buffers"]
        )
        img = synthesize(G, variables, ws, k_noise)
        return pyramid_l1(img, batch["image"], batch["weight"]), (img, updated["buffers"])

    (loss, (img, buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g_vars["params"])
    updates, g_opt = g_tx.update(grads, state["g_opt"], g_vars["params"])
    decay = lr_factor(config, step)  # Adam's steps are proportional to the lr
    updates = jax.tree_util.tree_map(lambda u: u * decay, updates)
    # The mapping's ×0.01 equalized-lr multiplier suits adversarial training over millions
    # of images; supervised, its steps are scaled back up so it learns the factor map.
    scale = t.mapping_lr_scale
    updates = {
        **updates,
        "mapping": jax.tree_util.tree_map(lambda u: u * scale, updates["mapping"]),
    }
    g_params = optax.apply_updates(g_vars["params"], updates)
    batch_size = batch["z"].shape[0]
    beta = gan.ema_beta(batch_size, step * batch_size, t.ema_kimg, t.ema_rampup)
    mse = jnp.mean(jnp.square(img - batch["image"]))
    metrics = {
        "loss": loss,
        "psnr": 10 * jnp.log10(4.0 / mse),  # images span 2
        "g_grad_norm": global_norm(grads),
        "lr_factor": decay,
    }
    new_state = {
        "step": step + 1,
        "g": {**g_vars, "params": g_params, "buffers": buffers},
        "g_ema": {
            **state["g_ema"],
            "params": gan.ema_update(state["g_ema"]["params"], g_params, beta),
            "buffers": buffers,
        },
        "g_opt": g_opt,
    }
    return new_state, metrics


def make_task(config, mesh=None, frozen: str = "load") -> loop.Task:
    del mesh, frozen  # no frozen networks; the engine shards the state
    resolve_labels(config)
    G, D = build_models(config)
    g_tx, d_tx = optimizers(config)
    renderer = config.train.objective == "renderer"
    sample_z = jax.random.normal(
        jax.random.PRNGKey(config.seed + 1), (config.num_samples, config.model.z_dim)
    )
    n_classes = c_dim(config)
    # A conditional G's sample grid cycles through the classes.
    sample_c = (
        (jax.nn.one_hot(jnp.arange(config.num_samples) % n_classes, n_classes),)
        if n_classes
        else ()
    )

    @jax.jit
    def samples(state):
        return G.apply(state["g_ema"], sample_z, *sample_c, noise_mode="const")

    res = config.model.resolution
    batch_spec = {"image": jax.ShapeDtypeStruct((config.batch_size, res, res, 3), jnp.float32)}
    if renderer:
        batch_spec["z"] = jax.ShapeDtypeStruct((config.batch_size, config.model.z_dim), jnp.float32)
        batch_spec["weight"] = jax.ShapeDtypeStruct((config.batch_size, res, res, 1), jnp.float32)
        return loop.Task(
            init_state=functools.partial(init_renderer_state, config, G, g_tx),
            train_step=functools.partial(renderer_step, config, G, g_tx),
            samples=samples,
            global_batch_size=config.batch_size,
            parameters=lambda s: {"G": s["g"]["params"]},
            batch_spec=batch_spec,
        )
    if n_classes:
        batch_spec["c"] = jax.ShapeDtypeStruct((config.batch_size, n_classes), jnp.float32)
    if augment_spec(config) is None and config.get("augment") and config.augment.preset:
        logging.warning(
            "augment.preset=%r with a fixed p of 0 (augment.ada_target None): no augmentation "
            "(as in the official loop); set augment.p or augment.ada_target",
            config.augment.preset,
        )
    resume = config.model.get("resume")
    return loop.Task(
        init_state=functools.partial(init_state, config, G, D, g_tx, d_tx),
        train_step=functools.partial(train_step, config, G, D, g_tx, d_tx),
        samples=samples,
        global_batch_size=config.batch_size,
        parameters=lambda s: {"G": s["g"]["params"], "D": s["d"]["params"]},
        prepare_state=functools.partial(resume_state, config, G, D) if resume else None,
        batch_spec=batch_spec,
    )


# Generator / discriminator constructor fields that the config sets, and the flags that set
# them (what a model.resume folder's networks must agree with).
CONFIG_FLAGS = {
    "z_dim": "model.z_dim",
    "w_dim": "model.w_dim",
    "img_resolution": "model.resolution",
    "channels": "model.channel_base and model.channel_max",
    "mapping_layers": "model.mapping_layers",
    "conv_clamp": "model.conv_clamp",
    "c_dim": "model.c_dim (or data.use_labels)",
    "mbstd_group_size": "model.mbstd_group_size",
}
_COMPUTE_ONLY = ("dtype", "fused_modconv")


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return (
        float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    )


def check_resume_network(module, folder_config: dict, name: str, path) -> None:
    """Raises a ValueError listing every constructor field in which the folder's network
    `name` differs from the config's `module`, with the flag that sets it."""
    unconditional = not getattr(module, "c_dim", 0) and not folder_config.get("c_dim", 0)
    diffs = []
    for key, theirs in sorted(folder_config.items()):
        if key in _COMPUTE_ONLY or not hasattr(module, key):
            continue
        if (
            module.__class__ is sg.Discriminator
            and unconditional
            and key.startswith(("mapping_", "cmap_"))
        ):
            continue  # the label mapping of a conditional D only
        ours = getattr(module, key)
        if _plain(ours) == _plain(theirs):
            continue
        flag = CONFIG_FLAGS.get(key, "not a config field")
        if key == "architecture":
            flag = "model.g_architecture" if name.startswith("g") else "model.d_architecture"
        hint = ""
        if key == "channels":
            res, chans = folder_config.get("img_resolution"), list(theirs)
            base = chans[-1] * res if res else None
            if base and list(sg.channels_from_base(res, base, chans[0])) == chans:
                hint = (
                    f" (--config.model.channel_base={base} --config.model.channel_max={chans[0]})"
                )
        diffs.append(f"{key}: the folder's {theirs}, the config's {ours} [{flag}]{hint}")
    if diffs:
        raise ValueError(
            f"model.resume={path}: network {name!r} differs from the configured model in "
            + "; ".join(diffs)
            + ". Set those config fields to the folder's values."
        )


def resume_state(config, G, D, state):
    """Transfer learning (model.resume): a fresh state's G, G_ema and D replaced by those of a
    StyleGAN2 model folder (tools/convert_weights.py's, `--which all` for G and D, or a model
    trained here), as stylegan2-ada-pytorch's --resume does; the optimisers, the step and
    ADA's p start afresh. G comes from the folder's 'g', else from its 'g_ema'; without a 'd'
    the discriminator stays randomly initialised, and the log says so."""
    from stylejax import model_format

    path = Path(config.model.resume).expanduser()
    meta = model_format.read_config(path)
    networks = meta["networks"]
    kinds = {name: net["kind"] for name, net in networks.items()}
    if meta.get("family") != "stylegan2" or kinds.get("g_ema") != "generator":
        held = ", ".join(f"{n} ({k})" for n, k in sorted(kinds.items()))
        raise ValueError(
            f"model.resume={path}: holds {meta.get('family')!r} networks {held}, not a "
            f"StyleGAN2 'g_ema' generator (tools/convert_weights.py writes one; a run here, "
            f"WORKDIR/model)"
        )
    state = dict(state)
    sources = {"g_ema": "g_ema", "g": "g" if "g" in networks else "g_ema"}
    if "d" in networks:
        sources["d"] = "d"
    for target, source in sources.items():
        module = D if target == "d" else G
        check_resume_network(module, networks[source]["config"], source, path)
        _, variables = model_format.load_pretrained(path, source)
        want = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), state[target])
        got = jax.tree_util.tree_map(lambda a: (a.shape, np.dtype(a.dtype)), variables)
        if jax.tree_util.tree_structure(want) != jax.tree_util.tree_structure(got) or want != got:
            raise ValueError(
                f"model.resume={path}: network {source!r} holds other variables than the "
                f"configured {target} (names or shapes differ)"
            )
        state[target] = jax.tree_util.tree_map(jnp.asarray, variables)
    logging.info(
        "model.resume=%s: G from its %r, G_ema from 'g_ema', D %s",
        path,
        sources["g"],
        "from 'd'" if "d" in sources else "randomly initialised (the folder holds no 'd')",
    )
    if "d" not in sources:
        logging.warning(
            "model.resume=%s has no discriminator (convert with --which all to keep it): D "
            "starts from random weights",
            path,
        )
    return state


def check_folder_given(config) -> None:
    """The ada_folder variants train on data.folder: a ValueError when it is not given."""
    d = config.data
    if (config.get("variant") or "").startswith("ada_folder") and not (
        d.get("folder") or d.directory
    ):
        raise ValueError(
            f"configs/stylegan2.py:{config.variant} trains on your own images: pass "
            f"--config.data.folder=/path/to/images"
        )


def resolve_labels(config) -> None:
    """data.use_labels: model.c_dim becomes the data set's number of classes (image_folder's
    metadata num_classes); a c_dim already set must equal it."""
    if not config.data.get("use_labels"):
        return
    check_folder_given(config)
    n = num_classes(config)
    if c_dim(config) and c_dim(config) != n:
        raise ValueError(
            f"model.c_dim={c_dim(config)} but {config.data.name} has {n} classes; "
            f"leave model.c_dim at 0 with data.use_labels=True"
        )
    config.model.c_dim = n


def _builder(config):
    from stylejax.data import image_folder

    d = config.data
    folder = d.get("folder") or image_folder.source_folder(d.directory or None)
    if image_folder.is_image_folder(d.name) and folder:
        return image_folder.prepare(d.name, folder, d.directory or None)
    import tensorflow_datasets as tfds

    builder = tfds.builder(d.name, data_dir=d.directory or None)
    builder.download_and_prepare()
    return builder


def num_classes(config) -> int:
    """The classes of config.data's data set (its metadata num_classes; a "label" feature)."""
    builder = _builder(config)
    n = int(builder.info.metadata.get("num_classes", 0) if builder.info.metadata else 0)
    if not n or "label" not in builder.info.features:
        raise ValueError(
            f"data.use_labels=True: {config.data.name} has no class labels; an image folder "
            f'gets them from one sub-folder per class or a dataset.json (README: "Training '
            f'on your own images with ADA")'
        )
    return n


def rendered_batches(config, prefetch=4):
    """Endless per-process batches {"z", "image": render(factors(z)), "weight": the loss
    weight per pixel (train.feature_weight on the facial features, else 1)}, rendered ahead in a
    background thread. Batch i draws its z from (seed, process, i), so runs repeat; a resumed
    run starts the sequence again (fresh renders of a continuous prior: no epoch to keep).
    An error in the thread is raised here, not left to hang the training loop."""
    import queue
    import threading

    factor_latents.check_z_dim(config.model.z_dim)
    n = config.batch_size // jax.process_count()
    out = queue.Queue(maxsize=prefetch)

    def work():
        try:
            for i in itertools.count():
                rng = np.random.default_rng([config.seed, jax.process_index(), i])
                z = rng.standard_normal((n, config.model.z_dim)).astype(np.float32)
                image, labels = factor_latents.render_batch(z, config.model.resolution, True)
                weight = labels_lib.feature_weights(labels, config.train.feature_weight)
                out.put({"z": z, "image": image, "weight": weight})
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            out.put(e)

    threading.Thread(target=work, daemon=True).start()
    while True:
        batch = out.get()
        if isinstance(batch, BaseException):
            raise batch
        yield batch


def make_data(config):
    """Per-process batches of real images ({"image"}, and one-hot labels "c" for a
    conditional model), plus the tf.data iterator to checkpoint (the renderer objective:
    rendered batches, and no iterator)."""

    from stylejax.data import pipeline

    if config.train.objective == "renderer":
        return rendered_batches(config), None

    check_folder_given(config)
    resolve_labels(config)
    d = config.data
    n_classes = c_dim(config)
    if n_classes and not d.get("use_labels"):
        raise ValueError(
            f"model.c_dim={n_classes} trains a conditional model: it needs the data set's "
            f"labels (data.use_labels=True)"
        )
    keys = ("image", "label") if n_classes else ("image",)
    if n_classes:
        check_labels(config, n_classes)
    ds = pipeline.make_dataset(
        d.name,
        global_batch_size=config.batch_size,
        split=d.split,
        seed=config.seed,
        keys=keys,
        flip=d.flip,
        shuffle_buffer=d.shuffle_buffer,
        data_dir=d.directory or None,
    )
    batches, tf_iterator = loop.numpy_batches(ds, keys)
    if not n_classes:
        return batches, tf_iterator
    eye = np.eye(n_classes, dtype=np.float32)
    return ({"image": b["image"], "c": eye[b["label"]]} for b in batches), tf_iterator


def check_labels(config, n_classes: int) -> None:
    """Every training example must have a class in [0, n_classes) (image_folder gives -1 to
    an image outside the class sub-folders or dataset.json): a ValueError says how many
    do not, before training starts."""
    from stylejax.data import pipeline

    d = config.data
    labels = np.concatenate(
        [
            b["label"]
            for b in pipeline.split_batches(
                d.name, d.split, ("label",), batch_size=4096, data_dir=d.directory or None
            )
        ]
    )
    bad = int(np.sum((labels < 0) | (labels >= n_classes)))
    if bad:
        raise ValueError(
            f"data.use_labels=True: {bad} of {labels.size} examples of {d.name} have no class "
            f"in [0, {n_classes}) (label -1: an image outside the class sub-folders or "
            f"dataset.json); label them or train unconditionally"
        )


def evaluate(config, state, workdir) -> dict[str, float]:
    """The EMA generator's pixel Fréchet distance (metrics.pixel_features: 16×16 pixels) of
    eval.num_examples samples against as many test images, beside the training split's
    distance to them (the floor a perfect generator reaches), and a sample grid in
    workdir/eval/samples.png. With eval.metrics (stylejax.evaluate's names, e.g. "fid10k")
    and eval.inception_weights, those metrics too."""
    from stylejax import metrics
    from stylejax.data import pipeline

    resolve_labels(config)
    G, _ = build_models(config)
    g_ema = jax.device_get(state["g_ema"])
    n = config.eval.num_examples
    n_classes = c_dim(config)
    keys = ("image", "label") if n_classes else ("image",)

    def real(split):
        data_dir = config.data.directory or None
        batches = list(
            pipeline.split_batches(config.data.name, split, keys, limit=n, data_dir=data_dir)
        )
        return {k: np.concatenate([b[k] for b in batches])[:n] for k in keys}

    test_split = real(config.eval.split)
    # A conditional G draws its samples for the test images' labels (their class mix).
    labels = ()
    if n_classes:
        classes = np.resize(np.clip(test_split["label"], 0, n_classes - 1), n)
        labels = (np.eye(n_classes, dtype=np.float32)[classes],)
    fn = jax.jit(lambda v, z, k, *c: G.apply(v, z, *c, noise_mode="random", rngs={"noise": k}))
    z = jax.random.normal(jax.random.PRNGKey(config.seed + 2), (n, config.model.z_dim))
    fake = np.concatenate(
        [
            np.asarray(
                fn(g_ema, z[i : i + 100], jax.random.PRNGKey(i), *(c[i : i + 100] for c in labels))
            )
            for i in range(0, n, 100)
        ]
    )

    test = metrics.pixel_features(test_split["image"])
    result = {
        "pixel_fd": metrics.frechet_distance(metrics.pixel_features(fake), test),
        "pixel_fd_floor": metrics.frechet_distance(
            metrics.pixel_features(real(config.data.split)["image"]), test
        ),
    }
    if jax.process_index() == 0:
        images.save_grid(fake[:36], Path(workdir) / "eval" / "samples.png", cols=6, pad=1)
    if config.train.objective == "renderer":
        result.update(renderer_scores(config, G, g_ema))
    if config.eval.metrics:
        from stylejax import evaluate as evaluate_lib

        report = evaluate_lib.evaluate(
            G,
            g_ema,
            evaluate_lib.parse_metrics(config.eval.metrics),
            workdir,
            data=config.data.name,
            split=config.data.split,
            data_dir=config.data.directory or None,
            inception=evaluate_lib.load_inception(config.eval.inception_weights or None),
            step=int(jax.device_get(state["step"])),
            source=f"{workdir} ({config.variant or 'default'} variant)",
        )
        result.update(report["metrics"])
    return result


def renderer_scores(config, G, g_ema) -> dict[str, float]:
    """A renderer-taught generator against the truth (stylejax.ground_truth): PSNR/SSIM of
    G(z) against render(factors(z)) on the test faces' true latents, and the attribute
    classifier's agreement with factors(z) on as many samples."""
    from stylejax import ground_truth

    n, res = config.eval.num_examples, config.model.resolution
    data_dir = config.data.directory or None
    factors = ground_truth.test_factors(res, n, data_dir)
    clf = ground_truth.classifier(res, data_dir=data_dir)
    return {
        **ground_truth.renderer_fidelity(G, g_ema, factors),
        **ground_truth.attribute_agreement(G, g_ema, clf, n),
    }


def export(config, state, out_dir) -> dict:
    """The EMA generator in the project's model format, for load_pretrained."""
    from stylejax import model_format

    g_ema = ("generator", generator_kwargs(config), jax.device_get(state["g_ema"]))
    step = int(jax.device_get(state["step"]))
    # A renderer-taught G's z is the synthetic faces' factors (data.factor_latents): tools
    # that score against the truth (stylejax.ground_truth) look for this key.
    renderer = config.train.objective == "renderer"
    extra = {"latents": factor_latents.LATENTS} if renderer else {}
    return model_format.save_trained(out_dir, config, step, "stylegan2", {"g_ema": g_ema}, **extra)
