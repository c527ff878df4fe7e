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

The pieces ReStyle and e4e share with pSp (frozen networks, losses, Ranger, evaluator,
export) live in `stylejax.train.psp_family`.
"""

import functools
import json

import jax
import jax.numpy as jnp
import optax
from absl import logging

from stylejax.models import psp as psp_models
from stylejax.train import loop
from stylejax.train import psp_family as family

W_ENCODER = "BackboneEncoderUsingLastLayerIntoW"

# ----------------------------------------------------------------------------- the model


def encoder_config(config, G, resolution: int) -> tuple[str, dict]:
    """(encoder_type, constructor kwargs) for inputs of `resolution` pixels and G's styles."""
    m = config.model
    encoder_type = W_ENCODER if m.learn_in_w else m.encoder_type
    if m.learn_in_w and m.encoder_type not in (psp_models.ENCODER_TYPES[0], W_ENCODER):
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


def build(config, frozen: str = "load"):
    """(model, model_config, networks) for config, the frozen networks as `frozen` says
    (psp_family.networks)."""
    networks = family.networks(config, frozen)
    G = networks["G"]
    shape = family.input_shape(config)
    if G.img_resolution < shape[0]:
        raise ValueError(
            f"the generator makes {G.img_resolution} px images, smaller than the "
            f"{shape[0]} px targets of {config.data.name}"
        )
    g_config = json.loads(json.dumps(networks["g_config"]))
    model_cfg = model_config(config, G, g_config, shape[0])
    encoder = psp_models.build_encoder(model_cfg["encoder_type"], **model_cfg["encoder"])
    return psp_models.PSP(encoder, G, config.model.start_from_latent_avg), model_cfg, networks


# ----------------------------------------------------------------------------- the step


def train_step(config, model, tx, weights, nets, state, batch, frozen):
    x, y = batch["source"], batch["target"]
    rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), state["step"])
    k_noise, k_flip = jax.random.split(rng)
    if config.data.task == "frontalization":
        # pSp's frontalisation flips the target independently of the source.
        flip = jax.random.bernoulli(k_flip, 0.5, (y.shape[0], 1, 1, 1))
        y = jnp.where(flip, y[:, :, ::-1], y)

    def loss_fn(params):
        variables = family.encoder_variables(frozen, params, state["batch_stats"])
        (y_hat, codes), updated = model.apply(
            variables,
            x,
            train=True,
            noise_mode="random",
            return_latents=True,
            rngs={"noise": k_noise},
            mutable=["batch_stats"],
        )
        y_hat = family.pool_to(y_hat, y.shape[1])
        # pSp's w-norm measures the codes from w_avg when the encoder starts there.
        origin = frozen["latent_avg"] * config.model.start_from_latent_avg
        total, terms = family.reconstruction_losses(
            weights, nets, frozen, y_hat, y, codes, origin, batch.get("weight")
        )
        return total, (terms, updated.get("batch_stats", {}).get("encoder", {}))

    (total, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"]
    )
    opt_params = family.optimizer_params(config, state)
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


# ----------------------------------------------------------------------------- the contract


def make_task(config, mesh=None, frozen: str = "load") -> loop.Task:
    """The engine task; `frozen` ("load", "random" or "abstract") says how to get the
    frozen networks (psp_family.networks); abstract ones give no evaluator."""
    mesh = loop.make_mesh(axes=config.sharding.mesh) if mesh is None else mesh
    abstract = frozen == "abstract"
    model, model_cfg, networks = build(config, frozen)
    nets = networks["nets"]
    weights = family.loss_weights(config, "lpips" in nets, "arcface" in nets)
    logging.info("pSp %s loss weights: %s", model_cfg["encoder_type"], weights)
    tx = family.optimizer(config)
    placed = networks["frozen"]
    if not abstract:  # placed once, for training and evaluation
        placed = jax.device_put(placed, loop.replicated(mesh))
    eval_fn = functools.partial(family.eval_batch, model, nets)
    return loop.Task(
        init_state=functools.partial(
            family.init_encoder_state, config, model, tx, family.input_shape(config)
        ),
        train_step=functools.partial(train_step, config, model, tx, weights, nets),
        samples=None,
        global_batch_size=config.batch_size,
        parameters=lambda s: {"encoder": s["params"]},
        frozen=placed,
        prepare_state=functools.partial(family.init_encoder_from_arcface, config)
        if config.model.encoder_init
        else None,
        evaluate=None if abstract else family.Evaluator(config, eval_fn, placed, mesh),
        batch_spec=family.batch_spec(config),
    )


def make_data(config):
    return family.make_data(config)


def evaluate(config, state, workdir) -> dict[str, float]:
    """Test-split metrics of G(E(x)), and of G(w_avg) as the baseline ("baseline/…"); the
    input | output | target grid in workdir/eval/test.png. With a renderer-taught generator
    on synthetic faces also the W+ distance of the codes to the true codes
    (psp_family.encoder_truth: true_w_distance, baseline/true_w_distance, true_code/…)."""
    task = make_task(config)
    result = family.evaluate_encoder(task, state, workdir)
    if family.truth_applies(config):
        trained = family.inference_model(build, config, task, state)
        result.update(family.encoder_truth(config, task, trained))
    return result


def export(config, state, out_dir) -> dict:
    """The encoder with its generator, for psp_inference.load_psp."""
    model, model_cfg, networks = build(config)
    return family.export_encoder(out_dir, networks["frozen"], state, model_cfg, config)
