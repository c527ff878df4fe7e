"""StyleGAN2 training with NVIDIA's semantics (stylegan2-ada-pytorch `loss.py` and
`training_loop.py`, without ADA augmentation):

- per iteration the phases G main → G path-length (every pl_interval) → D main → D R1 (every
  r1_interval), each with its own latents, G's update visible to the D phases;
- non-saturating logistic loss; lazy R1 on reals scaled by the interval; path-length
  regularisation on a pl_batch_shrink-times smaller batch with noise scaled by 1/√(H·W) and
  its moving mean (decay pl_decay);
- style mixing with one crossover layer per batch (probability style_mixing_prob);
- Adam with the lazy-regularisation correction of lr and betas; the mapping network's ×0.01
  learning rate comes from its equalized-lr parameterisation, as in the original;
- generator EMA with a half-life of ema_kimg thousand images of the global batch, with an
  optional ramp-up; w_avg tracked by the D phase's generator call and copied to the EMA.

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

from stylejax import images
from stylejax.models import stylegan2 as sg
from stylejax.nn import torch_ops
from stylejax.train import gan, loop


def generator_kwargs(config) -> dict[str, Any]:
    """Generator constructor arguments (JSON-friendly: also the exported model config)."""
    m = config.model
    return dict(
        z_dim=m.z_dim,
        w_dim=m.w_dim,
        img_resolution=m.resolution,
        channels=list(sg.channels_from_base(m.resolution, m.channel_base, m.channel_max)),
        mapping_layers=m.mapping_layers,
        architecture=m.g_architecture,
        conv_clamp=m.conv_clamp,
    )


def build_models(config) -> tuple[sg.Generator, sg.Discriminator]:
    m = config.model
    channels = sg.channels_from_base(m.resolution, m.channel_base, m.channel_max)
    dtype = jnp.dtype(m.dtype)
    G = sg.Generator(
        **dict(generator_kwargs(config), channels=channels),
        fused_modconv=m.fused_modconv,
        dtype=dtype,
    )
    D = sg.Discriminator(
        img_resolution=m.resolution,
        channels=channels,
        architecture=m.d_architecture,
        conv_clamp=m.conv_clamp,
        mbstd_group_size=m.mbstd_group_size,
        dtype=dtype,
    )
    return G, D


def optimizers(config):
    t = config.train
    g_interval = t.pl_interval if t.pl_weight > 0 else None
    d_interval = t.r1_interval if t.r1_gamma > 0 else None
    return (
        gan.lazy_adam(t.g_lr, t.betas, g_interval),
        gan.lazy_adam(t.d_lr, t.betas, d_interval),
    )


def init_state(config, G, D, g_tx, d_tx, rng) -> dict[str, Any]:
    g_rng, d_rng = jax.random.split(rng)
    m = config.model
    g_vars = sg.init_variables(G, g_rng, jnp.zeros((1, m.z_dim)))
    d_vars = D.init(d_rng, jnp.zeros((1, m.resolution, m.resolution, 3)))
    return {
        "step": jnp.zeros((), jnp.int32),
        "g": g_vars,
        "g_ema": jax.tree_util.tree_map(jnp.copy, g_vars),
        "d": d_vars,
        "g_opt": g_tx.init(g_vars["params"]),
        "d_opt": d_tx.init(d_vars["params"]),
        "pl_mean": jnp.zeros((), jnp.float32),
    }


def generate(G, config, g_vars, z, rng, update_w_avg=False):
    """G(z) with training-time style mixing and random noise. Returns (img, ws, buffers)."""
    k_mix, k_cut, k_prob, k_noise = jax.random.split(rng, 4)
    ws, updated = G.apply(g_vars, z, update_w_avg=update_w_avg, method=G.map, mutable=["buffers"])
    prob = config.train.style_mixing_prob
    if prob > 0:
        num_ws = ws.shape[1]
        cutoff = jax.random.randint(k_cut, (), 1, num_ws)
        cutoff = jnp.where(jax.random.uniform(k_prob) < prob, cutoff, num_ws)
        ws2 = G.apply(g_vars, jax.random.normal(k_mix, z.shape), method=G.map)
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


def train_step(config, G, D, g_tx, d_tx, state, batch):
    t = config.train
    real = batch["image"]
    batch_size = real.shape[0]
    z_dim = config.model.z_dim
    step = state["step"]
    rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), step)
    k_gmain, k_greg, k_dmain, k_dreg = jax.random.split(rng, 4)
    g_vars, d_vars = state["g"], state["d"]
    metrics = {}

    # ---- G main: non-saturating loss.
    def g_main_loss(g_params, key):
        kz, kg = jax.random.split(key)
        z = loop.split_over_devices(jax.random.normal(kz, (batch_size, z_dim)))
        img, _, _ = generate(G, config, {**g_vars, "params": g_params}, z, kg)
        return gan.logistic_loss(D.apply(d_vars, img), real=True)

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

        def loss_fn(params):
            variables = {**g_vars, "params": params}
            k_gen, k_noise = jax.random.split(kg)
            _, ws, _ = generate(G, config, variables, z, k_gen)
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
    gen_img, _, g_buffers = generate(
        G, config, {**g_vars, "params": g_params}, z, kg, update_w_avg=True
    )
    gen_img = jax.lax.stop_gradient(gen_img)

    def d_main_loss(d_params):
        variables = {**d_vars, "params": d_params}
        fake_logits = D.apply(variables, gen_img)
        real_logits = D.apply(variables, real)
        loss = gan.logistic_loss(fake_logits, real=False) + gan.logistic_loss(real_logits, True)
        return loss, (jnp.mean(fake_logits), jnp.mean(real_logits))

    (d_loss, (fake_mean, real_mean)), d_grads = jax.value_and_grad(d_main_loss, has_aux=True)(
        d_vars["params"]
    )
    d_updates, d_opt = d_tx.update(d_grads, state["d_opt"], d_vars["params"])
    d_params = optax.apply_updates(d_vars["params"], d_updates)
    metrics.update(
        d_loss=d_loss,
        d_fake_logits=fake_mean,
        d_real_logits=real_mean,
        d_grad_norm=global_norm(d_grads),
    )

    # ---- D reg: R1 on reals, lazily every r1_interval steps.
    def d_reg(operand):
        d_params, d_opt = operand

        def loss_fn(params):
            penalty = gan.r1_penalty(lambda x: D.apply({**d_vars, "params": params}, x), real)
            return jnp.mean(penalty) * (t.r1_gamma / 2) * t.r1_interval, jnp.mean(penalty)

        (_, penalty), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_params)
        updates, d_opt = d_tx.update(grads, d_opt, d_params)
        return optax.apply_updates(d_params, updates), d_opt, penalty

    def no_d_reg(operand):
        d_params, d_opt = operand
        return d_params, d_opt, jnp.zeros((), jnp.float32)

    if t.r1_gamma > 0:
        do_r1 = step % t.r1_interval == 0
        d_params, d_opt, r1 = jax.lax.cond(do_r1, d_reg, no_d_reg, (d_params, d_opt))
        metrics["r1_penalty"] = (r1, do_r1.astype(jnp.float32))

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
    return new_state, metrics


PYRAMID = (1, 2, 4, 8)
LATENTS = "synthetic_faces_factors"  # config.json "latents" of a renderer-taught export  # the renderer objective's L1 scales (average-pool factors)


def pyramid_l1(x, y):
    """Σ over PYRAMID of the mean |x - y| after average pooling: the fine scale keeps edges
    sharp, the coarse ones give a strong signal for where a shape is."""
    total, prev = 0.0, 1
    for f in PYRAMID:
        if f > 1:
            x, y = (torch_ops.avg_pool2d(a, f // prev) for a in (x, y))
        total, prev = total + jnp.mean(jnp.abs(x - y)), f
    return total


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
        return pyramid_l1(img, batch["image"]), (img, updated["buffers"])

    (loss, (img, buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g_vars["params"])
    updates, g_opt = g_tx.update(grads, state["g_opt"], g_vars["params"])
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
    G, D = build_models(config)
    g_tx, d_tx = optimizers(config)
    renderer = config.train.objective == "renderer"
    sample_z = jax.random.normal(
        jax.random.PRNGKey(config.seed + 1), (config.num_samples, config.model.z_dim)
    )

    @jax.jit
    def samples(state):
        return G.apply(state["g_ema"], sample_z, noise_mode="const")

    res = config.model.resolution
    batch_spec = {"image": jax.ShapeDtypeStruct((config.batch_size, res, res, 3), jnp.float32)}
    if renderer:
        batch_spec["z"] = jax.ShapeDtypeStruct((config.batch_size, config.model.z_dim), jnp.float32)
        return loop.Task(
            init_state=functools.partial(init_renderer_state, config, G, g_tx),
            train_step=functools.partial(renderer_step, config, G, g_tx),
            samples=samples,
            global_batch_size=config.batch_size,
            parameters=lambda s: {"G": s["g"]["params"]},
            batch_spec=batch_spec,
        )
    return loop.Task(
        init_state=functools.partial(init_state, config, G, D, g_tx, d_tx),
        train_step=functools.partial(train_step, config, G, D, g_tx, d_tx),
        samples=samples,
        global_batch_size=config.batch_size,
        parameters=lambda s: {"G": s["g"]["params"], "D": s["d"]["params"]},
        batch_spec=batch_spec,
    )


def rendered_batches(config, prefetch=4):
    """Endless per-process batches {"z", "image": render(factors(z))}, rendered ahead in a
    background thread. Batch i draws its z from (seed, process, i), so runs repeat; a resumed
    run starts the sequence again (fresh renders of a continuous prior: no epoch to keep)."""
    import queue
    import threading

    from stylejax.data import factor_latents

    n = config.batch_size // jax.process_count()
    out = queue.Queue(maxsize=prefetch)

    def work():
        for i in itertools.count():
            rng = np.random.default_rng([config.seed, jax.process_index(), i])
            z = rng.standard_normal((n, config.model.z_dim)).astype(np.float32)
            image = factor_latents.render_batch(z, config.model.resolution)
            out.put({"z": z, "image": image})

    threading.Thread(target=work, daemon=True).start()
    while True:
        yield out.get()


def make_data(config):
    """Per-process batches of real images, plus the tf.data iterator to checkpoint (the
    renderer objective: rendered batches, and no iterator)."""

    from stylejax.data import pipeline

    if config.train.objective == "renderer":
        return rendered_batches(config), None

    d = config.data
    ds = pipeline.make_dataset(
        d.name,
        global_batch_size=config.batch_size,
        split=d.split,
        seed=config.seed,
        keys=("image",),
        flip=d.flip,
        shuffle_buffer=d.shuffle_buffer,
        data_dir=d.directory or None,
    )
    return loop.numpy_batches(ds, ("image",))


def evaluate(config, state, workdir) -> dict[str, float]:
    """The EMA generator's pixel Fréchet distance (metrics.pixel_features: 16×16 pixels) of
    eval.num_examples samples against as many test images, beside the training split's
    distance to them (the floor a perfect generator reaches), and a sample grid in
    workdir/eval/samples.png. With eval.metrics (stylejax.evaluate's names, e.g. "fid10k")
    and eval.inception_weights, those metrics too."""
    from stylejax import metrics
    from stylejax.data import pipeline

    G, _ = build_models(config)
    g_ema = jax.device_get(state["g_ema"])
    n = config.eval.num_examples
    fn = jax.jit(lambda v, z, k: G.apply(v, z, noise_mode="random", rngs={"noise": k}))
    z = jax.random.normal(jax.random.PRNGKey(config.seed + 2), (n, config.model.z_dim))
    fake = np.concatenate(
        [np.asarray(fn(g_ema, z[i : i + 100], jax.random.PRNGKey(i))) for i in range(0, n, 100)]
    )

    def real(split):
        data_dir = config.data.directory or None
        batches = pipeline.split_batches(
            config.data.name, split, ("image",), limit=n, data_dir=data_dir
        )
        return np.concatenate([b["image"] for b in batches])[:n]

    test = metrics.pixel_features(real(config.eval.split))
    result = {
        "pixel_fd": metrics.frechet_distance(metrics.pixel_features(fake), test),
        "pixel_fd_floor": metrics.frechet_distance(
            metrics.pixel_features(real(config.data.split)), test
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
    extra = {"latents": LATENTS} if config.train.objective == "renderer" else {}
    return model_format.save_trained(out_dir, config, step, "stylegan2", {"g_ema": g_ema}, **extra)
