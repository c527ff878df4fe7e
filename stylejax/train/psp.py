"""pSp encoder training (Richardson et al. 2021) on the shared engine.

A frozen StyleGAN2 generator G and an encoder E are trained so that G(E(x) + w_avg)
reproduces the target y of a task (inversion, frontalisation, sketch/segmentation → face,
super-resolution, inpainting). As in the public pSp coach:

- losses λ_l2·MSE + λ_lpips·LPIPS-Alex + λ_id·(1 − cos ArcFace) + λ_w_norm·‖codes − w_avg‖,
  and the same MSE/LPIPS on the inner face crop (rows 35:223, cols 32:220 of 256) for
  frontalisation; outputs are average-pooled to the target's size first (pSp's face_pool);
- the generator draws random noise while training and constant noise when evaluating;
- the encoder's batch norm trains with batch statistics (over the global batch: the step is
  one program over the whole mesh) and evaluates with its running averages;
- Ranger (RAdam + Lookahead k = 6, α = 0.5, betas (0.95, 0.999), ε 1e-5, gradient
  centralisation) or Adam.

Frozen networks (G, LPIPS, ArcFace) travel as the engine's `frozen` argument, never as
constants of the compiled step.
"""

import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stylejax import files, images, metrics
from stylejax.models import encoders, irse
from stylejax.models import lpips as lpips_lib
from stylejax.models import stylegan2 as sg
from stylejax.nn import ops
from stylejax.train import loop

SHIPPED_GENERATOR = Path(__file__).resolve().parents[1] / "pretrained" / "synthetic64"
W_ENCODER = "BackboneEncoderUsingLastLayerIntoW"

# ----------------------------------------------------------------------------- networks


def load_generator(config):
    """(G, variables) of the frozen decoder: config.model.generator or the shipped one."""
    from stylejax.model_format import load_pretrained

    path = config.model.generator
    if not path:
        if config.variant == "ffhq_encode":
            raise ValueError(
                "configs/psp.py:ffhq_encode needs --config.model.generator=DIR: a converted "
                "1024 px StyleGAN2 (tools/convert_weights.py stylegan2-ffhq-config-f.pt DIR)"
            )
        path = SHIPPED_GENERATOR
    G, variables = load_pretrained(path)
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


def encoder_config(config, G, resolution: int) -> tuple[str, dict]:
    """(encoder_type, constructor kwargs) for inputs of `resolution` pixels and G's styles."""
    m = config.model
    encoder_type = W_ENCODER if m.learn_in_w else m.encoder_type
    if m.learn_in_w and m.encoder_type not in (encoders.ENCODER_TYPES[0], W_ENCODER):
        raise ValueError(
            f"model.learn_in_w=True predicts one W, but model.encoder_type={m.encoder_type!r} "
            f"predicts W+; leave encoder_type at its default"
        )
    kwargs = dict(
        n_styles=G.num_ws,
        style_dim=G.w_dim,
        num_layers=m.num_layers,
        mode=m.mode,
        base_width=m.base_width,
    )
    if encoder_type == "GradualStyleEncoder":
        # map2style blocks halve the 1/16, 1/8 and 1/4-resolution maps down to 1×1.
        kwargs["block_spatial"] = [resolution // 16, resolution // 8, resolution // 4]
    if encoder_type == W_ENCODER:
        kwargs.pop("n_styles")
    return encoder_type, kwargs


def model_config(config, G, g_config: dict, resolution: int) -> dict:
    """The PSP model description, in the layout of converted pSp checkpoints."""
    encoder_type, kwargs = encoder_config(config, G, resolution)
    return dict(
        family="psp",
        encoder_type=encoder_type,
        encoder=kwargs,
        input_nc=config.model.input_nc,
        input_size=resolution,
        decoder=g_config,
        start_from_latent_avg=config.model.start_from_latent_avg,
        learn_in_w=encoder_type == W_ENCODER,
    )


def _load_frozen(path, kind: str, what: str):
    from stylejax.model_format import load_pretrained, read_config

    meta = read_config(path)
    kinds = {net["kind"] for net in meta["networks"].values()}
    if kind not in kinds:
        raise ValueError(f"{path}: {what} needs a converted {kind} checkpoint, this holds {kinds}")
    return load_pretrained(path)


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


def optimizer(config) -> optax.GradientTransformation:
    o = config.optimizer
    if o.name == "adam":
        return optax.adam(o.lr)
    if o.name == "ranger":
        fast = optax.chain(centralize_gradients(), optax.radam(o.lr, b1=0.95, b2=0.999, eps=1e-5))
        return optax.lookahead(fast, sync_period=6, slow_step_size=0.5)
    raise ValueError(f"optimizer.name={o.name!r}: expected 'ranger' or 'adam'")


def _opt_params(config, state):
    """What the optimiser updates: Lookahead keeps slow weights beside the fast ones."""
    if config.optimizer.name == "ranger":
        return optax.LookaheadParams(state["params"], state["slow"])
    return state["params"]


# ----------------------------------------------------------------------------- losses


def face_crop(images):
    """pSp's inner-face crop, rows 35:223 and columns 32:220 of a 256 image, scaled to the
    batch's size."""
    size = images.shape[1]
    r0, r1, c0, c1 = (round(v * size / 256) for v in (35, 223, 32, 220))
    return images[:, r0:r1, c0:c1]


def pool_to(images, size: int):
    """pSp's face_pool: adaptive average pooling of the generator's output to `size`."""
    return images if images.shape[1] == size else ops.adaptive_avg_pool2d(images, size)


def reconstruction_losses(weights, nets, frozen, y_hat, y, codes, latent_avg):
    """Weighted pSp losses between output y_hat and target y. Returns (total, {name: value})
    with every active term unweighted in the dict."""
    terms = {}
    if weights["l2"]:
        terms["l2"] = jnp.mean(jnp.square(y_hat - y))
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


# ----------------------------------------------------------------------------- the task


def _variables(frozen, params, batch_stats):
    """Full PSP variables: the trainable encoder beside the frozen decoder."""
    variables = {
        "params": {"encoder": params, "decoder": frozen["decoder"]["params"]},
        "buffers": {"decoder": frozen["decoder"]["buffers"], "latent_avg": frozen["latent_avg"]},
    }
    if batch_stats:
        variables["batch_stats"] = {"encoder": batch_stats}
    return variables


def init_state(config, model, tx, input_shape, rng) -> dict[str, Any]:
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
    state["opt_state"] = tx.init(_opt_params(config, state))
    return state


def train_step(config, model, tx, weights, nets, state, batch, frozen):
    x, y = batch["source"], batch["target"]
    rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), state["step"])
    k_noise, k_flip = jax.random.split(rng)
    if config.data.task == "frontalization":
        # pSp's frontalisation flips the target independently of the source.
        flip = jax.random.bernoulli(k_flip, 0.5, (y.shape[0], 1, 1, 1))
        y = jnp.where(flip, y[:, :, ::-1], y)

    def loss_fn(params):
        variables = _variables(frozen, params, state["batch_stats"])
        (y_hat, codes), updated = model.apply(
            variables,
            x,
            train=True,
            noise_mode="random",
            return_latents=True,
            rngs={"noise": k_noise},
            mutable=["batch_stats"],
        )
        y_hat = pool_to(y_hat, y.shape[1])
        # pSp's w-norm measures the codes from w_avg when the encoder starts there.
        origin = frozen["latent_avg"] * config.model.start_from_latent_avg
        total, terms = reconstruction_losses(weights, nets, frozen, y_hat, y, codes, origin)
        return total, (terms, updated.get("batch_stats", {}).get("encoder", {}))

    (total, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"]
    )
    opt_params = _opt_params(config, state)
    updates, opt_state = tx.update(grads, state["opt_state"], opt_params)
    new_params = optax.apply_updates(opt_params, updates)
    params, slow = (
        (new_params.fast, new_params.slow)
        if config.optimizer.name == "ranger"
        else (new_params, {})
    )
    new_state = {
        "step": state["step"] + 1,
        "params": params,
        "batch_stats": batch_stats,
        "slow": slow,
        "opt_state": opt_state,
    }
    step_metrics = {
        "loss": total,
        **{f"loss_{k}": v for k, v in terms.items()},
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(params),
    }
    return new_state, step_metrics


def eval_batch(model, nets, state, frozen, batch, baseline: bool = False):
    """Per-batch sums of the test metrics for G(E(x)) (or, with baseline, for G(w_avg)),
    and the outputs. Constant noise, running batch-norm statistics."""
    x, y = batch["source"], batch["target"]
    if baseline:
        avg = jnp.broadcast_to(frozen["latent_avg"], (x.shape[0], *frozen["latent_avg"].shape))
        y_hat = model.apply(_variables(frozen, state["params"], None), avg, method=model.decode)
    else:
        variables = _variables(frozen, state["params"], state["batch_stats"])
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
    input | output | target grid of the first few."""

    def __init__(self, config, model, nets, frozen_device, mesh):
        from stylejax.data import pipeline

        e = config.eval
        if e.num_examples % e.batch_size:
            raise ValueError(
                f"eval.num_examples={e.num_examples} must be a multiple of "
                f"eval.batch_size={e.batch_size}"
            )
        self.config, self.mesh = config, mesh
        self.frozen = frozen_device
        self.num_batches = e.num_examples // e.batch_size
        self.dataset = pipeline.make_dataset(
            config.data.test_name or config.data.name,
            global_batch_size=e.batch_size,
            split=config.data.test_split,
            seed=None,
            task=config.data.task,
            flip=False,
            repeat=True,
            data_dir=config.data.directory or None,
        )
        repl = loop.replicated(mesh)
        self._eval = jax.jit(
            functools.partial(eval_batch, model, nets),
            static_argnames="baseline",
            out_shardings=(repl, repl),
        )

    def __call__(self, state, baseline: bool = False):
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


def make_data(config):
    from stylejax.data import pipeline

    ds = pipeline.make_dataset(
        config.data.name,
        global_batch_size=config.batch_size,
        split=config.data.train_split,
        seed=config.seed,
        task=config.data.task,
        flip=config.data.flip,
        shuffle_buffer=config.data.shuffle_buffer,
        data_dir=config.data.directory or None,
    )
    shape = tuple(int(d) for d in ds.element_spec["source"].shape[1:])
    return (*loop.numpy_batches(ds, ("source", "target")), shape)


def load_networks(config) -> dict[str, Any]:
    """The frozen networks from their files: the generator (with its config and latent
    average) and, when given, LPIPS and ArcFace."""
    G, g_vars = load_generator(config)
    frozen = {"decoder": g_vars, "latent_avg": latent_average(G, g_vars)}
    nets = {}
    if config.loss.lpips_weights:
        nets["lpips"], frozen["lpips"] = _load_frozen(config.loss.lpips_weights, "lpips", "LPIPS")
    if config.loss.id_weights:
        nets["arcface"], frozen["arcface"] = _load_frozen(
            config.loss.id_weights, "arcface", "the ID loss"
        )
    return dict(G=G, g_config=_generator_config(config), nets=nets, frozen=frozen)


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
    from stylejax.convert.stylegan2 import build_generator

    g_config = _generator_config(config) if config.model.generator else CONFIG_F
    G = build_generator({**g_config, "fused_modconv": False})
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


def make_task(config, input_shape, mesh=None, networks=None, evaluate=True):
    """The engine task plus (model, model_config). `networks`: load_networks(config) by
    default; abstract_networks(config) to compile without weights (then evaluate=False)."""
    mesh = loop.make_mesh() if mesh is None else mesh
    networks = load_networks(config) if networks is None else networks
    G, nets = networks["G"], networks["nets"]
    resolution = input_shape[0]
    if input_shape[-1] != config.model.input_nc:
        raise ValueError(
            f"the {config.data.task} task gives {input_shape[-1]}-channel inputs but "
            f"model.input_nc={config.model.input_nc}"
        )
    if G.img_resolution < resolution:
        raise ValueError(
            f"the generator makes {G.img_resolution} px images, smaller than the "
            f"{resolution} px targets of {config.data.name}"
        )
    g_config = json.loads(json.dumps(networks["g_config"]))
    model_cfg = model_config(config, G, g_config, resolution)
    encoder = encoders.build_encoder(model_cfg["encoder_type"], **model_cfg["encoder"])
    model = encoders.PSP(encoder, G, config.model.start_from_latent_avg)
    weights = loss_weights(config, "lpips" in nets, "arcface" in nets)
    logging.info("pSp loss weights: %s", weights)
    tx = optimizer(config)
    frozen = networks["frozen"]
    if evaluate:  # placed once, for training and evaluation
        frozen = jax.device_put(frozen, loop.replicated(mesh))
    task = loop.Task(
        init_state=functools.partial(init_state, config, model, tx, input_shape),
        train_step=functools.partial(train_step, config, model, tx, weights, nets),
        samples=None,
        global_batch_size=config.batch_size,
        parameters=lambda s: {"encoder": s["params"]},
        frozen=frozen,
        prepare_state=functools.partial(init_encoder_from_arcface, config)
        if config.model.encoder_init
        else None,
        evaluate=Evaluator(config, model, nets, frozen, mesh) if evaluate else None,
    )
    return task, model, model_cfg


def make_abstract_task(config):
    """For tools/aot_compile.py: the task built from shapes only (no weights, no data)."""
    return make_task(
        config, input_shape(config), networks=abstract_networks(config), evaluate=False
    )[0]


def input_shape(config) -> tuple[int, int, int]:
    """The encoder input [H, W, C]: the data set's resolution (the number after the last
    '/' of data.name) and the task's channel count."""
    try:
        size = int(config.data.name.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(
            f"data.name={config.data.name!r}: expected <builder>/<resolution>, e.g. ffhq/256"
        ) from None
    return (size, size, config.model.input_nc)


def _generator_config(config) -> dict:
    from stylejax.model_format import read_config

    meta = read_config(config.model.generator or SHIPPED_GENERATOR)
    nets = meta["networks"]
    return nets["g_ema" if "g_ema" in nets else next(iter(nets))]["config"]


def init_encoder_from_arcface(config, state):
    """pSp's initialisation: the encoder trunk (input layer when the input is RGB, and every
    body unit) from a converted ArcFace IR-SE; the heads stay random."""
    path = config.model.encoder_init
    _, arc = _load_frozen(path, "arcface", "model.encoder_init")
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


def train_and_evaluate(config, workdir):
    """Trains, evaluates on the test split every eval_every steps, and ends with a report
    (workdir/report.json) comparing G(E(x)) with the G(w_avg) baseline, and the model for
    inference in workdir/model."""
    loop.setup_jax()
    mesh = loop.make_mesh()
    data, tf_iterator, input_shape = make_data(config)
    task, model, model_cfg = make_task(config, input_shape, mesh)
    logging.info(
        "pSp %s (%s) on %s/%s, %d px input: %d process(es), %d device(s), global batch %d",
        config.variant or "default",
        model_cfg["encoder_type"],
        config.data.name,
        config.data.task,
        input_shape[0],
        jax.process_count(),
        jax.device_count(),
        config.batch_size,
    )
    state, history = loop.run(task, config, workdir, data, tf_iterator, mesh)
    final = next((m for _, m in reversed(history) if any(k.startswith("test/") for k in m)), None)
    baseline, _ = task.evaluate(state, baseline=True)
    last_train = next((m for _, m in reversed(history) if "loss" in m), {})
    report = {
        "variant": config.variant or "default",
        "encoder_type": model_cfg["encoder_type"],
        "steps": int(jax.device_get(state["step"])),
        "train": last_train,  # the last logged training metrics
        "test_examples": config.eval.num_examples,
        "psp": {k[len("test/") :]: v for k, v in (final or {}).items()},
        "w_avg_baseline": baseline,
    }
    if jax.process_count() == 1:  # the converted-checkpoint writer is single-process
        source = f"{Path(workdir).absolute()} step {report['steps']}"
        save_model(Path(workdir) / "model", task, state, model_cfg, source)
        logging.info("model for stylejax.psp_inference.load_psp: %s", Path(workdir) / "model")
    if jax.process_index() == 0:
        files.write_json(Path(workdir) / "report.json", report)
    logging.info("test-split report:\n%s", format_report(report))
    return state, report


def format_report(report: dict) -> str:
    names = list(report["psp"] or report["w_avg_baseline"])
    lines = [f"{'':>14}" + "".join(f"{n:>14}" for n in names)]
    for label, key in (("G(E(x))", "psp"), ("G(w_avg)", "w_avg_baseline")):
        row = report[key]
        lines.append(f"{label:>14}" + "".join(f"{row.get(n, float('nan')):>14.4f}" for n in names))
    return "\n".join(lines)


def save_model(out_dir, task, state, model_cfg, source: str, overwrite: bool = True):
    """Writes the encoder with its generator as a converted checkpoint of kind
    model_cfg['family'] ('psp', 'e4e' or 'restyle', the layouts tools/convert_weights.py
    writes for official ones), for model_format.load_pretrained / psp_inference.load_psp."""
    from stylejax.model_format import save_model

    family = model_cfg["family"]
    variables = jax.device_get(_variables(task.frozen, state["params"], state["batch_stats"]))
    meta = {
        "family": family,
        "format": "stylejax-train",
        "source": source,
        "networks": {family: {"kind": family, "config": model_cfg}},
    }
    save_model(out_dir, {family: variables}, meta, overwrite=overwrite)
    return meta


def export_psp(config, workdir, out_dir, step=None, overwrite=False) -> dict:
    """Exports the encoder of a training run's checkpoint (latest, or `step`)."""
    task, _, model_cfg = make_task(config, input_shape(config))
    abstract = jax.eval_shape(task.init_state, jax.random.PRNGKey(0))
    state, step = loop.restore_checkpoint(workdir, abstract, step)
    source = f"{workdir} step {step} ({config.variant or 'default'} variant)"
    return save_model(out_dir, task, state, model_cfg, source, overwrite)
