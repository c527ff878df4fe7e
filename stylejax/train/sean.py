"""SEAN training with the official (SPADE / pix2pixHD) semantics, on the shared engine:

- reconstruction training: the style codes come from the very image whose mask is the input;
- per iteration a G step then a D step (as SPADE's trainer), D seeing [label‖fake ; label‖real]
  in one batch;
- G loss: hinge GAN (−mean D(fake), averaged over the scales) + feature matching
  (λ_feat · mean over scales of Σ_layers L1(D_l(fake), D_l(real))) + VGG19 perceptual
  (λ_vgg, only when ImageNet VGG19 weights are given: there are none offline, and the loss
  is then switched off with a logged warning, never silently);
- D loss: hinge, mean(relu(1 − D(real))) + mean(relu(1 + D(fake))), averaged over scales;
- Adam (β1 0, β2 a config field: 0.9 in the public code's TTUR defaults, 0.999 in the paper)
  with lr 1e-4 for G and 4e-4 for D, constant then decaying linearly to 0 (niter / niter_decay);
- batch norm in train mode over the *global* batch: the step is one jitted program over
  arrays sharded on the data axis, so the means inside the ACEs are global (SyncBatchNorm);
- spectral norm does one power iteration per train-mode call, as torch does.
"""

import functools
from pathlib import Path
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stylejax import images, metrics
from stylejax.data.labels import LABEL, PALETTE
from stylejax.models import sean
from stylejax.models import vgg19 as vgg_lib
from stylejax.train import loop


def generator_kwargs(config) -> dict[str, Any]:
    """Generator constructor arguments (JSON-friendly: also the exported model config)."""
    m = config.model
    names = ("label_nc", "ngf", "num_upsampling_layers", "style_length", "zencoder_ngf")
    return {name: m[name] for name in names + ("spade_hidden",)}


def build_models(config):
    m = config.model
    G = sean.Generator(**generator_kwargs(config))
    D = sean.MultiscaleDiscriminator(m.ndf, m.n_layers_d, m.num_d)
    return G, D


FROZEN = ("load", "random", "abstract")


def load_vgg(config, frozen: str = "load"):
    """(VGG19Features, variables) for the perceptual loss, or None when it is off (lambda_vgg
    0, or no config.train.vgg_weights: then with a logged warning). `frozen` says how to get
    the variables: "load" reads the weights file, "random" draws variables of its shapes
    (benchmarks), "abstract" gives the shapes only (AOT compilation)."""
    if frozen not in FROZEN:
        raise ValueError(f"frozen={frozen!r}: expected one of {FROZEN}")
    t = config.train
    if t.lambda_vgg <= 0:
        return None
    if not t.vgg_weights:
        logging.warning(
            "SEAN: VGG perceptual loss switched OFF: no VGG19 weights given "
            "(--config.train.vgg_weights=vgg19-dcbb9e9d.pth, torchvision's ImageNet file); "
            "lambda_vgg=%g is ignored and the run differs from the official recipe",
            t.lambda_vgg,
        )
        return None
    model = vgg_lib.VGG19Features()
    if frozen == "load":
        from stylejax.convert import sean as convert_sean

        variables = convert_sean.read_vgg19(t.vgg_weights)
    else:
        r = config.model.resolution
        init = functools.partial(model.init, jax.random.PRNGKey(0), jnp.zeros((1, r, r, 3)))
        variables = jax.eval_shape(init) if frozen == "abstract" else jax.jit(init)()
    source = t.vgg_weights if frozen == "load" else f"{frozen} weights"
    logging.info("SEAN: VGG perceptual loss on (λ %g) with %s", t.lambda_vgg, source)
    return model, variables


def optimizers(config):
    t = config.train
    decay_start = int(config.num_steps * t.decay_start_fraction)

    def schedule(lr):
        return optax.join_schedules(
            [
                optax.constant_schedule(lr),
                optax.linear_schedule(lr, 0.0, max(config.num_steps - decay_start, 1)),
            ],
            [decay_start],
        )

    # optax.flatten: one Adam update on the concatenated parameters. Per leaf, the ~1,400
    # small tensors (19 style layers per ACE) made the step's program 45k ops, most of it
    # optimizer arithmetic, and its CPU compile minutes long.
    return (
        optax.flatten(optax.adam(schedule(t.g_lr), b1=t.beta1, b2=t.beta2, eps=t.adam_eps)),
        optax.flatten(optax.adam(schedule(t.d_lr), b1=t.beta1, b2=t.beta2, eps=t.adam_eps)),
    )


def init_state(config, G, D, g_tx, d_tx, rng) -> dict[str, Any]:
    g_rng, d_rng = jax.random.split(rng)
    size, label_nc = config.model.resolution, config.model.label_nc
    g_vars = sean.init_generator(G, g_rng, size)
    d_vars = sean.init_discriminator(D, d_rng, label_nc, size)
    return {
        "step": jnp.zeros((), jnp.int32),
        "g": g_vars,
        "d": d_vars,
        "g_opt": g_tx.init(g_vars["params"]),
        "d_opt": d_tx.init(d_vars["params"]),
    }


def hinge_d_loss(outputs, n_fake: int):
    """Mean over scales of mean(relu(1 + D(fake))) + mean(relu(1 − D(real)))."""
    fake = jnp.mean(jnp.stack([jnp.mean(jax.nn.relu(1 + o[-1][:n_fake])) for o in outputs]))
    real = jnp.mean(jnp.stack([jnp.mean(jax.nn.relu(1 - o[-1][n_fake:])) for o in outputs]))
    return fake, real


def feature_matching(outputs, n_fake: int):
    """Σ_scales Σ_layers L1(D_l(fake), D_l(real)) / num_D, real features held constant."""
    total = 0.0
    for scale in outputs:
        for f in scale[:-1]:
            total = total + jnp.mean(jnp.abs(f[:n_fake] - jax.lax.stop_gradient(f[n_fake:])))
    return total / len(outputs)


def discriminator_input(segmap, images_):
    return jnp.concatenate([segmap, images_], axis=-1)


def train_step(config, G, D, vgg, g_tx, d_tx, state, batch, vgg_variables=None):
    """One G step then one D step; `vgg_variables` (Task.frozen) only with the VGG loss on."""
    t = config.train
    real = batch["image"]
    segmap = sean.one_hot(batch["segmentation"], config.model.label_nc)
    n = real.shape[0]
    rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), state["step"])
    k_g, k_d = jax.random.split(rng)
    g_vars, d_vars = state["g"], state["d"]
    d_in_real = discriminator_input(segmap, real)

    # ---- G step.
    def g_loss_fn(g_params):
        fake, g_updates = G.apply(
            {**g_vars, "params": g_params},
            segmap,
            real,
            train=True,
            rngs={"noise": k_g},
            mutable=["batch_stats", "spectral"],
        )
        outputs, d_updates = D.apply(
            d_vars,
            jnp.concatenate([discriminator_input(segmap, fake), d_in_real]),
            train=True,
            mutable=["spectral"],
        )
        gan = jnp.mean(jnp.stack([-jnp.mean(o[-1][:n]) for o in outputs]))
        feat = feature_matching(outputs, n)
        loss = gan + t.lambda_feat * feat
        parts = {"g_gan": gan, "g_feat": feat}
        if t.lambda_l1:
            l1 = metrics.pyramid_l1(fake, real)
            loss = loss + t.lambda_l1 * l1
            parts["g_l1"] = l1
        if vgg is not None:
            perceptual = vgg_lib.perceptual_loss(vgg, vgg_variables, fake, real)
            loss = loss + t.lambda_vgg * perceptual
            parts["g_vgg"] = perceptual
        return loss, (parts, g_updates, d_updates)

    (g_loss, (g_parts, g_updates, d_updates)), g_grads = jax.value_and_grad(
        g_loss_fn, has_aux=True
    )(g_vars["params"])
    updates, g_opt = g_tx.update(g_grads, state["g_opt"], g_vars["params"])
    g_vars = {**g_vars, **g_updates, "params": optax.apply_updates(g_vars["params"], updates)}
    d_vars = {**d_vars, **d_updates}

    # ---- D step on the updated G's fakes (G in train mode again, as the official code).
    fake, g_updates = G.apply(
        g_vars, segmap, real, train=True, rngs={"noise": k_d}, mutable=["batch_stats", "spectral"]
    )
    g_vars = {**g_vars, **g_updates}
    d_in = jnp.concatenate([discriminator_input(segmap, jax.lax.stop_gradient(fake)), d_in_real])

    def d_loss_fn(d_params):
        outputs, updates = D.apply(
            {**d_vars, "params": d_params}, d_in, train=True, mutable=["spectral"]
        )
        fake_loss, real_loss = hinge_d_loss(outputs, n)
        real_logits = jnp.mean(jnp.stack([jnp.mean(o[-1][n:]) for o in outputs]))
        fake_logits = jnp.mean(jnp.stack([jnp.mean(o[-1][:n]) for o in outputs]))
        aux = (fake_loss, real_loss, fake_logits, real_logits, updates)
        return fake_loss + real_loss, aux

    (d_loss, (d_fake, d_real, fake_logits, real_logits, d_updates)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True
    )(d_vars["params"])
    updates, d_opt = d_tx.update(d_grads, state["d_opt"], d_vars["params"])
    d_vars = {**d_vars, **d_updates, "params": optax.apply_updates(d_vars["params"], updates)}

    scalars = {
        "g_loss": g_loss,
        **g_parts,
        "d_loss": d_loss,
        "d_fake": d_fake,
        "d_real": d_real,
        "d_fake_logits": fake_logits,
        "d_real_logits": real_logits,
        "g_grad_norm": flat_norm(g_grads),
        "d_grad_norm": flat_norm(d_grads),
        "recon_l1": jnp.mean(jnp.abs(fake - real)),
    }
    new_state = {**state, "step": state["step"] + 1, "g": g_vars, "d": d_vars}
    new_state.update(g_opt=g_opt, d_opt=d_opt)
    return new_state, scalars


def flat_norm(tree):
    return jnp.linalg.norm(jax.flatten_util.ravel_pytree(tree)[0])


def colorize(segmentation):
    """Class indices [N, H, W] → palette colours in [-1, 1] (for grids)."""
    return jnp.asarray(PALETTE, jnp.float32)[segmentation] / 127.5 - 1.0


def reconstruct(G, g_vars, segmentation, image, label_nc: int, rng):
    """Eval-mode G(mask, style image) with the official per-call random noise."""
    segmap = sean.one_hot(segmentation, label_nc)
    return G.apply(g_vars, segmap, image, rngs={"noise": rng})


def triplets(segmentation, image, output):
    """Rows of (mask | style image | output) as one NHWC batch for make_grid(cols=3·k)."""
    stacked = jnp.stack([colorize(segmentation), image, output], axis=1)
    return stacked.reshape((-1,) + image.shape[1:])


def region_transfer_scores(G, g_vars, labels_a, image_a, labels_b, image_b, region, rng):
    """How a region style transfer B → A acts, for class maps [N, H, W] and images in
    [-1, 1]. Returns the mean over the pairs holding the region in both A and B of
    colour_gap_before / _after: the L2 distance (RGB, [-1, 1] units) between the mean colour
    of A's region in G(A) (before) or in the edit (after) and the mean colour of B's region
    in B; psnr_outside: PSNR (dB) of the edit against G(A) outside A's region (both with the
    same noise)."""
    label_nc = G.label_nc

    @jax.jit
    def run(labels_a, image_a, labels_b, image_b):
        seg_a, seg_b = sean.one_hot(labels_a, label_nc), sean.one_hot(labels_b, label_nc)
        codes_a, _ = G.apply(g_vars, image_a, seg_a, method=G.encode)
        codes_b, present_b = G.apply(g_vars, image_b, seg_b, method=G.encode)
        edited_codes = sean.transfer_regions(codes_a, codes_b, [region], present_b)
        # One rng for both calls: the edit and G(A) see the same noise draws.
        return [
            G.apply(g_vars, seg_a, style_codes=codes, rngs={"noise": rng})
            for codes in (codes_a, edited_codes)
        ]

    before, after = (np.asarray(x) for x in run(labels_a, image_a, labels_b, image_b))
    in_a = np.asarray(labels_a) == region
    in_b = np.asarray(labels_b) == region
    gaps_before, gaps_after, psnrs = [], [], []
    for i in range(len(before)):
        if not in_a[i].any() or not in_b[i].any():
            continue
        target = np.asarray(image_b)[i][in_b[i]].mean(axis=0)
        gaps_before.append(np.linalg.norm(before[i][in_a[i]].mean(axis=0) - target))
        gaps_after.append(np.linalg.norm(after[i][in_a[i]].mean(axis=0) - target))
        outside = ~in_a[i]
        mse = np.mean(np.square(after[i][outside] - before[i][outside]))
        psnrs.append(float(10 * np.log10(4.0 / max(mse, 1e-12))))
    if not psnrs:
        raise ValueError(f"region {region} is in no pair of A and B images")
    return {
        "pairs": len(psnrs),
        "colour_gap_before": float(np.mean(gaps_before)),
        "colour_gap_after": float(np.mean(gaps_after)),
        "psnr_outside": float(np.mean(psnrs)),
    }


def fixed_batches(config, split: str, batch_size: int):
    """Unshuffled, unflipped (image, segmentation) batches of `split`, one pass, read whole
    by this process (evaluation and sample grids)."""
    from stylejax.data import pipeline

    keys = ("image", "segmentation")
    data_dir = config.data.directory or None
    return pipeline.split_batches(config.data.name, split, keys, batch_size, data_dir=data_dir)


def make_task(config, mesh=None, frozen: str = "load") -> loop.Task:
    """The engine's task. The VGG19 of the perceptual loss is Task.frozen (in neither the
    state nor its checkpoints), got as `frozen` says (load_vgg); the sample triplets read
    their test batch on first use."""
    del mesh  # the engine shards the state
    G, D = build_models(config)
    g_tx, d_tx = optimizers(config)
    vgg_loaded = load_vgg(config, frozen)
    vgg, vgg_variables = vgg_loaded if vgg_loaded is not None else (None, None)
    r = config.model.resolution
    batch_spec = {
        "image": jax.ShapeDtypeStruct((config.batch_size, r, r, 3), jnp.float32),
        "segmentation": jax.ShapeDtypeStruct((config.batch_size, r, r), jnp.int32),
    }
    samples = None
    if config.num_samples:
        noise_rng = jax.random.PRNGKey(config.seed + 1)

        @functools.cache
        def fixed():  # read on the first call: make_task reads no data
            return next(fixed_batches(config, config.eval.split, config.num_samples))

        @jax.jit
        def sample_triplets(g_vars, segmentation, image):
            out = reconstruct(G, g_vars, segmentation, image, config.model.label_nc, noise_rng)
            return triplets(segmentation, image, out)

        def samples(state):
            return sample_triplets(state["g"], fixed()["segmentation"], fixed()["image"])

    return loop.Task(
        init_state=functools.partial(init_state, config, G, D, g_tx, d_tx),
        train_step=functools.partial(train_step, config, G, D, vgg, g_tx, d_tx),
        samples=samples,
        global_batch_size=config.batch_size,
        parameters=lambda s: {"G": s["g"]["params"], "D": s["d"]["params"]},
        frozen=vgg_variables,
        batch_spec=batch_spec,
    )


def make_data(config):
    """Per-process batches of (image, segmentation), plus the tf.data iterator to checkpoint."""
    from stylejax.data import pipeline

    d = config.data
    ds = pipeline.make_dataset(
        d.name,
        global_batch_size=config.batch_size,
        split=d.split,
        seed=config.seed,
        keys=("image", "segmentation"),
        flip=d.flip,
        shuffle_buffer=d.shuffle_buffer,
        data_dir=d.directory or None,
    )
    return loop.numpy_batches(ds, ("image", "segmentation"))


def evaluate(config, state, workdir, *, num_examples=None, inception=None) -> dict[str, float]:
    """PSNR, SSIM and RMSE of the trained G's reconstructions G(mask, image) on
    config.eval.split, with a (mask | image | output) grid in workdir/eval/. With the FID
    Inception (`inception`: (module, variables), else config.eval.inception_weights when
    set), also the FID between the reconstructions and the images, as SEAN's paper
    measures it. On labels with a hair class, also the hair-style transfer of the first
    batch (each image takes its batch-mate's hair code; region_transfer_scores) as
    hair_transfer/*: its psnr_outside is what the transfer leaves of the rest."""
    num = num_examples or config.eval.num_examples
    G, _ = build_models(config)
    g_vars = jax.device_get(state["g"])
    if inception is None and config.eval.inception_weights:
        from stylejax import evaluate as evaluate_lib

        inception = evaluate_lib.load_inception(config.eval.inception_weights)

    @jax.jit
    def scores(batch, rng):
        out = reconstruct(
            G, g_vars, batch["segmentation"], batch["image"], config.model.label_nc, rng
        )
        mse = jnp.mean(jnp.square(out - batch["image"]), axis=(1, 2, 3))
        return out, metrics.psnr(out, batch["image"]), metrics.ssim(out, batch["image"]), mse

    if inception is not None:
        features = jax.jit(lambda x: inception[0].apply(inception[1], x))
    totals = {"psnr": [], "ssim": [], "rmse": []}
    real_feats, fake_feats = [], []
    first = None
    seen = 0
    for i, batch in enumerate(fixed_batches(config, config.eval.split, config.eval.batch_size)):
        out, psnr, ssim, mse = scores(batch, jax.random.PRNGKey(i))
        totals["psnr"].append(np.asarray(psnr))
        totals["ssim"].append(np.asarray(ssim))
        # RMSE in 8-bit pixel units, as SEAN's paper reports it.
        totals["rmse"].append(np.sqrt(np.asarray(mse)) * 127.5)
        if inception is not None:
            real_feats.append(np.asarray(features(batch["image"])))
            fake_feats.append(np.asarray(features(out)))
        if first is None:
            first = np.asarray(triplets(batch["segmentation"], batch["image"], out))
            first_batch = batch
        seen += len(psnr)
        if seen >= num:
            break
    result = {k: float(np.mean(np.concatenate(v))) for k, v in totals.items()}
    if inception is not None:
        result["fid"] = float(
            metrics.frechet_distance(np.concatenate(real_feats), np.concatenate(fake_feats))
        )
    result["num_examples"] = float(seen)
    if config.model.label_nc > LABEL["hair"]:
        seg, img = first_batch["segmentation"], first_batch["image"]
        b_seg, b_img = np.roll(seg, 1, axis=0), np.roll(img, 1, axis=0)
        rng = jax.random.PRNGKey(config.seed)
        hair = region_transfer_scores(G, g_vars, seg, img, b_seg, b_img, LABEL["hair"], rng)
        result.update({f"hair_transfer/{k}": float(v) for k, v in hair.items()})
    images.save_grid(first[: 3 * 8], Path(workdir) / "eval" / "reconstructions.png", 3, 1)
    logging.info("SEAN eval on %s/%s: %s", config.data.name, config.eval.split, result)
    return result


def export(config, state, out_dir) -> dict:
    """The trained generator in the project's model format, for load_pretrained."""
    from stylejax import model_format

    g = ("sean_generator", generator_kwargs(config), jax.device_get(state["g"]))
    step = int(jax.device_get(state["step"]))
    return model_format.save_trained(out_dir, config, step, "sean", {"g": g})
