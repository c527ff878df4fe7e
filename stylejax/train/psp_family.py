"""The pieces pSp, ReStyle and e4e training share: the frozen networks (generator, LPIPS,
ArcFace) and their loading, pSp's losses, Ranger, the encoder's state and its ArcFace
initialisation, the test-split evaluator and the model export.

Frozen networks travel as the engine's `frozen` argument, never as constants of the compiled
step: {"decoder": G's variables, "latent_avg": [num_ws, w_dim], "lpips"?, "arcface"?}.
"""

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stylejax import images, metrics, model_format
from stylejax.data import labels
from stylejax.models import irse
from stylejax.models import lpips as lpips_lib
from stylejax.models import stylegan2 as sg
from stylejax.nn import torch_ops
from stylejax.train import loop

SHIPPED_GENERATOR = Path(__file__).resolve().parents[1] / "pretrained" / "synthetic64"


# ----------------------------------------------------------------------------- frozen networks


def load_generator(config):
    """(G, variables) of the frozen decoder: config.model.generator or the shipped one."""
    path = config.model.generator
    if not path:
        if config.variant == "ffhq_encode":
            raise ValueError(
                "configs/psp.py:ffhq_encode needs --config.model.generator=DIR: a converted "
                "1024 px StyleGAN2 (tools/convert_weights.py stylegan2-ffhq-config-f.pt DIR)"
            )
        path = SHIPPED_GENERATOR
    G, variables = model_format.load_pretrained(path)
    if not isinstance(G, sg.Generator):
        raise ValueError(f"{path}: holds a {type(G).__name__}; expected a StyleGAN2 generator")
    # The same function; the fused form's grouped convolution cannot be split over a
    # batch-sharded mesh by XLA's partitioner, the non-fused one can.
    return G.clone(fused_modconv=False), variables


def latent_average(G, g_vars, n: int = 10_000) -> np.ndarray:
    """[num_ws, w_dim]: the generator's tracked w_avg, or (when it has none, e.g. a
    rosinality file without latent_avg) the mean of n mapped z, as pSp estimates it."""
    w_avg = np.asarray(g_vars["buffers"]["mapping"]["w_avg"], np.float32)
    if not np.any(w_avg):
        z = jax.random.normal(jax.random.PRNGKey(0), (n, G.z_dim))
        w = jax.jit(lambda v, z: G.apply(v, z, method=G.map))(g_vars, z)
        w_avg = np.asarray(w[:, 0].mean(0), np.float32)
    return np.broadcast_to(w_avg, (G.num_ws, G.w_dim)).copy()


def generator_config(config) -> dict:
    meta = model_format.read_config(config.model.generator or SHIPPED_GENERATOR)
    nets = meta["networks"]
    return nets["g_ema" if "g_ema" in nets else next(iter(nets))]["config"]


def load_networks(config) -> dict[str, Any]:
    """The frozen networks from their files: the generator (with its config and latent
    average) and, when given, LPIPS and ArcFace."""
    G, g_vars = load_generator(config)
    frozen = {"decoder": g_vars, "latent_avg": latent_average(G, g_vars)}
    nets = {}
    if config.loss.lpips_weights:
        nets["lpips"], frozen["lpips"] = model_format.load_kind(
            config.loss.lpips_weights, "lpips", "(loss.lpips_weights)"
        )
    if config.loss.id_weights:
        nets["arcface"], frozen["arcface"] = model_format.load_kind(
            config.loss.id_weights, "arcface", "(loss.id_weights)"
        )
    return dict(G=G, g_config=generator_config(config), nets=nets, frozen=frozen)


# A config-f FFHQ generator: what ffhq_encode decodes with.
CONFIG_F = dict(
    z_dim=512,
    w_dim=512,
    img_resolution=1024,
    channels=list(sg.channels_from_base(1024, 32768, 512)),
    mapping_layers=8,
    architecture="skip",
    conv_clamp=None,
)


def abstract_networks(config, random_weights: bool = False) -> dict[str, Any]:
    """load_networks' shapes without any weight file (tools/aot_compile.py), or with random
    weights (benchmarks): the configured generator's config.json, or config-f; LPIPS-Alex
    and ArcFace IR-SE50 for the losses whose λ is set."""
    real_scale = config.variant == "ffhq_encode" and not config.model.generator
    g_config = CONFIG_F if real_scale else generator_config(config)
    G = model_format.build("generator", {**g_config, "fused_modconv": False})
    key = jax.random.PRNGKey(0)
    make = (lambda f: jax.jit(f)()) if random_weights else jax.eval_shape
    frozen = {
        "decoder": make(lambda: sg.init_variables(G, key, jnp.zeros((1, G.z_dim)))),
        "latent_avg": make(lambda: jnp.zeros((G.num_ws, G.w_dim), jnp.float32)),
    }
    nets = {}
    if config.loss.lpips or config.loss.lpips_crop:
        nets["lpips"] = lpips_lib.LPIPS("alex")
        x = jnp.zeros((1, 64, 64, 3))
        frozen["lpips"] = make(lambda: nets["lpips"].init(key, x, x))
    if config.loss.id:
        nets["arcface"] = irse.Backbone()
        frozen["arcface"] = make(lambda: nets["arcface"].init(key, jnp.zeros((1, 112, 112, 3))))
    return {"G": G, "g_config": g_config, "nets": nets, "frozen": frozen}


FROZEN = ("load", "random", "abstract")


def networks(config, frozen: str = "load") -> dict[str, Any]:
    """The frozen networks as make_task's `frozen` asks: "load" from their files,
    "random" weights of the same shapes (benchmarks), "abstract" shapes only (AOT)."""
    if frozen not in FROZEN:
        raise ValueError(f"frozen={frozen!r}: expected one of {FROZEN}")
    if frozen == "load":
        return load_networks(config)
    return abstract_networks(config, random_weights=frozen == "random")


def input_shape(config) -> tuple[int, int, int]:
    """The encoder input [H, W, C]: the data set's resolution (the number after the last
    '/' of data.name, else what its builder declares) and the model's channel count."""
    tail = config.data.name.rsplit("/", 1)[-1]
    if tail.isdigit():
        size = int(tail)
    else:
        from stylejax.data import pipeline

        size = pipeline.image_size(config.data.name, config.data.directory or None)
    return (size, size, config.model.input_nc)


# ----------------------------------------------------------------------------- losses


def loss_weights(config, have_lpips: bool, have_arcface: bool) -> dict[str, float]:
    """The λ of every loss term, with those whose network is missing switched off (with a
    logged note) — or an error when config.loss.require_weights."""
    c = config.loss
    weights = dict(
        l2=c.l2, lpips=c.lpips, id=c.id, w_norm=c.w_norm, l2_crop=c.l2_crop, lpips_crop=c.lpips_crop
    )
    missing = {
        "lpips": (have_lpips, "loss.lpips_weights", "LPIPS AlexNet (alex.pth + alexnet weights)"),
        "lpips_crop": (have_lpips, "loss.lpips_weights", "LPIPS AlexNet"),
        "id": (have_arcface, "loss.id_weights", "ArcFace IR-SE50 (model_ir_se50.pth)"),
    }
    for name, (have, field, network) in missing.items():
        if weights[name] and not have:
            message = (
                f"the {name} loss (λ {weights[name]}) needs a converted {network} checkpoint "
                f"in --config.{field} (tools/convert_weights.py)"
            )
            if c.require_weights:
                raise ValueError(message + f"; or set --config.loss.{name}=0")
            logging.warning("%s; none given, so it is off for this run", message)
            weights[name] = 0.0
    return weights


def face_crop(images):
    """pSp's inner-face crop, rows 35:223 and columns 32:220 of a 256 image, scaled to the
    batch's size."""
    size = images.shape[1]
    r0, r1, c0, c1 = (round(v * size / 256) for v in (35, 223, 32, 220))
    return images[:, r0:r1, c0:c1]


def pool_to(images, size: int):
    """pSp's face_pool: adaptive average pooling of the generator's output to `size`."""
    return images if images.shape[1] == size else torch_ops.adaptive_avg_pool2d(images, size)


def reconstruction_losses(weights, nets, frozen, y_hat, y, codes, latent_avg, pixel_weight=None):
    """Weighted pSp losses between output y_hat and target y. Returns (total, {name: value})
    with every active term unweighted in the dict. pixel_weight ([B, H, W, 1], the batch's
    "weight" under loss.part_weight) weighs the L2 term's pixels."""
    terms = {}
    if weights["l2"]:
        if pixel_weight is None:
            terms["l2"] = jnp.mean(jnp.square(y_hat - y))
        else:  # a weighted mean: the same scale as the plain L2
            terms["l2"] = jnp.mean(pixel_weight * jnp.square(y_hat - y)) / jnp.mean(pixel_weight)
    if weights["lpips"]:
        terms["lpips"] = jnp.mean(nets["lpips"].apply(frozen["lpips"], y_hat, y))
    if weights["l2_crop"]:
        terms["l2_crop"] = jnp.mean(jnp.square(face_crop(y_hat) - face_crop(y)))
    if weights["lpips_crop"]:
        crops = face_crop(y_hat), face_crop(y)
        terms["lpips_crop"] = jnp.mean(nets["lpips"].apply(frozen["lpips"], *crops))
    if weights["id"]:
        target = jax.lax.stop_gradient(y)
        sim = metrics.identity_similarity(nets["arcface"], frozen["arcface"], y_hat, target)
        terms["id"] = jnp.mean(1.0 - sim)
    if weights["w_norm"]:
        delta = codes - (latent_avg if codes.ndim == 3 else latent_avg[0])
        delta = delta.reshape(delta.shape[0], -1)
        terms["w_norm"] = jnp.mean(jnp.linalg.norm(delta, axis=-1))
    total = sum(weights[name] * value for name, value in terms.items())
    return total, terms


# ----------------------------------------------------------------------------- optimisers


def centralize_gradients() -> optax.GradientTransformation:
    """Gradient centralisation (Ranger's GC) for Flax layouts: kernels keep their output
    axis last, so the mean is taken over every other axis (optax.centralize assumes the
    output axis first, as in PyTorch). Vectors (biases, PReLU slopes) are left alone."""

    def centre(g):
        return g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True) if g.ndim > 1 else g

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(centre, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def learning_rate(config) -> optax.Schedule:
    """optimizer.lr, then from optimizer.lr_decay_start of the run a cosine to 0 at its last
    update (1.0: constant, as the papers train). The schedule counts optimiser updates:
    num_steps, or num_steps × N with ReStyle's restyle.update_each_iteration."""
    o = config.optimizer
    r = config.get("restyle")
    updates = config.num_steps * (r.n_iters_per_batch if r and r.update_each_iteration else 1)
    start = int(o.lr_decay_start * updates)
    decay = optax.cosine_decay_schedule(o.lr, max(updates - start, 1))
    return optax.join_schedules([optax.constant_schedule(o.lr), decay], [start])


def optimizer(config) -> optax.GradientTransformation:
    o = config.optimizer
    lr = learning_rate(config)
    if o.name == "adam":
        return optax.adam(lr)
    if o.name == "ranger":
        fast = optax.chain(centralize_gradients(), optax.radam(lr, b1=0.95, b2=0.999, eps=1e-5))
        return optax.lookahead(fast, sync_period=6, slow_step_size=0.5)
    raise ValueError(f"optimizer.name={o.name!r}: expected 'ranger' or 'adam'")


def optimizer_params(config, state):
    """What the optimiser updates: Lookahead keeps slow weights beside the fast ones."""
    if config.optimizer.name == "ranger":
        return optax.LookaheadParams(state["params"], state["slow"])
    return state["params"]


def apply_gradients(config, tx, state, grads):
    """One optimiser update of state['params'] (and Ranger's slow weights)."""
    opt_params = optimizer_params(config, state)
    updates, opt_state = tx.update(grads, state["opt_state"], opt_params)
    new_params = optax.apply_updates(opt_params, updates)
    if config.optimizer.name == "ranger":
        return dict(state, params=new_params.fast, slow=new_params.slow, opt_state=opt_state)
    return dict(state, params=new_params, opt_state=opt_state)


# ----------------------------------------------------------------------------- the encoder's state


def encoder_variables(frozen, params, batch_stats):
    """Full PSP variables: the trainable encoder beside the frozen decoder."""
    variables = {
        "params": {"encoder": params, "decoder": frozen["decoder"]["params"]},
        "buffers": {"decoder": frozen["decoder"]["buffers"], "latent_avg": frozen["latent_avg"]},
    }
    if batch_stats:
        variables["batch_stats"] = {"encoder": batch_stats}
    return variables


def init_encoder_state(config, model, tx, input_shape, rng) -> dict[str, Any]:
    enc_vars = model.encoder.init(rng, jnp.zeros((1, *input_shape)))
    params = enc_vars["params"]
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "batch_stats": enc_vars.get("batch_stats", {}),
        "slow": jax.tree_util.tree_map(jnp.copy, params)
        if config.optimizer.name == "ranger"
        else {},
    }
    state["opt_state"] = tx.init(optimizer_params(config, state))
    return state


def init_encoder_from_arcface(config, state):
    """pSp's initialisation: the encoder trunk (input layer when the input is RGB, and every
    body unit) from a converted ArcFace IR-SE; the heads stay random."""
    path = config.model.encoder_init
    _, arc = model_format.load_kind(path, "arcface", "(model.encoder_init)")
    names = [n for n in arc["params"] if n.startswith("body_")]
    if config.model.input_nc == 3:
        names.append("input_layer")
    else:
        logging.info(
            "encoder_init: input_nc=%d, so the input layer stays random", config.model.input_nc
        )
    new = {"params": dict(state["params"]), "batch_stats": dict(state["batch_stats"])}
    for collection in new:
        for name in names:
            if name not in new[collection] or name not in arc[collection]:
                raise ValueError(
                    f"{path}: ArcFace unit {name} has no counterpart in the encoder "
                    f"(model.num_layers={config.model.num_layers}); expected the same depth"
                )
            want = jax.tree_util.tree_map(np.shape, new[collection][name])
            got = jax.tree_util.tree_map(np.shape, arc[collection][name])
            if want != got:
                raise ValueError(
                    f"{path}: ArcFace {collection}/{name} has shapes {got}, the encoder "
                    f"{want} (model.base_width={config.model.base_width}); expected them equal"
                )
            new[collection][name] = jax.tree_util.tree_map(
                lambda old, value: jax.device_put(jnp.asarray(value, old.dtype), old.sharding),
                new[collection][name],
                arc[collection][name],
            )
    logging.info("encoder trunk initialised from %s (%d units)", path, len(names))
    state = dict(state, params=new["params"], batch_stats=new["batch_stats"])
    if config.optimizer.name == "ranger":
        state["slow"] = jax.tree_util.tree_map(jnp.copy, state["params"])
    return state


# ----------------------------------------------------------------------------- data, evaluation, export


def make_data(config):
    """Per-process (source, target) batches of the training split, and the tf.data iterator;
    with loss.part_weight ≠ 1 each batch also holds its L2 "weight" map ([B, H, W, 1]: the
    part weight on the target's facial features, else 1)."""
    from stylejax.data import pipeline, tasks

    keys = None  # the features the task reads
    if weighs_parts(config) and config.data.task in tasks.TASKS:
        keys = tuple(dict.fromkeys((*tasks.TASKS[config.data.task][1], "segmentation")))
    ds = pipeline.make_dataset(
        config.data.name,
        global_batch_size=config.batch_size,
        split=config.data.split,
        seed=config.seed,
        task=config.data.task,
        flip=config.data.flip,
        shuffle_buffer=config.data.shuffle_buffer,
        data_dir=config.data.directory or None,
        keys=keys,
    )
    channels = ds.element_spec["source"].shape[-1]
    if channels != config.model.input_nc:
        raise ValueError(
            f"the {config.data.task} task gives {channels}-channel inputs but "
            f"model.input_nc={config.model.input_nc}"
        )
    if not weighs_parts(config):
        return loop.numpy_batches(ds, ("source", "target"))
    batches, tf_iterator = loop.numpy_batches(ds, ("source", "target", "segmentation"))

    def weighted():
        for batch in batches:
            segmentation = batch.pop("segmentation")
            yield dict(batch, weight=labels.feature_weights(segmentation, config.loss.part_weight))

    return weighted(), tf_iterator


def weighs_parts(config) -> bool:
    """Whether loss.part_weight asks for per-pixel L2 weights from the segmentation maps
    (which then must describe the target: every task but frontalisation)."""
    if config.loss.part_weight == 1.0:
        return False
    if config.data.task == "frontalization":
        raise ValueError(
            "loss.part_weight needs the target's segmentation, and the frontalization task's "
            "target (the frontal render) has none; set --config.loss.part_weight=1"
        )
    return True


def batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    """One global (source, target) batch: sources at input_shape(config), RGB targets."""
    source = (config.batch_size, *input_shape(config))
    target = (*source[:3], 3)
    spec = {
        "source": jax.ShapeDtypeStruct(source, jnp.float32),
        "target": jax.ShapeDtypeStruct(target, jnp.float32),
    }
    if weighs_parts(config):
        spec["weight"] = jax.ShapeDtypeStruct((*source[:3], 1), jnp.float32)
    return spec


def eval_batch(model, nets, state, frozen, batch, baseline: bool = False):
    """Per-batch sums of the test metrics for G(E(x)) (or, with baseline, for G(w_avg)),
    and the outputs. Constant noise, running batch-norm statistics."""
    x, y = batch["source"], batch["target"]
    if baseline:
        avg = jnp.broadcast_to(frozen["latent_avg"], (x.shape[0], *frozen["latent_avg"].shape))
        y_hat = model.apply(
            encoder_variables(frozen, state["params"], None), avg, method=model.decode
        )
    else:
        variables = encoder_variables(frozen, state["params"], state["batch_stats"])
        y_hat = model.apply(variables, x, noise_mode="const")
    y_hat = jnp.clip(pool_to(y_hat, y.shape[1]), -1, 1)
    per_sample = {
        "mse": jnp.mean(jnp.square(y_hat - y), axis=(1, 2, 3)),
        "psnr": metrics.psnr(y_hat, y),
        "ssim": metrics.ssim(y_hat, y),
    }
    if "lpips" in frozen:
        per_sample["lpips"] = nets["lpips"].apply(frozen["lpips"], y_hat, y)
    if "arcface" in frozen:
        per_sample["id_similarity"] = metrics.identity_similarity(
            nets["arcface"], frozen["arcface"], y_hat, y
        )
    return {k: jnp.sum(v) for k, v in per_sample.items()}, y_hat


def source_for_display(source, task: str) -> np.ndarray:
    """[N, H, W, 3] in [-1, 1] for a grid: sketches from [0, 1], label maps colourised."""
    source = np.asarray(source, np.float32)
    if task == "seg_to_face":
        from stylejax.data.labels import colorize

        rgb = np.stack([colorize(np.argmax(s, -1)) for s in source])
        return rgb.astype(np.float32) / 127.5 - 1
    if task == "sketch_to_face":
        return np.repeat(source * 2 - 1, 3, axis=-1)
    return source


class Evaluator:
    """Test-split metrics over a fixed set of config.eval.num_examples examples, and the
    input | output | target grid of the first few. `eval_fn(state, frozen, batch,
    baseline=False)` returns the batch's metric sums and its outputs (pSp's: eval_batch).
    The test set is opened on the first call, so building a task reads no data."""

    def __init__(self, config, eval_fn, frozen_device, mesh):
        e = config.eval
        if e.num_examples % e.batch_size:
            raise ValueError(
                f"eval.num_examples={e.num_examples} must be a multiple of "
                f"eval.batch_size={e.batch_size}"
            )
        self.config, self.mesh = config, mesh
        self.frozen = frozen_device
        self.num_batches = e.num_examples // e.batch_size
        self.dataset = None
        repl = loop.replicated(mesh)
        self._eval = jax.jit(eval_fn, static_argnames="baseline", out_shardings=(repl, repl))

    def _open_dataset(self):
        from stylejax.data import pipeline

        config = self.config
        return pipeline.make_dataset(
            config.data.test_name or config.data.name,
            global_batch_size=config.eval.batch_size,
            split=config.eval.split,
            seed=None,
            task=config.data.task,
            flip=False,
            repeat=True,
            data_dir=config.data.directory or None,
        )

    def __call__(self, state, baseline: bool = False):
        if self.dataset is None:
            self.dataset = self._open_dataset()
        totals, grid = None, None
        for batch in self.dataset.take(self.num_batches).as_numpy_iterator():
            batch = loop.global_batch({k: batch[k] for k in ("source", "target")}, self.mesh)
            sums, y_hat = self._eval(state, self.frozen, batch, baseline=baseline)
            totals = sums if totals is None else jax.tree_util.tree_map(jnp.add, totals, sums)
            if grid is None:
                grid = self._grid(batch, y_hat)
        n = self.config.eval.num_examples
        return {k: float(v) / n for k, v in jax.device_get(totals).items()}, grid

    def _grid(self, batch, y_hat):
        k = self.config.eval.grid_examples
        first = lambda a: np.asarray(jax.device_get(a))[:k]
        source = source_for_display(first(batch["source"]), self.config.data.task)
        rows = [source, first(y_hat), first(batch["target"])]
        return images.make_grid(np.concatenate(rows), cols=len(rows[0]), pad=1)


def evaluate_encoder(task, state, workdir) -> dict[str, float]:
    """The task's test-split metrics, and those of its G(w_avg) baseline as "baseline/…";
    the first batch's grid in workdir/eval/test.png."""
    result, grid = task.evaluate(state)
    baseline, _ = task.evaluate(state, baseline=True)
    if jax.process_index() == 0:
        images.save_image(grid, Path(workdir) / "eval" / "test.png")
    return {**result, **{f"baseline/{k}": v for k, v in baseline.items()}}


def export_encoder(out_dir, frozen, state, model_cfg, config) -> dict:
    """Writes the encoder with its generator in the project's model format, of kind
    model_cfg['family'] ('psp', 'e4e' or 'restyle', the layouts tools/convert_weights.py
    writes for official ones), for load_pretrained / psp_inference.load_psp."""
    family = model_cfg["family"]
    variables = jax.device_get(encoder_variables(frozen, state["params"], state["batch_stats"]))
    step = int(jax.device_get(state["step"]))
    networks = {family: (family, model_cfg, variables)}
    return model_format.save_trained(out_dir, config, step, family, networks)


# ----------------------------------------------------------------------------- the truth


def truth_applies(config) -> bool:
    """Whether the test faces' true codes are known (stylejax.ground_truth): a generator
    taught the renderer (its export's "latents") and a synthetic_faces test set; measured in
    a single process (a host-local pass)."""
    from stylejax import ground_truth

    name = config.data.test_name or config.data.name
    return (
        jax.process_count() == 1
        and ground_truth.is_synthetic_faces(name)
        and ground_truth.renderer_taught(config.model.generator or SHIPPED_GENERATOR)
    )


def truth_batches(config):
    """The evaluator's test examples (same data set, order and task transform) with the
    factors of their targets: dicts of source, target, factors."""
    from stylejax import ground_truth
    from stylejax.data import pipeline
    from stylejax.data import tasks as task_lib

    _, keys = task_lib.TASKS[config.data.task]
    ds = pipeline.make_dataset(
        config.data.test_name or config.data.name,
        global_batch_size=config.eval.batch_size,
        split=config.eval.split,
        seed=None,
        task=config.data.task,
        keys=(*keys, "factors"),
        flip=False,
        repeat=True,
        data_dir=config.data.directory or None,
        process_index=0,
        process_count=1,
    )
    num_batches = config.eval.num_examples // config.eval.batch_size
    for batch in ds.take(num_batches).as_numpy_iterator():
        factors = batch["factors"]
        if config.data.task == "frontalization":  # the target is the `frontal` render
            factors = ground_truth.frontal_factors(factors)
        yield {"source": batch["source"], "target": batch["target"], "factors": factors}


def inversion_truth(config, task, G, encode, baseline: str = "baseline/") -> dict[str, float]:
    """ground_truth.inversion_scores on the test faces: the encoder's W+ distance to the
    targets' true codes (`encode(source) -> {prefix: codes}`), the latent average's as
    `<baseline>true_w_distance`, and G(true code)'s PSNR/SSIM; {} unless truth_applies."""
    from stylejax import ground_truth

    if not truth_applies(config):
        return {}
    g_vars, latent_avg = jax.device_get((task.frozen["decoder"], task.frozen["latent_avg"]))
    batches = truth_batches(config)
    return ground_truth.inversion_scores(G, g_vars, batches, encode, latent_avg, baseline)


def inference_model(build, config, task, state):
    """The trained pSp or e4e encoder as a psp_inference.PSPModel (weights: task.frozen and
    the state); `build` is the method's build(config, frozen)."""
    from stylejax import psp_inference

    model, model_cfg, _ = build(config, frozen="abstract")  # the weights: task.frozen
    variables = encoder_variables(task.frozen, state["params"], state["batch_stats"])
    return psp_inference.PSPModel(model, jax.device_get(variables), model_cfg)


def encoder_truth(config, task, trained) -> dict[str, float]:
    """inversion_truth for a pSp or e4e encoder (a psp_inference.PSPModel, e.g.
    inference_model's): `true_w_distance` of its codes."""
    encode = lambda x: {"": np.asarray(trained.encode(x))}
    return inversion_truth(config, task, trained.module.decoder, encode)
