"""ReStyle training (Alaluf et al. 2021) on the shared engine, built on pSp's training.

Per batch, starting from w_0 = latent_avg and y_0 = G(latent_avg) (constant noise, as the
public coach's average image), `n_iters_per_batch` refinement iterations run, each with its
own forward pass, loss and backward pass; codes and images are detached between iterations.
As in the public coach the gradients of the N losses are summed into one optimiser update
per batch; `restyle.update_each_iteration` instead applies an update after every iteration.
The whole batch is one jitted step; the iterations run unrolled or under `lax.scan`
(`restyle.scan`; 4x slower per step on a CPU at the default size).

The pSp pieces (frozen generator, losses, Ranger, data) come from `stylejax.train.psp_family`; with
the `ProgressiveBackboneEncoder` (ReStyle-e4e) the e4e pieces (progressive stages, delta
regularisation, latent discriminator with R1) come from `stylejax.train.e4e`; the
discriminator sees the step-0 codes, as the public ReStyle-e4e coach.

Evaluation reports every step's MSE / PSNR (/ LPIPS / ID) on the test split, step 0 being
the G(latent_avg) baseline, and writes an input | step 1 … N | target grid.
"""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stylejax import images as images_lib
from stylejax import metrics as metrics_lib
from stylejax import model_format
from stylejax.models import restyle
from stylejax.train import e4e as e4e_train
from stylejax.train import loop
from stylejax.train import psp as psp_train
from stylejax.train import psp_family as family


def encoder_kwargs(config, G, resolution: int) -> dict:
    _, kwargs = psp_train.encoder_config(config, G, resolution)
    if config.model.encoder_type != "GradualStyleEncoder":
        kwargs["block_spatial"] = resolution // 16  # every style from the last map
    return kwargs


# ----------------------------------------------------------------------------- the step


def train_step(config, model, D, tx, d_tx, weights, nets, steps, state, batch, frozen):
    x, y = batch["source"], batch["target"]
    r = config.restyle
    n_iters = r.n_iters_per_batch
    rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), state["step"])
    k_noise, k_real, k_d = jax.random.split(rng, 3)
    progressive = model.progressive and steps is not None
    stage = e4e_train.stage_at(steps, state["step"]) if model.progressive else None
    metrics = {}
    if stage is not None:
        metrics["stage"] = stage.astype(jnp.float32)

    variables = family.encoder_variables(frozen, state["params"], state["batch_stats"])
    codes, images = model.apply(variables, x, method=restyle.ReStyle.start)
    if D is not None:  # the public ReStyle-e4e coach: D first, on the step-0 codes
        (fake, _, _), _ = model.apply(
            variables,
            x,
            codes,
            images,
            stage=stage,
            train=True,
            mutable=["batch_stats"],
            method=restyle.ReStyle.step,
        )
        real = e4e_train.real_codes(model, frozen, k_real, x.shape[0])
        state, d_metrics = e4e_train.discriminator_step(
            config, D, d_tx, state, real, fake, stage, k_d
        )
        metrics.update(d_metrics)

    def iteration(carry, t):
        state, codes, images, grad_sum = carry

        def loss_fn(params):
            variables = family.encoder_variables(frozen, params, state["batch_stats"])
            (new_codes, new_images, _), updated = model.apply(
                variables,
                x,
                codes,
                images,
                stage=stage,
                train=True,
                noise_mode="random",
                rngs={"noise": jax.random.fold_in(k_noise, t)},
                mutable=["batch_stats"],
                method=restyle.ReStyle.step,
            )
            y_hat = family.pool_to(new_images, y.shape[1])
            total, terms = family.reconstruction_losses(
                weights,
                nets,
                frozen,
                y_hat,
                y,
                new_codes,
                frozen["latent_avg"],
                batch.get("weight"),
            )
            extra, extra_total = e4e_train.encoder_terms(
                config, D, state.get("d_params"), new_codes, stage, progressive
            )
            psnr = jnp.mean(metrics_lib.psnr(jnp.clip(y_hat, -1, 1), y))
            aux = ({**terms, **extra, "psnr": psnr}, new_codes, new_images)
            return total + extra_total, (aux, updated["batch_stats"]["encoder"])

        (total, ((terms, codes, images), batch_stats)), grads = jax.value_and_grad(
            loss_fn, has_aux=True
        )(state["params"])
        state = dict(state, batch_stats=batch_stats)
        if r.update_each_iteration:
            state = family.apply_gradients(config, tx, state, grads)
        else:
            grad_sum = jax.tree_util.tree_map(jnp.add, grad_sum, grads)
        carry = (state, jax.lax.stop_gradient(codes), jax.lax.stop_gradient(images), grad_sum)
        return carry, {"loss": total, **terms, "grad_norm": optax.tree.norm(grads)}

    grad_sum = jax.tree_util.tree_map(jnp.zeros_like, state["params"])
    carry = (state, codes, images, grad_sum)
    if r.scan:
        carry, per_iter = jax.lax.scan(iteration, carry, jnp.arange(n_iters))
    else:
        outputs = []
        for t in range(n_iters):
            carry, out = iteration(carry, t)
            outputs.append(out)
        per_iter = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *outputs)
    state, _, _, grad_sum = carry
    if not r.update_each_iteration:
        state = family.apply_gradients(config, tx, state, grad_sum)
    state["step"] = state["step"] + 1
    for name, values in per_iter.items():
        for t in range(n_iters):
            metrics[f"iter{t + 1}/{name}"] = values[t]
    metrics["loss"] = jnp.sum(per_iter["loss"])
    metrics["param_norm"] = optax.tree.norm(state["params"])
    return state, metrics


# ----------------------------------------------------------------------------- evaluation


def eval_batch(config, model, nets, state, frozen, batch, baseline: bool = False):
    """Per-step sums over the batch of the test metrics (step 0: G(latent_avg), the
    baseline, always reported) and every step's images [T + 1, N, H, W, 3]."""
    del baseline  # step 0 is the baseline
    x, y = batch["source"], batch["target"]
    variables = family.encoder_variables(frozen, state["params"], state["batch_stats"])
    _codes, start = model.apply(variables, x, method=restyle.ReStyle.start)
    y_hats, _ = restyle.run_iterations(model, variables, x, config.restyle.n_iters_eval, stage=None)
    y_hats = jnp.concatenate([start[None], y_hats])
    sums = {}
    for t in range(y_hats.shape[0]):
        y_hat = jnp.clip(family.pool_to(y_hats[t], y.shape[1]), -1, 1)
        sums[f"step{t}/mse"] = jnp.sum(jnp.mean(jnp.square(y_hat - y), axis=(1, 2, 3)))
        sums[f"step{t}/psnr"] = jnp.sum(metrics_lib.psnr(y_hat, y))
        if "lpips" in frozen:
            sums[f"step{t}/lpips"] = jnp.sum(nets["lpips"].apply(frozen["lpips"], y_hat, y))
        if "arcface" in frozen:
            sim = metrics_lib.identity_similarity(nets["arcface"], frozen["arcface"], y_hat, y)
            sums[f"step{t}/id_similarity"] = jnp.sum(sim)
    return sums, y_hats


class Evaluator(family.Evaluator):
    """pSp's test-split evaluator with every ReStyle step reported and shown."""

    def _grid(self, batch, y_hats):
        """Rows: input, step 1 … N, target; one column per example."""
        k = self.config.eval.grid_examples
        y_hats = np.asarray(jax.device_get(y_hats))[1:, :k]
        size = np.asarray(batch["target"]).shape[1]
        steps = [np.asarray(family.pool_to(jnp.asarray(s), size)) for s in y_hats]
        source = family.source_for_display(
            np.asarray(jax.device_get(batch["source"]))[:k], self.config.data.task
        )
        rows = [source, *steps, np.asarray(jax.device_get(batch["target"]))[:k]]
        return images_lib.make_grid(np.concatenate(rows), cols=len(rows[0]), pad=1)


# ----------------------------------------------------------------------------- the task


def init_encoder_from_arcface(config, state):
    """The pSp initialisation for a 6-channel input, as the public ReStyle code does: trunk
    and input layer from ArcFace, the input conv's RGB weights copied into channels 0–2 and
    channels 3–5 (the reconstruction) drawn from N(0, 1)."""
    six = config.copy_and_resolve_references()
    with six.unlocked():
        six.model.input_nc = 6  # pSp's init then leaves the input layer alone
    state = family.init_encoder_from_arcface(six, state)
    _, arc = model_format.load_kind(config.model.encoder_init, "arcface", "(model.encoder_init)")
    layer = state["params"]["input_layer"]
    rgb = np.asarray(arc["params"]["input_layer"]["conv"]["kernel"])
    kernel = np.asarray(
        jax.random.normal(jax.random.PRNGKey(config.seed), layer["conv"]["kernel"].shape)
    )
    if rgb.shape[:2] + rgb.shape[3:] != kernel.shape[:2] + kernel.shape[3:]:
        raise ValueError(
            f"{config.model.encoder_init}: ArcFace input conv {rgb.shape} does not fit the "
            f"encoder's {kernel.shape} (model.base_width={config.model.base_width})"
        )
    kernel[:, :, : rgb.shape[2]] = rgb
    new_layer = {
        **arc["params"]["input_layer"],
        "conv": {"kernel": kernel},
    }
    put = lambda old, value: jax.device_put(jnp.asarray(value, old.dtype), old.sharding)
    params = dict(state["params"], input_layer=jax.tree_util.tree_map(put, layer, new_layer))
    stats = dict(state["batch_stats"])
    stats["input_layer"] = jax.tree_util.tree_map(
        put, stats["input_layer"], arc["batch_stats"]["input_layer"]
    )
    state = dict(state, params=params, batch_stats=stats)
    if config.optimizer.name == "ranger":
        state["slow"] = jax.tree_util.tree_map(jnp.copy, params)
    return state


def build(config, frozen: str = "load"):
    """(model, model_config, networks); `frozen` as in psp.build."""
    networks = family.networks(config, frozen)
    G = networks["G"]
    shape = family.input_shape(config)
    encoder_type = config.model.encoder_type
    model_cfg = {
        "family": "restyle",
        "encoder_type": encoder_type,
        "encoder": encoder_kwargs(config, G, shape[0]),
        "input_nc": shape[2] + 3,  # image + reconstruction
        "decoder": networks["g_config"],
        "n_iters": config.restyle.n_iters_eval,
    }
    model = restyle.ReStyle(restyle.build_encoder(encoder_type, **model_cfg["encoder"]), G)
    return model, model_cfg, networks


def make_task(config, mesh=None, frozen: str = "load") -> loop.Task:
    """The engine task; `frozen` ("load", "random" or "abstract") says how to get the
    frozen networks (psp_family.networks); abstract ones give no evaluator."""
    mesh = loop.make_mesh(axes=config.sharding.mesh) if mesh is None else mesh
    abstract = frozen == "abstract"
    model, model_cfg, networks = build(config, frozen)
    G, nets = networks["G"], networks["nets"]
    encoder_shape = (*family.input_shape(config)[:2], model_cfg["input_nc"])
    steps = e4e_train.progressive_steps(config, G.num_ws) if model.progressive else None
    weights = family.loss_weights(config, "lpips" in nets, "arcface" in nets)
    tx = family.optimizer(config)
    use_d = model.progressive and config.e4e.w_discriminator_lambda > 0
    D, d_tx = e4e_train.build_discriminator(config, G.w_dim) if use_d else (None, None)
    placed = networks["frozen"]
    if not abstract:
        placed = jax.device_put(placed, loop.replicated(mesh))

    def init_state(rng):
        k_enc, k_d = jax.random.split(rng)
        state = family.init_encoder_state(config, model, tx, encoder_shape, k_enc)
        if use_d:
            state.update(e4e_train.init_discriminator(config, D, d_tx, G.w_dim, k_d))
        return state

    logging.info(
        "ReStyle %s: %d iterations per batch (%s, %s), progressive steps %s",
        model_cfg["encoder_type"],
        config.restyle.n_iters_per_batch,
        "lax.scan" if config.restyle.scan else "unrolled",
        "update per iteration" if config.restyle.update_each_iteration else "summed gradients",
        steps,
    )
    eval_fn = functools.partial(eval_batch, config, model, nets)
    return loop.Task(
        init_state=init_state,
        train_step=functools.partial(train_step, config, model, D, tx, d_tx, weights, nets, steps),
        samples=None,
        global_batch_size=config.batch_size,
        parameters=e4e_train.parameter_groups,
        frozen=placed,
        prepare_state=functools.partial(init_encoder_from_arcface, config)
        if config.model.encoder_init
        else None,
        evaluate=None if abstract else Evaluator(config, eval_fn, placed, mesh),
        batch_spec=family.batch_spec(config),
    )


def make_data(config):
    return family.make_data(config)


def evaluate(config, state, workdir) -> dict[str, float]:
    """Every refinement step's test-split metrics ("step0/…" is the G(latent_avg) baseline),
    the input | step 1 … N | target grid in workdir/eval/test.png; logged as a table. With a
    renderer-taught generator on synthetic faces also every step's W+ distance to the true
    codes (stepT/true_w_distance, truth_scores)."""
    task = make_task(config)
    result, grid = task.evaluate(state)
    if jax.process_index() == 0:
        images_lib.save_image(grid, Path(workdir) / "eval" / "test.png")
    result.update(truth_scores(config, task, state))
    logging.info("ReStyle test split, per step:\n%s", format_steps(result))
    return result


def truth_scores(config, task, state) -> dict[str, float]:
    """psp_family.inversion_truth for every refinement step: stepT/true_w_distance (T ≥ 1;
    step0 is latent_avg, where every step starts) and true_code/psnr, true_code/ssim; {}
    unless psp_family.truth_applies."""
    if not family.truth_applies(config):
        return {}
    model, _, _ = build(config, frozen="abstract")  # the weights: task.frozen
    variables = family.encoder_variables(task.frozen, state["params"], state["batch_stats"])
    variables = jax.device_get(variables)
    n = config.restyle.n_iters_eval
    run = jax.jit(lambda v, x: restyle.run_iterations(model, v, x, n)[1])

    def encode(x):
        codes = np.asarray(run(variables, jnp.asarray(x, jnp.float32)))
        return {f"step{t + 1}/": codes[t] for t in range(n)}

    return family.inversion_truth(config, task, model.decoder, encode, baseline="step0/")


def export(config, state, out_dir) -> dict:
    """The encoder with its generator, for psp_inference.load_psp."""
    _, model_cfg, networks = build(config)
    return family.export_encoder(out_dir, networks["frozen"], state, model_cfg, config)


def format_steps(test: dict) -> str:
    """'step0/psnr'-style metrics as a table: one row per step."""
    steps = sorted({int(k.split("/")[0][4:]) for k in test if k.startswith("step")})
    names = sorted({k.split("/")[1] for k in test if k.startswith("step")})
    lines = ["step" + "".join(f"{n:>14}" for n in names)]
    for t in steps:
        lines.append(f"{t:>4}" + "".join(f"{test[f'step{t}/{n}']:>14.4f}" for n in names))
    return "\n".join(lines)
