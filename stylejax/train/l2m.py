"""L2M-GAN training on the shared engine: the first complete open trainer (the official
repository only evaluates). It follows the paper and StarGAN v2; docs/l2m.md lists where a
choice was ours.

One adversarial step (one jitted function):
- targets: y_trg is a random domain on even steps (latent-guided) and a batch-mate's domain
  on odd steps (reference-guided: the batch-mate is the reference image), as StarGAN v2
  alternates its two paths;
- styles: s = E(x, y_src); s1 = decomposer(s) (attribute-irrelevant), s2 = s − s1;
  s3 = transformer[y_trg](s2). The L2M edit is s1 + s3 (α = 1). The guided edits are
  s1 + a(t), where a(t) = t − decomposer(t) is the attribute part of a guide style t: the
  mapping network's M(z, y_trg) or the reference's E(x_ref, y_ref); two guides per image
  (z1/z2, or two references of the same domain) feed the diversity-sensitive loss;
- D: non-saturating loss, real x (its own domain) against both fakes (half weight each),
  plus λ_reg · R1 on reals, every step, and (ours) λ_dom · every other domain's head
  calling the real image fake;
- G, E, M (one update): adversarial on both fakes, λ_sty · style reconstruction
  ‖E(fake, y_trg) − s_edit‖₁ for both, − λ_ds · ‖G(x, s1 + a(t1)) − G(x, s1 + a(t2))‖₁ (λ_ds
  decays linearly to 0 over ds_iter steps), λ_cyc · ‖G(G(x, s1 + s3), s) − x‖₁,
  λ_rec · ‖G(x, s) − x‖₁ (the α = 0 edit; ours, 0 in the paper setting), λ_ort ·
  orthogonality of s1 against s2 and s3 (|cos|, models/l2m.py) and, ours: λ_keep ·
  ‖fake − x‖₁ for both fakes, λ_dom · every other domain's head calling the fakes fake;
- Adam (β = 0, 0.99) with torch-style L2 weight decay, the mapping network at f_lr;
  exponential moving averages of G, E and M.
Ours: the first train.warmup_steps steps are warmup_step (G/E as an autoencoder, D as a
domain classifier), compiled apart by the engine.
"""

import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stylejax import attribute_classifier, images, metrics
from stylejax.data import labels, synthetic_faces
from stylejax.models import l2m, stargan_v2
from stylejax.train import gan, loop

NETS = ("generator", "style_encoder", "mapping")


# ----------------------------------------------------------------------------- models


def num_domains(config) -> int:
    return 2 ** len(config.data.attributes)


def model_kwargs(config) -> dict[str, Any]:
    """L2MGAN constructor arguments (JSON-friendly: also the exported model config)."""
    m = config.model
    return {
        "img_size": m.img_size,
        "style_dim": m.style_dim,
        "num_domains": num_domains(config),
        "max_conv_dim": m.max_conv_dim,
        "w_hpf": float(m.w_hpf),
        "dim_in": m.dim_in,
        "latent_dim": m.latent_dim,
        "mapping_hidden_dim": m.hidden_dim,
    }


def build_models(config):
    """(L2MGAN for G, E and M, discriminator)."""
    m = config.model
    if m.w_hpf > 0:
        raise ValueError(
            "config.model.w_hpf > 0 needs FAN weights (wing.ckpt) for the masks; training "
            "with the high-pass path is not supported yet: use w_hpf = 0"
        )
    model = l2m.L2MGAN(**model_kwargs(config))
    d_dim_in = m.dim_in if m.d_dim_in is None else m.d_dim_in
    if m.d_local_box:
        top, left, size = m.d_local_box
        if not (
            size >= 8
            and size & (size - 1) == 0
            and top >= 0
            and left >= 0
            and max(top, left) + size <= m.img_size
        ):
            raise ValueError(
                f"config.model.d_local_box {tuple(m.d_local_box)} must be (top, left, size) "
                f"with size a power of two ≥ 8, inside the {m.img_size} px image"
            )
        D = stargan_v2.GlobalLocalDiscriminator(
            m.img_size,
            num_domains(config),
            m.max_conv_dim,
            d_dim_in,
            tuple(m.d_local_box),
            m.d_local_dim_in,
        )
    else:
        D = stargan_v2.Discriminator(m.img_size, num_domains(config), m.max_conv_dim, d_dim_in)
    return model, D


def _example_inputs(config, batch: int = 1):
    x = jnp.zeros((batch, config.model.img_size, config.model.img_size, 3))
    y = jnp.zeros((batch,), jnp.int32)
    z = jnp.zeros((batch, config.model.latent_dim))
    return x, y, z


def _init_all(model, x, y, z):
    """Touches every network of the L2MGAN so that init creates all parameters."""
    s = model.latent_style(z, y)
    return model(x, y, y) + model.generate(x, s).sum() * 0


def optimizers(config):
    """Adam with torch-style L2 weight decay (added to the gradient); f_lr for M."""
    t = config.train

    def adam(lr):
        return optax.chain(
            optax.add_decayed_weights(t.weight_decay),
            optax.scale_by_adam(b1=t.betas[0], b2=t.betas[1], eps=t.adam_eps),
            optax.scale(-lr),
        )

    labels = {"generator": "g", "style_encoder": "g", "mapping": "f"}
    g_tx = optax.multi_transform({"g": adam(t.lr), "f": adam(t.f_lr)}, labels)
    return g_tx, adam(t.lr)


def init_state(config, model, D, g_tx, d_tx, rng) -> dict[str, Any]:
    k_g, k_d = jax.random.split(rng)
    x, y, z = _example_inputs(config)
    params = stargan_v2.he_init(model, k_g, x, y, z, method=_init_all)["params"]
    d_params = stargan_v2.he_init(D, k_d, x, y)["params"]
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "ema": jax.tree_util.tree_map(jnp.copy, params),
        "d": d_params,
        "g_opt": g_tx.init(params),
        "d_opt": d_tx.init(d_params),
    }


# ----------------------------------------------------------------------------- losses


def orthogonality_loss(s1, s2, s3):
    """Mean |cos| between the attribute-irrelevant part and the attribute part, before and
    after the transformation."""
    return jnp.mean(l2m.orthogonality(s1, s2)) + jnp.mean(l2m.orthogonality(s1, s3))


def pick_domain(logits, y):
    """[N]: each image's logit of domain y from D's per-domain logits [N, domains]."""
    return jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]


def wrong_domain_loss(logits, y):
    """Mean softplus of every head but y's: those heads calling the images fake."""
    wrong = 1.0 - jax.nn.one_hot(y, logits.shape[1])
    return jnp.sum(wrong * jax.nn.softplus(logits)) / jnp.sum(wrong)


def ds_weight(config, step):
    t = config.train
    if t.ds_iter <= 0:
        return jnp.asarray(t.lambda_ds, jnp.float32)
    return t.lambda_ds * jnp.maximum(0.0, 1.0 - step.astype(jnp.float32) / t.ds_iter)


def sample_targets(config, rng, y):
    """Per image: the target domain, two guide indices and whether the guides are reference
    images (the second half of the batch) or mapped latents (the first half).

    Reference guides are batch-mates: the first, and a second one of the same domain (another
    image when the batch has one) for the diversity term; the target is their domain.
    Latent-guided images get a random target domain."""
    n = y.shape[0]
    k_dom, k_perm, k_ref2 = jax.random.split(rng, 3)
    perm = jax.random.permutation(k_perm, n)
    y_ref = y[perm]
    same = (y[None, :] == y_ref[:, None]) & (jnp.arange(n)[None, :] != perm[:, None])
    scores = jnp.where(same, jax.random.uniform(k_ref2, (n, n)), -1.0)
    perm2 = jnp.where(jnp.any(same, axis=1), jnp.argmax(scores, axis=1), perm)
    is_ref = jnp.arange(n) >= n // 2
    y_rand = jax.random.randint(k_dom, (n,), 0, num_domains(config))
    return jnp.where(is_ref, y_ref, y_rand), perm, perm2, is_ref


def step_styles(model, params, x, y, y_trg, perm, perm2, is_ref, z1, z2):
    """The step's styles: s, its parts, the L2M edit s1 + s3 and the guided edits s1 + a(t)
    for two guides t per image. One encoder pass covers the images and both references."""

    def run(m):
        n = x.shape[0]
        codes = m.style_encoder.style(
            jnp.concatenate([x, x[perm], x[perm2]]), jnp.concatenate([y, y_trg, y_trg])
        )
        s, ref1, ref2 = jnp.split(codes, 3)
        mapped = m.latent_style(jnp.concatenate([z1, z2]), jnp.concatenate([y_trg, y_trg]))
        lat1, lat2 = jnp.split(mapped, 2)
        t1 = jnp.where(is_ref[:, None], ref1, lat1)
        t2 = jnp.where(is_ref[:, None], ref2, lat2)
        s1, s2 = m.style_encoder.decompose(s)
        s3 = m.style_encoder.transform(s2, y_trg)
        a = m.style_encoder.decompose(jnp.concatenate([t1, t2]))[1]
        return {
            "s": s,
            "s1": s1,
            "s2": s2,
            "s3": s3,
            "edit": s1 + s3,
            "guided": s1 + a[:n],
            "guided2": s1 + a[n:],
        }

    return model.apply({"params": params}, method=run)


def apply_updates(config, g_tx, d_tx, state, g_grads, d_grads, metrics, *, idle_stay=False):
    """(new state, metrics with the gradient norms) after one optimiser step of each side.
    idle_stay: G-side parameters with an all-zero gradient keep their values (weight decay
    alone would otherwise move them by ~lr per step: Adam normalises its size away)."""
    g_updates, g_opt = g_tx.update(g_grads, state["g_opt"], state["params"])
    if idle_stay:
        g_updates = jax.tree_util.tree_map(
            lambda u, g: jnp.where(jnp.any(g != 0), u, 0.0), g_updates, g_grads
        )
    params = optax.apply_updates(state["params"], g_updates)
    d_updates, d_opt = d_tx.update(d_grads, state["d_opt"], state["d"])
    metrics = {**metrics, "g_grad_norm": optax.tree.norm(g_grads)}
    metrics["d_grad_norm"] = optax.tree.norm(d_grads)
    new_state = {
        "step": state["step"] + 1,
        "params": params,
        "ema": gan.ema_update(state["ema"], params, config.train.ema_beta),
        "d": optax.apply_updates(state["d"], d_updates),
        "g_opt": g_opt,
        "d_opt": d_opt,
    }
    return new_state, metrics


def reconstruction_loss(out, x, batch):
    """‖out − x‖₁, with the facial features weighed by the batch's "rec_weight"
    (train.part_weight) when it has one: a weighted mean, on the plain L1's scale."""
    if "rec_weight" not in batch:
        return jnp.mean(jnp.abs(out - x))
    w = batch["rec_weight"]
    return jnp.mean(w * jnp.abs(out - x)) / jnp.mean(w)


def warmup_step(config, model, D, g_tx, d_tx, state, batch):
    """Ours, a curriculum: G and E learn to reconstruct (G(x, E(x, y)) ≈ x, the α = 0 edit)
    and D learns the domains as a classifier of real images (each image's own head says
    real, every other head fake), with no adversarial game yet. A step costs a fraction of
    an adversarial one, and the game then starts from a G that keeps the input and a D that
    already sees the attribute (a smile is a few dozen pixels of a 64 px face: D's
    domain logits stayed at chance for thousands of adversarial steps)."""
    x, y = batch["image"], batch["domain"].astype(jnp.int32)

    def g_loss_fn(p):
        def reconstruct(m):
            return m.generate(x, m.style_encoder.style(x, y))

        rec = reconstruction_loss(model.apply({"params": p}, method=reconstruct), x, batch)
        return rec, {"rec": rec}

    def d_loss_fn(dp):
        logits = D.apply({"params": dp}, x)
        real = gan.logistic_loss(pick_domain(logits, y), True)
        dom = wrong_domain_loss(logits, y)
        return real + dom, {"d_real": real, "d_wrong_domain": dom}

    (g_loss, g_terms), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state["params"])
    (d_loss, d_terms), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state["d"])
    metrics = {"g_loss": g_loss, "d_loss": d_loss, **g_terms, **d_terms}
    return apply_updates(config, g_tx, d_tx, state, g_grads, d_grads, metrics, idle_stay=True)


def train_step(config, model, D, g_tx, d_tx, state, batch):
    """The adversarial step: G, E, M and D update simultaneously from one generator pass
    (the fakes the G loss makes, judged by the current D, are the fakes D learns to
    reject)."""
    t = config.train
    x, y = batch["image"], batch["domain"].astype(jnp.int32)
    n = x.shape[0]
    step = state["step"]
    rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), step)
    k_trg, k_z1, k_z2 = jax.random.split(rng, 3)
    y_trg, perm, perm2, is_ref = sample_targets(config, k_trg, y)
    z_shape = (n, config.model.latent_dim)
    z1 = loop.split_over_devices(jax.random.normal(k_z1, z_shape))
    z2 = loop.split_over_devices(jax.random.normal(k_z2, z_shape))
    lambda_ds = ds_weight(config, step)
    d_params = state["d"]

    def generate(p, images, s):
        return model.apply({"params": p}, images, s, method=model.generate)

    def g_loss_fn(p):
        st = step_styles(model, p, x, y, y_trg, perm, perm2, is_ref, z1, z2)
        styles = jnp.concatenate([st["edit"], st["guided"], st["guided2"], st["s"]])
        out = generate(p, jnp.concatenate([x, x, x, x]), styles)
        edit, guided, guided2, own = jnp.split(out, 4)
        fakes = jnp.concatenate([edit, guided])
        fake_labels = jnp.concatenate([y_trg, y_trg])
        fake_logits = D.apply({"params": d_params}, fakes)  # every domain's head
        adv = gan.logistic_loss(pick_domain(fake_logits, fake_labels), True)
        predicted = model.apply(
            {"params": p},
            fakes,
            fake_labels,
            method=lambda m, v, labels: m.style_encoder.style(v, labels),
        )
        sty = jnp.mean(jnp.abs(predicted - jnp.concatenate([st["edit"], st["guided"]])))
        ds = jnp.mean(jnp.abs(guided - guided2))
        cyc = jnp.mean(jnp.abs(generate(p, edit, st["s"]) - x))
        rec = reconstruction_loss(own, x, batch)
        # Ours: an L1 pull of both edits to the input, so the cheapest way for an edit to
        # read as its target domain is to change only where the attribute lives.
        keep = jnp.abs(fakes - jnp.concatenate([x, x]))
        if "keep_weight" in batch:  # not where the edited attribute lives
            keep = keep * jnp.concatenate([batch["keep_weight"]] * 2)
        keep = jnp.mean(keep)
        ort = orthogonality_loss(st["s1"], st["s2"], st["s3"])
        loss = adv + t.lambda_sty * sty - lambda_ds * ds + t.lambda_cyc * cyc
        loss += t.lambda_rec * rec + t.lambda_ort * ort + t.lambda_keep * keep
        terms = {"g_adv": adv, "sty": sty, "ds": ds, "cyc": cyc, "rec": rec, "ort": ort}
        terms["keep"] = keep
        if t.lambda_dom:
            # Ours: the edit must also read as fake to every other domain's head, which
            # D trains on real images of those domains (d_loss_fn).
            terms["g_wrong_domain"] = wrong_domain_loss(fake_logits, fake_labels)
            loss += t.lambda_dom * terms["g_wrong_domain"]
        return loss, (terms, jax.lax.stop_gradient(fakes), fake_labels)

    (g_loss, (g_terms, fakes, fake_labels)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        state["params"]
    )

    def d_loss_fn(dp):
        all_logits = D.apply({"params": dp}, jnp.concatenate([x, fakes]))
        labels = jnp.concatenate([y, fake_labels])
        logits = pick_domain(all_logits, labels)
        real = gan.logistic_loss(logits[:n], True)
        fake = gan.logistic_loss(logits[n:], False)
        # StarGAN v2's R1: 0.5 · mean over the samples of ‖∇_x D(x, y)‖².
        r1 = 0.5 * jnp.mean(gan.r1_penalty(lambda v: D.apply({"params": dp}, v, y), x))
        loss = real + fake + t.lambda_reg * r1
        terms = {"d_real": real, "d_fake": fake, "r1": r1}
        if t.lambda_dom:
            # Ours: a real image is fake for every other domain's head, so that D learns the
            # domains from the first step instead of waiting for G's edits to differ.
            dom = wrong_domain_loss(all_logits[:n], y)
            loss = loss + t.lambda_dom * dom
            terms["d_wrong_domain"] = dom
        return loss, terms

    (d_loss, d_terms), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
    metrics = {"d_loss": d_loss, "g_loss": g_loss, "lambda_ds": lambda_ds, **d_terms, **g_terms}
    return apply_updates(config, g_tx, d_tx, state, g_grads, d_grads, metrics)


# ----------------------------------------------------------------------------- editing


def sweep_alphas(config) -> tuple[float, ...]:
    return tuple(float(a) for a in config.eval.alphas)


def flip_first_attribute(y):
    """The editing target: the first attribute toggled, the others kept."""
    return jnp.bitwise_xor(y, 1)


def strips(model, variables, x, y, alphas):
    """[N·(1+len(alphas)), H, W, 3]: per image, the input then its edits at each α."""
    edits = model.apply(variables, x, y, flip_first_attribute(y), alphas, method=model.sweep)
    rows = jnp.concatenate([x[:, None], edits], axis=1)
    return rows.reshape(-1, *x.shape[1:])


def make_task(config, mesh=None, frozen: str = "load") -> loop.Task:
    """The engine's task; the sample strips edit the first config.num_samples images of
    config.eval.split, read on first use (make_task reads no data)."""
    del mesh, frozen  # no frozen networks; the engine shards the state
    model, D = build_models(config)
    g_tx, d_tx = optimizers(config)
    alphas = sweep_alphas(config)
    size = config.model.img_size
    batch_spec = {
        "image": jax.ShapeDtypeStruct((config.batch_size, size, size, 3), jnp.float32),
        "domain": jax.ShapeDtypeStruct((config.batch_size,), jnp.int32),
    }
    for key in pixel_weight_keys(config):
        batch_spec[key] = jax.ShapeDtypeStruct((config.batch_size, size, size, 1), jnp.float32)
    samples = None
    if config.num_samples:

        @functools.cache
        def sample_batch():
            data, _ = make_data(config, config.eval.split, seed=None, repeat=False, flip=False)
            first = next(data)
            return {k: v[: config.num_samples] for k, v in first.items()}

        @jax.jit
        def sample_strips(ema, x, y):
            return strips(model, {"params": ema}, x, y, alphas)

        def samples(state):
            return sample_strips(state["ema"], sample_batch()["image"], sample_batch()["domain"])

    return loop.Task(
        init_state=functools.partial(init_state, config, model, D, g_tx, d_tx),
        train_step=functools.partial(train_step, config, model, D, g_tx, d_tx),
        warmup_step=functools.partial(warmup_step, config, model, D, g_tx, d_tx),
        warmup_steps=config.train.warmup_steps,
        samples=samples,
        global_batch_size=config.batch_size,
        parameters=lambda s: {**s["params"], "discriminator": s["d"]},
        batch_spec=batch_spec,
    )


# ----------------------------------------------------------------------------- data


def domains_of(attributes: dict, names) -> np.ndarray:
    return np.asarray(l2m.domain_index({k: np.asarray(attributes[k]) for k in names}, names))


def pixel_weight_keys(config) -> tuple[str, ...]:
    """The per-pixel loss weights training batches carry (ours, from the data's part
    labels): "rec_weight" when train.part_weight ≠ 1, "keep_weight" when
    train.keep_free_parts names parts."""
    t = config.train
    return (("rec_weight",) if t.part_weight != 1.0 else ()) + (
        ("keep_weight",) if t.keep_free_parts else ()
    )


def pixel_weights(config, segmentation) -> dict[str, np.ndarray]:
    """[B, H, W, 1] float32 maps: "rec_weight" weighs λ_rec's L1 of the facial features
    (labels.FEATURE_PARTS) by train.part_weight; "keep_weight" is 0 on
    train.keep_free_parts grown by train.keep_free_grow pixels (where the edit must change
    the face, which λ_keep would pull back to the input) and 1 elsewhere."""
    t = config.train
    keys = pixel_weight_keys(config)
    out = {}
    if "rec_weight" in keys:
        out["rec_weight"] = labels.feature_weights(segmentation, t.part_weight)
    if "keep_weight" in keys:
        free = labels.grow(labels.part_mask(segmentation, t.keep_free_parts), t.keep_free_grow)
        out["keep_weight"] = np.where(free, 0.0, 1.0).astype(np.float32)[..., None]
    return out


def make_data(config, split=None, *, keys=("image",), seed="config", repeat=True, flip=None):
    """Per-process numpy batches {'image', 'domain', +keys}, and the tf.data iterator.
    Training batches (split None) also carry the per-pixel loss weights (pixel_weights)."""
    from stylejax.data import pipeline

    d = config.data
    weighted = split is None and pixel_weight_keys(config)
    read = tuple(keys) + (("segmentation",) if weighted and "segmentation" not in keys else ())
    ds = pipeline.make_dataset(
        d.name,
        global_batch_size=config.batch_size,
        split=split or d.split,
        seed=config.seed if seed == "config" else seed,
        keys=read + ("attributes",),
        flip=d.flip if flip is None else flip,
        repeat=repeat,
        shuffle_buffer=d.shuffle_buffer,
        data_dir=d.directory or None,
    )
    tf_iterator = iter(ds)

    def numpy_batches():
        for batch in tf_iterator:
            out = {k: batch[k].numpy() for k in keys}
            attributes = {k: v.numpy() for k, v in batch["attributes"].items()}
            out["domain"] = domains_of(attributes, d.attributes).astype(np.int32)
            if weighted:
                out.update(pixel_weights(config, batch["segmentation"].numpy()))
            yield out

    return numpy_batches(), tf_iterator


# ----------------------------------------------------------------------------- evaluation


def classifier_attributes(config) -> list[str]:
    """What the classifier predicts: the edited attributes, then
    config.eval.classifier_attributes (e.g. CelebA's 40)."""
    extra = [a for a in config.eval.classifier_attributes if a not in config.data.attributes]
    return list(config.data.attributes) + extra


def classifier_settings(config) -> attribute_classifier.Settings:
    e = config.eval
    return attribute_classifier.Settings(
        data=config.data.name,
        attributes=tuple(classifier_attributes(config)),
        img_size=config.model.img_size,
        steps=e.classifier_steps,
        batch_size=e.classifier_batch_size,
        dim_in=e.classifier_dim_in,
        max_conv_dim=config.model.max_conv_dim,
        lr=e.classifier_lr,
        seed=config.seed + 7,
        data_dir=config.data.directory or None,
    )


def attribute_bits(domain, count: int) -> np.ndarray:
    return (np.asarray(domain)[:, None] >> np.arange(count)[None, :]) & 1


def evaluate(config, state, workdir, *, max_images=None) -> dict[str, float]:
    """Attribute-manipulation accuracy (the project's classifier on config.eval.split images
    edited to the other value of the first attribute, α = 1), the discriminator's domain
    accuracy on the real images, and on synthetic faces the PSNR of the edits against the
    `smile_flipped` renders inside and outside the mouth region; the α sweep (0, the
    config's alphas and 1: the classifier's target score and edit accuracy, and the PSNR
    outside the mouth, at each α, and whether they move monotonically); the editing strips
    go to workdir/eval/strips.png. The classifier is trained once and kept in workdir."""
    t0 = time.perf_counter()
    e = config.eval
    state = jax.device_get(state)
    model, D = build_models(config)
    variables = {"params": state["ema"]}
    clf = attribute_classifier.load_or_train(classifier_settings(config), workdir)
    names = list(config.data.attributes)
    synthetic = config.data.name.startswith("synthetic_faces")
    keys = ("image", "segmentation", "smile_flipped") if synthetic else ("image",)

    # The α sweep: 0 (the reconstruction) and 1 (the full edit) are always measured.
    sweep = tuple(sorted({0.0, 1.0, *sweep_alphas(config)}))
    full = sweep.index(1.0)

    @jax.jit
    def run(x, y):
        y_trg = flip_first_attribute(y)
        edits = model.apply(variables, x, y, y_trg, sweep, method=model.sweep)
        flat = edits.reshape(-1, *x.shape[1:])
        logits = clf.module.apply({"params": clf.params}, flat).reshape(*edits.shape[:2], -1)
        # The discriminator's own domain guess for the real image: its edit pressure can
        # only carry the attribute once it tells the domains apart.
        d_domain = jnp.argmax(D.apply({"params": state["d"]}, x), axis=-1)
        # The other attributes' full edits (multi-attribute models), each toggling one bit.
        others = [
            clf.module.apply({"params": clf.params}, model.apply(variables, x, y, y ^ (1 << k)))
            for k in range(1, len(names))
        ]
        return edits, logits, d_domain, jnp.stack([logits[:, full], *others], 1)

    data, _ = make_data(config, e.split, keys=keys, seed=None, repeat=False, flip=False)
    # hits[k, j]: full edits toggling attribute k in which attribute j reads as its target
    # (toggled for j = k, kept otherwise).
    hits = np.zeros((len(names), len(names)))
    count = d_hits = 0
    target_score = np.zeros(len(sweep))  # the classifier's probability of the target value
    sweep_hits = np.zeros(len(sweep))
    psnr = metrics.MaskedPSNR()
    limit = e.max_images if max_images is None else max_images
    strip_batch = None
    for batch in data:
        x, y = batch["image"], batch["domain"]
        edits, logits, d_domain, full_logits = (np.asarray(v) for v in run(x, y))
        for k in range(len(names)):
            target = attribute_bits(np.asarray(y) ^ (1 << k), len(names))
            hits[k] += np.sum((full_logits[:, k, : len(names)] > 0) == target, axis=0)
        target = attribute_bits(np.asarray(flip_first_attribute(y)), len(names))
        probability = 1 / (1 + np.exp(-logits[..., 0]))
        target_score += np.sum(np.where(target[:, :1] == 1, probability, 1 - probability), 0)
        sweep_hits += np.sum((logits[..., 0] > 0) == (target[:, :1] == 1), axis=0)
        d_hits += int(np.sum(d_domain == y))
        count += len(x)
        if strip_batch is None:
            strip_batch = {"image": x[:8], "domain": y[:8]}
        if synthetic and names[0] == "Smiling":
            truth = batch["smile_flipped"]
            region = synthetic_faces.smile_region(batch["segmentation"], x, truth)
            psnr.add("psnr_mouth", edits[:, full], truth, region)
            psnr.add("psnr_outside_mouth", edits[:, full], truth, ~region)
            psnr.add("psnr_mouth_input", x, truth, region)
            for i, alpha in enumerate(sweep):
                # Outside the region smile_flipped equals the input.
                psnr.add(f"sweep/psnr_outside_mouth/alpha_{alpha:g}", edits[:, i], x, ~region)
        if limit and count >= limit:
            break
    result = {"images": float(count)}
    for name, accuracy in clf.test_accuracy.items():
        result[f"classifier_test_accuracy/{name}"] = float(accuracy)
    # Each toggled attribute classified as its target; the others, while it is, as kept.
    for k, edited in enumerate(names):
        result[f"edit_accuracy/{edited}"] = float(hits[k, k] / max(count, 1))
        for j, other in enumerate(names):
            if j != k:
                result[f"kept_accuracy/{edited}/{other}"] = float(hits[k, j] / max(count, 1))
    # argmax over the discriminator's per-domain logits of the real images.
    result["discriminator_domain_accuracy"] = d_hits / max(count, 1)
    # PSNR (dB, peak-to-peak 2) against smile_flipped; "input" is the unedited baseline.
    result.update({k: float(v) for k, v in psnr.result().items()})
    for i, alpha in enumerate(sweep):
        result[f"sweep/target_score/alpha_{alpha:g}"] = float(target_score[i] / max(count, 1))
        result[f"sweep/edit_accuracy/alpha_{alpha:g}"] = float(sweep_hits[i] / max(count, 1))
    scores = [result[f"sweep/target_score/alpha_{a:g}"] for a in sweep]
    # 1 when the target score rises with α (and, on synthetic faces, the PSNR outside the
    # mouth does not rise) at every step of the sweep.
    monotonic = all(b > a for a, b in zip(scores, scores[1:]))
    outside = [result.get(f"sweep/psnr_outside_mouth/alpha_{a:g}") for a in sweep]
    if None not in outside:  # within 0.1 dB: the first small steps barely move the image
        monotonic = monotonic and all(b <= a + 0.1 for a, b in zip(outside, outside[1:]))
    result["sweep_monotonic"] = float(monotonic)
    alphas = sweep_alphas(config)
    grid = strips(
        model,
        variables,
        jnp.asarray(strip_batch["image"]),
        jnp.asarray(strip_batch["domain"]),
        alphas,
    )
    images.save_grid(
        np.asarray(grid), Path(workdir) / "eval" / "strips.png", cols=1 + len(alphas), pad=1
    )
    result["seconds"] = round(time.perf_counter() - t0, 1)
    logging.info("L2M-GAN evaluation: %s", result)
    return result


def export(config, state, out_dir) -> dict:
    """The EMA networks (G, E, M) in the project's model format (family l2m), for
    load_pretrained and tools/l2m_edit.py."""
    from stylejax import model_format

    nets = ("l2m", model_kwargs(config), {"params": jax.device_get(state["ema"])})
    domains = l2m.domain_names(list(config.data.attributes))
    step = int(jax.device_get(state["step"]))
    return model_format.save_trained(out_dir, config, step, "l2m", {"l2m": nets}, domains=domains)
