"""e4e encoder training (Tov et al. 2021) on the shared engine, built on pSp's training.

The pSp pieces (frozen generator, L2 / LPIPS / ID / w-norm losses, Ranger, data, the
test-split evaluator, export) come from `stylejax.train.psp_family`; e4e adds, as the public coach does:

- progressive training: the offsets Δ1 … Δ(n−1) are unlocked one by one at
  `progressive_steps` ([0, start, start + every, …]); the stage is derived from the step
  counter inside the step, so one compiled step serves every stage;
- delta regularisation λ_delta · Σ_{unlocked i} mean_batch ‖w_i − w_0‖_p;
- a latent discriminator on single W codes (an MLP; reals = mapping(z), fakes = the encoder's
  codes), non-saturating losses, Adam, lazy R1 every d_reg_every steps scaled by the
  interval, optional history pools; the encoder's adversarial term averages
  softplus(−D(w_i)) over the unlocked rows. The discriminator runs first, then the encoder.

Where we differ from the public code (said in docs/restyle_e4e.md): the discriminator's
fakes include latent_avg, as the codes the generator receives (the public coach leaves it
out, omertov/encoder4editing#19); its encoder runs without updating batch-norm statistics.
The same pieces serve ReStyle-e4e (`stylejax.train.restyle`).
"""

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stylejax.models import e4e as e4e_models
from stylejax.train import gan, loop
from stylejax.train import psp as psp_train
from stylejax.train import psp_family as family

# ----------------------------------------------------------------------------- progressive


def progressive_steps(config, n_styles: int) -> list[int] | None:
    """The step at which each stage starts ([0, s1, …], n_styles entries), or None for
    training every offset from the start (no progressive schedule, no delta loss)."""
    e = config.e4e
    if e.progressive_steps:
        steps = [int(s) for s in e.progressive_steps]
        if len(steps) != n_styles or steps[0] != 0 or steps != sorted(steps):
            raise ValueError(
                f"e4e.progressive_steps={steps}: expected {n_styles} increasing steps (one per "
                f"W+ row) starting at 0"
            )
        return steps
    if e.progressive_start is None or e.progressive_start < 0:
        return None
    every = e.progressive_step_every
    return [0] + [e.progressive_start + i * every for i in range(n_styles - 1)]


def stage_at(steps: list[int] | None, step):
    """Traced progressive stage at training step `step` (None: not progressive)."""
    if steps is None:
        return None
    return jnp.sum(step >= jnp.asarray(steps, jnp.int32)).astype(jnp.int32) - 1


def delta_loss(codes, stage, p: float):
    """Σ over unlocked rows of the batch-mean ‖w_i − w_0‖_p."""
    return jnp.sum(jnp.mean(e4e_models.delta_norms(codes, stage, p), axis=0))


# ----------------------------------------------------------------------------- discriminator


def pool_query(pool, count, ws, key):
    """e4e's LatentCodesPool on a fixed buffer: while it fills, each w goes in and out
    unchanged; once full, with probability ½ it replaces a random stored code, which is
    returned in its place. Returns (pool, count, returned codes)."""
    size = pool.shape[0]

    def one(carry, inputs):
        pool, count = carry
        w, key = inputs
        k_swap, k_index = jax.random.split(key)
        filling = count < size
        swap = jnp.logical_and(~filling, jax.random.uniform(k_swap) > 0.5)
        index = jnp.where(filling, count, jax.random.randint(k_index, (), 0, size))
        out = jnp.where(swap, pool[index], w)
        pool = jnp.where(filling | swap, pool.at[index].set(w), pool)
        return (pool, count + filling.astype(count.dtype)), out

    keys = jax.random.split(key, ws.shape[0])
    (pool, count), out = jax.lax.scan(one, (pool, count), (ws, keys))
    return pool, count, out


def pick_rows(codes, stage, key, random_row: bool):
    """One W per sample for the discriminator: row 0, or (as the public pool does) a random
    unlocked row."""
    if not random_row:
        return codes[:, 0]
    top = codes.shape[1] - 1 if stage is None else stage
    rows = jax.random.randint(key, (codes.shape[0],), 0, top + 1)
    return codes[jnp.arange(codes.shape[0]), rows]


def discriminator_step(config, D, d_tx, state, real_w, fake_codes, stage, key):
    """D's main update on pooled reals and fakes, then the lazy R1 update. Returns
    (state, metrics)."""
    e = config.e4e
    k_rows, k_real, k_fake = jax.random.split(key, 3)
    fake_w = pick_rows(jax.lax.stop_gradient(fake_codes), stage, k_rows, e.use_w_pool)
    real_w = jax.lax.stop_gradient(real_w)
    state = dict(state)
    if e.use_w_pool:
        state["real_pool"], count_r, real_w = pool_query(
            state["real_pool"], state["pool_count"][0], real_w, k_real
        )
        state["fake_pool"], count_f, fake_w = pool_query(
            state["fake_pool"], state["pool_count"][1], fake_w, k_fake
        )
        state["pool_count"] = jnp.stack([count_r, count_f])

    def d_loss(params):
        real = D.apply({"params": params}, real_w)
        fake = D.apply({"params": params}, fake_w)
        real_loss = gan.logistic_loss(real, real=True)
        fake_loss = gan.logistic_loss(fake, real=False)
        return real_loss + fake_loss, (real_loss, fake_loss)

    (loss, (real_loss, fake_loss)), grads = jax.value_and_grad(d_loss, has_aux=True)(
        state["d_params"]
    )
    updates, d_opt = d_tx.update(grads, state["d_opt"], state["d_params"])
    d_params = optax.apply_updates(state["d_params"], updates)

    def r1_update(operand):
        d_params, d_opt = operand
        scale = e.r1 / 2 * e.d_reg_every

        def loss_fn(params):
            penalty = jnp.mean(gan.r1_penalty(lambda w: D.apply({"params": params}, w), real_w))
            return penalty * scale, penalty

        (_, penalty), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_params)
        updates, d_opt = d_tx.update(grads, d_opt, d_params)
        return optax.apply_updates(d_params, updates), d_opt, penalty

    def no_r1(operand):
        return (*operand, jnp.zeros((), jnp.float32))

    do_r1 = state["step"] % e.d_reg_every == 0
    if e.r1 > 0:
        d_params, d_opt, penalty = jax.lax.cond(do_r1, r1_update, no_r1, (d_params, d_opt))
    else:
        penalty = jnp.zeros((), jnp.float32)
    state.update(d_params=d_params, d_opt=d_opt)
    metrics = {
        "d_loss": loss,
        "d_real_loss": real_loss,
        "d_fake_loss": fake_loss,
        "d_r1_penalty": (penalty, do_r1.astype(jnp.float32)),
    }
    return state, metrics


def encoder_terms(config, D, d_params, codes, stage, progressive: bool):
    """e4e's additions to the encoder loss: ({name: unweighted value}, weighted sum).
    d_params None: no discriminator; progressive False: no delta regularisation."""
    e = config.e4e
    terms, total = {}, 0.0
    if d_params is not None:
        logits = D.apply({"params": d_params}, codes)[..., 0]  # [N, n_styles]
        per_row = jnp.mean(jax.nn.softplus(-logits), axis=0)
        if stage is None:
            terms["adversarial"] = jnp.mean(per_row)
        else:
            active = jnp.arange(codes.shape[1]) <= stage
            terms["adversarial"] = jnp.sum(jnp.where(active, per_row, 0)) / (stage + 1)
        total += e.w_discriminator_lambda * terms["adversarial"]
    if progressive and e.delta_norm_lambda > 0:
        terms["delta"] = delta_loss(codes, stage, e.delta_norm)
        total += e.delta_norm_lambda * terms["delta"]
    return terms, total


def real_codes(model, frozen, key, n: int):
    """mapping(z) for n random z: the discriminator's real W codes."""
    z = loop.split_over_devices(jax.random.normal(key, (n, model.decoder.z_dim)))
    variables = {"params": {"decoder": frozen["decoder"]["params"]}}
    variables["buffers"] = {"decoder": frozen["decoder"]["buffers"]}
    ws = model.apply(variables, z, method=lambda m, z: m.decoder.map(z))
    return ws[:, 0]


def init_discriminator(config, D, d_tx, w_dim: int, rng) -> dict[str, Any]:
    """The discriminator's part of the training state (empty when it is off)."""
    e = config.e4e
    if e.w_discriminator_lambda <= 0:
        return {}
    params = D.init(rng, jnp.zeros((1, w_dim)))["params"]
    size = max(e.w_pool_size, 1)
    return {
        "d_params": params,
        "d_opt": d_tx.init(params),
        "real_pool": jnp.zeros((size, w_dim), jnp.float32),
        "fake_pool": jnp.zeros((size, w_dim), jnp.float32),
        "pool_count": jnp.zeros((2,), jnp.int32),
    }


def build_discriminator(config, w_dim: int):
    # The public class hard-codes 512 features (its style_dim); we follow the generator's.
    return e4e_models.LatentCodesDiscriminator(features=w_dim), optax.adam(
        config.e4e.w_discriminator_lr
    )


# ----------------------------------------------------------------------------- e4e's step


def train_step(config, model, D, tx, d_tx, weights, nets, steps, state, batch, frozen):
    x, y = batch["source"], batch["target"]
    rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), state["step"])
    k_noise, k_real, k_d = jax.random.split(rng, 3)
    stage = stage_at(steps, state["step"])
    metrics = {}
    if stage is not None:
        metrics["stage"] = stage.astype(jnp.float32)

    if config.e4e.w_discriminator_lambda > 0:
        variables = family.encoder_variables(frozen, state["params"], state["batch_stats"])
        fake = model.apply(
            variables,
            x,
            train=True,
            stage=stage,
            method=e4e_models.E4E.encode,
            mutable=["batch_stats"],
        )[0]
        real = real_codes(model, frozen, k_real, x.shape[0])
        state, d_metrics = discriminator_step(config, D, d_tx, state, real, fake, stage, k_d)
        metrics.update(d_metrics)

    def loss_fn(params):
        variables = family.encoder_variables(frozen, params, state["batch_stats"])
        (y_hat, codes), updated = model.apply(
            variables,
            x,
            stage=stage,
            train=True,
            noise_mode="random",
            return_latents=True,
            rngs={"noise": k_noise},
            mutable=["batch_stats"],
        )
        y_hat = family.pool_to(y_hat, y.shape[1])
        total, terms = family.reconstruction_losses(
            weights, nets, frozen, y_hat, y, codes, frozen["latent_avg"], batch.get("weight")
        )
        extra, extra_total = encoder_terms(
            config, D, state.get("d_params"), codes, stage, steps is not None
        )
        return total + extra_total, ({**terms, **extra}, updated["batch_stats"]["encoder"])

    (total, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"]
    )
    state = family.apply_gradients(config, tx, dict(state, batch_stats=batch_stats), grads)
    state["step"] = state["step"] + 1
    metrics.update(
        loss=total,
        **{f"loss_{k}": v for k, v in terms.items()},
        grad_norm=optax.tree.norm(grads),
        param_norm=optax.tree.norm(state["params"]),
    )
    return state, metrics


# ----------------------------------------------------------------------------- the task


def encoder_kwargs(config, G, resolution: int) -> dict:
    _, kwargs = psp_train.encoder_config(config, G, resolution)
    # pSp's pyramid: map2style blocks halve the 1/16, 1/8 and 1/4-resolution maps to 1×1.
    kwargs["block_spatial"] = (resolution // 16, resolution // 8, resolution // 4)
    return kwargs


def build(config, frozen: str = "load"):
    """(model, model_config, networks); `frozen` as in psp.build."""
    networks = family.networks(config, frozen)
    G = networks["G"]
    shape = family.input_shape(config)
    model_cfg = {
        "family": "e4e",
        "encoder_type": "Encoder4Editing",
        "encoder": encoder_kwargs(config, G, shape[0]),
        "input_nc": shape[-1],
        "input_size": shape[0],
        "decoder": networks["g_config"],
        "start_from_latent_avg": True,
    }
    model = e4e_models.E4E(e4e_models.Encoder4Editing(**model_cfg["encoder"]), G, True)
    return model, model_cfg, networks


def make_task(config, mesh=None, frozen: str = "load") -> loop.Task:
    """The engine task; `frozen` ("load", "random" or "abstract") says how to get the
    frozen networks (psp_family.networks); abstract ones give no evaluator."""
    mesh = loop.make_mesh(axes=config.sharding.mesh) if mesh is None else mesh
    abstract = frozen == "abstract"
    model, _, networks = build(config, frozen)
    G, nets = networks["G"], networks["nets"]
    steps = progressive_steps(config, G.num_ws)
    logging.info("e4e progressive steps: %s", steps)
    weights = family.loss_weights(config, "lpips" in nets, "arcface" in nets)
    tx = family.optimizer(config)
    D, d_tx = build_discriminator(config, G.w_dim)
    placed = networks["frozen"]
    if not abstract:
        placed = jax.device_put(placed, loop.replicated(mesh))
    input_shape = family.input_shape(config)

    def init_state(rng):
        k_enc, k_d = jax.random.split(rng)
        state = family.init_encoder_state(config, model, tx, input_shape, k_enc)
        return {**state, **init_discriminator(config, D, d_tx, G.w_dim, k_d)}

    eval_fn = functools.partial(family.eval_batch, model, nets)
    return loop.Task(
        init_state=init_state,
        train_step=functools.partial(train_step, config, model, D, tx, d_tx, weights, nets, steps),
        samples=None,
        global_batch_size=config.batch_size,
        parameters=parameter_groups,
        frozen=placed,
        prepare_state=functools.partial(family.init_encoder_from_arcface, config)
        if config.model.encoder_init
        else None,
        evaluate=None if abstract else family.Evaluator(config, eval_fn, placed, mesh),
        batch_spec=family.batch_spec(config),
    )


def parameter_groups(state) -> dict:
    groups = {"encoder": state["params"]}
    if "d_params" in state:
        groups["w_discriminator"] = state["d_params"]
    return groups


# ----------------------------------------------------------------------------- editing


def _examples(config, split: str, keys, limit: int):
    from stylejax.data import pipeline

    data_dir = config.data.directory or None
    return pipeline.split_batches(config.data.name, split, keys, limit=limit, data_dir=data_dir)


def boundary_distance(codes, boundary) -> np.ndarray:
    """Signed distances [N] of codes [N, ...] from a fitted stylegan2_editing.Boundary; for
    a boundary in W and W+ codes [N, num_ws, w_dim], the mean over the layers."""
    codes, direction = np.asarray(codes), boundary.direction
    per_layer = (codes * direction).reshape(len(codes), -1, direction.size).sum(-1)
    return per_layer.mean(1) + boundary.offset


def move_to_distance(codes, boundary, distance) -> np.ndarray:
    """The codes moved along the boundary's unit normal (on every layer, for a W boundary
    and W+ codes) to the given signed distances [N]."""
    step = np.asarray(distance) - boundary_distance(codes, boundary)
    return codes + step.reshape((-1,) + (1,) * (codes.ndim - 1)) * boundary.direction[None]


def decoder(trained):
    """(G, variables) of a psp_inference.PSPModel's generator."""
    v = trained.variables
    return trained.module.decoder, {
        "params": v["params"]["decoder"],
        "buffers": v["buffers"]["decoder"],
    }


def edit_consistency(config, model, folder, clf=None) -> dict[str, Any]:
    """The editing proof on the synthetic faces, whose `smile_flipped` render is the true
    edit. A direction for config.edit.attribute is found on config.edit.fit_examples codes
    with their labels (edit.direction "mean_difference": stylegan2_editing.mean_difference;
    "logistic": InterFaceGAN's separating normal, stylegan2_editing.fit_direction): with
    edit.fit_on "samples", the W codes of the generator's samples labelled by the attribute
    classifier (stylegan2_editing.classified_samples); with "encoded", the W+ codes of encoded training faces and
    their data set labels. Each encoded test face then moves along the unit direction to the
    signed distance ±edit.distance from the boundary, on the other class's side (InterFaceGAN
    edits by a fixed distance; the fitting codes' class means, reported, can lie much closer
    to the boundary than an edit of encoded faces needs). Reported: the attribute
    classifier's accuracy on the reconstructions (true labels) and on the edits (toggled labels), how far the edit moves
    its score (logit) towards the target class (mean, and the fraction of faces it moves that
    way), and for Smiling the PSNR against smile_flipped inside the mouth region (edit, and
    the reconstruction as the baseline) and outside it, and outside it against the
    reconstruction (what else the edit changed). `model`: a psp_inference.PSPModel. Writes
    folder/edit_<attribute>.png: rows input, reconstruction, edit, smile_flipped. The
    classifier `clf` is trained (or loaded from folder) with attribute_classifier's defaults
    unless given."""
    from stylejax import attribute_classifier, stylegan2_editing
    from stylejax import images as images_lib
    from stylejax import metrics as metrics_lib
    from stylejax.data import synthetic_faces

    e = config.edit
    attr = e.attribute
    if clf is None:
        settings = attribute_classifier.Settings(
            data=config.data.name,
            attributes=(attr,),
            img_size=model.input_size,
            seed=config.seed,
            data_dir=config.data.directory or None,
        )
        clf = attribute_classifier.load_or_train(settings, folder)
    if e.fit_on == "samples":
        codes, labels = stylegan2_editing.classified_samples(
            *decoder(model), clf, e.fit_examples, config.seed
        )
    elif e.fit_on == "encoded":
        train_codes, train_labels = [], []
        for batch in _examples(config, "train", ("image", "attributes"), e.fit_examples):
            train_codes.append(np.asarray(model.encode(batch["image"])))
            train_labels.append(batch["attributes"][attr])
        codes, labels = np.concatenate(train_codes), np.concatenate(train_labels).astype(bool)
    else:
        raise ValueError(f"edit.fit_on={e.fit_on!r}: expected 'samples' or 'encoded'")
    if e.direction == "mean_difference":
        boundary = stylegan2_editing.mean_difference(codes, labels)
    elif e.direction == "logistic":
        boundary = stylegan2_editing.fit_direction(codes, labels)
    else:
        raise ValueError(
            f"edit.direction={e.direction!r}: expected 'mean_difference' or 'logistic'"
        )
    distance = boundary_distance(codes, boundary)
    class_mean = np.array([distance[~labels].mean(), distance[labels].mean()])
    smiling = attr == "Smiling"
    keys = ("image", "attributes") + (("segmentation", "smile_flipped") if smiling else ())
    hits = {"reconstruction": 0, "edit": 0}
    shifts = []  # per face: the logit change, positive when towards the target class
    psnr, count, grid = metrics_lib.MaskedPSNR(), 0, None
    for batch in _examples(config, "test", keys, e.num_examples):
        x, label = batch["image"], batch["attributes"][attr].astype(bool)
        recon, test_codes = (np.asarray(v) for v in model.reconstruct(x))
        target = np.where(label, -e.distance, e.distance)
        edit = np.asarray(model.decode(move_to_distance(test_codes, boundary, target)))
        recon_score = np.asarray(clf.logits(recon))[:, 0]
        edit_score = np.asarray(clf.logits(edit))[:, 0]
        hits["reconstruction"] += int(np.sum((recon_score > 0) == label))
        hits["edit"] += int(np.sum((edit_score > 0) == ~label))
        shifts.append(np.where(label, -1.0, 1.0) * (edit_score - recon_score))
        count += len(x)
        rows = [x, recon, edit]
        if smiling:
            truth = batch["smile_flipped"]
            region = synthetic_faces.smile_region(batch["segmentation"], x, truth)
            psnr.add("psnr_mouth_edit", edit, truth, region)
            psnr.add("psnr_mouth_reconstruction", recon, truth, region)
            psnr.add("psnr_outside_mouth_edit", edit, truth, ~region)
            # What the edit changed besides the smile (issue 19's bar: >= 25 dB).
            psnr.add("psnr_outside_mouth_vs_reconstruction", edit, recon, ~region)
            rows.append(truth)
        if grid is None:
            grid = np.concatenate([r[:8] for r in rows])
            images_lib.save_grid(
                grid, Path(folder) / f"edit_{attr}.png", cols=len(rows[0][:8]), pad=1
            )
    shifts = np.concatenate(shifts)
    return {
        "attribute": attr,
        "fit_examples": len(codes),
        "boundary_train_accuracy": boundary.accuracy,
        "direction": boundary.direction,
        "test_examples": count,
        "classifier_test_accuracy": clf.test_accuracy[attr],
        "class_mean_distance": class_mean.tolist(),
        "classifier_accuracy_reconstruction": hits["reconstruction"] / max(count, 1),
        "classifier_accuracy_edit": hits["edit"] / max(count, 1),
        "score_shift_to_target": float(np.mean(shifts)),
        "fraction_moved_to_target": float(np.mean(shifts > 0)),
        **psnr.result(),
    }


def make_data(config):
    return family.make_data(config)


def evaluate(config, state, workdir) -> dict[str, float]:
    """pSp's test-split metrics (with the G(w_avg) baseline as "baseline/…") and, when
    config.edit.attribute names one, the editing proof as "edit/…" (single-process: a
    host-local measurement). With a renderer-taught generator on synthetic faces also the
    W+ distance of the codes to the true codes (psp_family.encoder_truth) and, for Smiling,
    edit/true_axis_cosine: the fitted direction against the true smile axis
    (ground_truth.true_smile_axis on the test faces)."""
    task = make_task(config)
    result = family.evaluate_encoder(task, state, workdir)
    truth = family.truth_applies(config)
    edit = config.edit.attribute and jax.process_count() == 1
    if truth or edit:
        trained = family.inference_model(build, config, task, state)
    if truth:
        result.update(family.encoder_truth(config, task, trained))
    if edit:
        proof = edit_consistency(config, trained, workdir)
        result.update({f"edit/{k}": v for k, v in proof.items() if isinstance(v, (int, float))})
        if truth and config.edit.attribute == "Smiling":
            result["edit/true_axis_cosine"] = true_axis_cosine(config, trained, proof["direction"])
    return result


def true_axis_cosine(config, trained, direction) -> float:
    """Cosine between a fitted W or W+ direction and the true smile axis in W of the test
    faces (ground_truth.true_smile_axis; for W+, the axis taken on every layer)."""
    from stylejax import ground_truth

    name = config.data.test_name or config.data.name
    data_dir = config.data.directory or None
    factors = ground_truth.test_factors(None, config.edit.num_examples, data_dir, name)
    G, g_vars = decoder(trained)
    return ground_truth.axis_cosine(direction, ground_truth.true_smile_axis(G, g_vars, factors))


def export(config, state, out_dir) -> dict:
    """The encoder with its generator, for psp_inference.load_psp."""
    _, model_cfg, networks = build(config)
    return family.export_encoder(out_dir, networks["frozen"], state, model_cfg, config)
