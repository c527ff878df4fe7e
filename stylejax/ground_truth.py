"""Scores against the synthetic faces' exact answers: every test face is
`render(factors)`, and a generator taught the renderer (train.objective "renderer") has a
true latent for it, `factor_latents.factors_to_z(factors)`. So a generator's fidelity, the
attributes of its samples, an encoder's or a projection's recovered code, and an edit can be
measured against the truth rather than by proxies.
"""

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from stylejax import attribute_classifier, metrics
from stylejax.data import face_renderer as renderer
from stylejax.data import factor_latents

HAIR_CLASSES = tuple(f"hair_color={k}" for k in range(len(renderer.HAIR_COLORS)))
CLASSIFIER_ATTRIBUTES = ("Smiling", "Eyeglasses", *HAIR_CLASSES)


def classifier_settings(size: int, data_dir=None) -> attribute_classifier.Settings:
    """The attribute classifier that reads Smiling, Eyeglasses and the hair colour (one
    logit per colour) off synthetic faces of `size` px."""
    return attribute_classifier.Settings(
        data=f"synthetic_faces/{size}",
        attributes=CLASSIFIER_ATTRIBUTES,
        img_size=size,
        steps=2000,  # at 600 steps Smiling reached 0.93 test accuracy beside the 5 hair logits,
        # at 2,000 0.9975 (Eyeglasses and every hair colour 1.000)
        data_dir=data_dir,
    )


def classifier(size: int, folder=None, data_dir=None) -> attribute_classifier.AttributeClassifier:
    """classifier_settings(size)'s classifier, trained on first use and cached in `folder` (default: $XDG_CACHE_HOME/stylejax/ or ~/.cache/stylejax/,
    a folder per data set)."""
    if folder is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = cache / "stylejax" / f"attribute_classifier_synthetic_faces_{size}"
    return attribute_classifier.load_or_train(classifier_settings(size, data_dir), folder)


def classify(clf, images) -> dict[str, np.ndarray]:
    """{Smiling, Eyeglasses: bool [N], hair_color: int [N]} from a classifier with
    CLASSIFIER_ATTRIBUTES."""
    logits = np.asarray(clf.logits(images))
    hair = [clf.settings.attributes.index(a) for a in HAIR_CLASSES]
    return dict(
        Smiling=logits[:, 0] > 0,
        Eyeglasses=logits[:, 1] > 0,
        hair_color=np.argmax(logits[:, hair], axis=1),
    )


def factor_attributes(factors) -> dict[str, np.ndarray]:
    """The true {Smiling, Eyeglasses, hair_color} of [N, 22] factor vectors."""
    rows = [renderer.attributes(renderer.vector_to_factors(f)) for f in factors]
    return {k: np.array([r[k] for r in rows]) for k in ("Smiling", "Eyeglasses", "hair_color")}


render = factor_latents.render_factors  # [N, 22] factor vectors -> images in [-1, 1]


def generate(G, variables, z) -> np.ndarray:
    """G(z) with the stored noise (deterministic), in fixed-size batches."""
    from stylejax import stylegan2_generate

    return stylegan2_generate.generate(G, variables, z, batch_size=100)


def renderer_fidelity(G, variables, factors) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of G(z) against render(factors(z)) for the true latents z of
    `factors` ([N, 22] vectors, e.g. the test split's)."""
    z = factor_latents.factors_to_z(factors, G.z_dim)
    fake = generate(G, variables, z)
    target = render(factor_latents.z_to_factor_vectors(z), G.img_resolution)
    return {
        "renderer_psnr": float(np.mean(metrics.psnr(fake, target))),
        "renderer_ssim": float(np.mean(metrics.ssim(fake, target))),
    }


def attribute_agreement(G, variables, clf, n=1000, seed=0) -> dict[str, float]:
    """On n samples G(z), z ~ N(0, I): the fraction where the classifier's Smiling,
    Eyeglasses and hair colour equal those of factors(z), and where all three do."""
    z = np.random.default_rng(seed).standard_normal((n, G.z_dim)).astype(np.float32)
    truth = factor_attributes(factor_latents.z_to_factor_vectors(z))
    images = generate(G, variables, z)
    said = {k: [] for k in truth}
    for i in range(0, n, 100):
        for k, v in classify(clf, images[i : i + 100]).items():
            said[k].append(v)
    agree = {k: np.concatenate(said[k]) == truth[k] for k in truth}
    out = {f"agree_{k}": float(np.mean(v)) for k, v in agree.items()}
    out["agree_all"] = float(np.mean(np.all(list(agree.values()), axis=0)))
    return out


def renderer_taught(model_dir) -> bool:
    """Whether the exported generator in `model_dir` was taught the renderer, so its z is
    the synthetic faces' factors (config.json "latents")."""
    from stylejax import model_format

    return model_format.read_config(model_dir).get("latents") == factor_latents.LATENTS


def test_factors(size, n, data_dir=None, name=None) -> np.ndarray:
    """The first n test faces' [n, 22] factor vectors of synthetic_faces/size (or of the
    synthetic_faces config `name`)."""
    from stylejax.data import pipeline

    name = name or f"synthetic_faces/{size}"
    batches = pipeline.split_batches(name, "test", ("factors",), limit=n, data_dir=data_dir)
    return np.concatenate([b["factors"] for b in batches])


# ----------------------------------------------------------------------------- true codes

SMILE = renderer.FACTOR_NAMES.index("smile")
FRONTAL = tuple(renderer.FACTOR_NAMES.index(name) for name in ("yaw", "roll"))


def is_synthetic_faces(name) -> bool:
    """Whether a TFDS name is a synthetic_faces config (whose examples store `factors`)."""
    return bool(name) and str(name).split("/")[0] == "synthetic_faces"


def true_ws(G, variables, factors) -> np.ndarray:
    """[N, num_ws, w_dim]: each face's true code, G.map(factors_to_z(factors)) broadcast over
    the layers (a renderer-taught G draws render(factors) from it)."""
    from stylejax import stylegan2_generate

    z = factor_latents.factors_to_z(factors, G.z_dim)
    return stylegan2_generate.map_to_ws(G, variables, z, batch_size=256)


def w_distance(codes, true) -> np.ndarray:
    """[N]: the mean over the layers of the L2 distance between W+ codes (anything that
    broadcasts to the true codes' [N, num_ws, w_dim], e.g. a latent average [num_ws, w_dim])
    and the true codes."""
    true = np.asarray(true, np.float64)
    delta = np.broadcast_to(np.asarray(codes, np.float64), true.shape) - true
    return np.linalg.norm(delta, axis=-1).mean(-1)


def synthesize(G, variables, ws, batch: int = 32) -> np.ndarray:
    """G(ws) for W+ codes, with the stored noise (deterministic), in batches of one size
    (stylegan2_generate pads the last), so any number of codes runs one compiled program."""
    from stylejax import stylegan2_generate

    ws = np.asarray(ws, np.float32)
    n = len(ws)
    if n < batch:  # it batches by min(batch, N): pad a short input up to one batch
        ws = np.concatenate([ws, np.repeat(ws[-1:], batch - n, 0)])
    return stylegan2_generate.synthesize(G, variables, ws, "const", batch_size=batch)[:n]


def _resize(images, size: int) -> np.ndarray:
    """Average-pools a generator's images to the targets' size (pSp's face_pool)."""
    from stylejax.nn import torch_ops

    if images.shape[1] == size:
        return images
    return np.asarray(torch_ops.adaptive_avg_pool2d(jnp.asarray(images), size))


def frontal_factors(factors) -> np.ndarray:
    """The factors of each face's `frontal` render (yaw = roll = 0)."""
    f = np.array(factors, np.float32)
    f[:, list(FRONTAL)] = 0.0
    return f


# ----------------------------------------------------------------------------- inversion


def inversion_scores(G, variables, batches, encode, baseline_codes, baseline="baseline/"):
    """An encoder's codes against the true codes of its targets.

    batches: dicts with the encoder's input "source", its "target" images and the targets'
    "factors" [N, 22]; encode(source) -> {prefix: W+ codes [N, num_ws, w_dim]} (one prefix
    per output, e.g. "" for pSp, "step1/" … for ReStyle's refinement steps); baseline_codes:
    the codes every face gets without an encoder (the latent average [num_ws, w_dim]).
    Returns means over the faces of `<prefix>true_w_distance` (w_distance to the true
    codes), `<baseline>true_w_distance`, and `true_code/psnr`, `true_code/ssim`: G(true code)
    against the target, the best any code of the generator's W space reaches there."""
    sums, count = {}, 0

    def add(name, values):
        sums[name] = sums.get(name, 0.0) + float(np.sum(values))

    for batch in batches:
        target = np.asarray(batch["target"], np.float32)
        true = true_ws(G, variables, batch["factors"])
        for prefix, codes in encode(batch["source"]).items():
            add(f"{prefix}true_w_distance", w_distance(codes, true))
        add(f"{baseline}true_w_distance", w_distance(baseline_codes, true))
        drawn = np.clip(_resize(synthesize(G, variables, true), target.shape[1]), -1, 1)
        add("true_code/psnr", metrics.psnr(drawn, target))
        add("true_code/ssim", metrics.ssim(drawn, target))
        count += len(target)
    return {name: total / max(count, 1) for name, total in sums.items()}


# ----------------------------------------------------------------------------- projection


def projection_scores(G, variables, factors, result, targets, w_avg_samples=10_000):
    """How far a projection (stylegan2_projection.ProjectionResult of `targets`, the faces
    of `factors`) recovered the truth: ({name: mean}, {name: per-face values [N]}) with
    true_w_distance (the projected W+ codes to the true codes), baseline/true_w_distance
    (from the projection's start, the mean of w_avg_samples mapped z), psnr / ssim of the
    projected images against the targets, and true_code/psnr, true_code/ssim of G(true
    code) against them (the generator's own ceiling)."""
    from stylejax import stylegan2_projection

    targets = np.asarray(targets, np.float32)
    true = true_ws(G, variables, factors)
    w_avg, _ = stylegan2_projection.sample_w_stats(G, variables, w_avg_samples)
    drawn = synthesize(G, variables, true)
    per_face = {
        "true_w_distance": w_distance(result.ws, true),
        "baseline/true_w_distance": w_distance(w_avg, true),
        "psnr": np.asarray(metrics.psnr(result.images, targets)),
        "ssim": np.asarray(metrics.ssim(result.images, targets)),
        "true_code/psnr": np.asarray(metrics.psnr(drawn, targets)),
        "true_code/ssim": np.asarray(metrics.ssim(drawn, targets)),
    }
    return {k: float(np.mean(v)) for k, v in per_face.items()}, per_face


def projection_recovery(G, variables, factors, config=None, lpips=None, seed=0, progress=None):
    """Projects the renders of `factors` (test faces) with stylegan2_projection.project (its
    lpips, seed and progress arguments) and scores the result (projection_scores). Returns
    (means, per-face values, result)."""
    from stylejax import stylegan2_projection

    config = config or stylegan2_projection.ProjectionConfig()
    targets = render(factors, G.img_resolution)
    result = stylegan2_projection.project(
        G, variables, targets, config, lpips, seed, progress=progress
    )
    means, per_face = projection_scores(
        G, variables, factors, result, targets, config.w_avg_samples
    )
    return means, per_face, result


# ----------------------------------------------------------------------------- editing


def flip_smile(factors) -> np.ndarray:
    """The factors of each face's `smile_flipped` render (smile s -> 1 - s)."""
    f = np.array(factors, np.float32)
    f[:, SMILE] = 1.0 - f[:, SMILE]
    return f


def smiling(factors) -> np.ndarray:
    return np.asarray(factors)[:, SMILE] > 0.5


def towards_smile(factors) -> np.ndarray:
    """[N]: +1 where flipping the smile makes the face smile, -1 where it removes one."""
    return np.where(smiling(factors), -1.0, 1.0)


def true_smile_axis(G, variables, factors) -> np.ndarray:
    """[w_dim] unit vector: the mean over the faces of the true edit in W, G.map(z of the
    smile-flipped factors) - G.map(z), each signed towards smiling (a frown-to-smile edit
    counts as is, a smile-to-frown one negated), normalised."""
    w = true_ws(G, variables, factors)[:, 0].astype(np.float64)
    w_flip = true_ws(G, variables, flip_smile(factors))[:, 0].astype(np.float64)
    axis = np.mean(towards_smile(factors)[:, None] * (w_flip - w), axis=0)
    return axis / np.linalg.norm(axis)


def axis_cosine(direction, axis) -> float:
    """Cosine between a direction in W ([w_dim]) or W+ ([num_ws, w_dim]; then against the
    axis on every layer) and a W axis."""
    d = np.asarray(direction, np.float64)
    a = np.broadcast_to(np.asarray(axis, np.float64), d.shape)
    return float(np.sum(d * a) / (np.linalg.norm(d) * np.linalg.norm(a)))


def best_component(directions, axis) -> tuple[int, float]:
    """(k, |cosine|) of the row of `directions` [K, w_dim] closest to the axis up to sign:
    which SeFa or GANSpace component is the smile, and how well."""
    cos = [abs(axis_cosine(d, axis)) for d in directions]
    k = int(np.argmax(cos))
    return k, cos[k]


def fit_smile_direction(G, variables, n=2000, seed=0, clf=None):
    """stylegan2_editing.fit_direction on n sampled W codes labelled Smiling by their factors
    (or by the attribute classifier `clf` on G(z), as without ground truth)."""
    from stylejax import stylegan2_editing

    if clf is None:
        z, w = stylegan2_editing.sample_w(G, variables, n, seed)
        labels = smiling(factor_latents.z_to_factor_vectors(z))
    else:  # CLASSIFIER_ATTRIBUTES[0] is Smiling
        w, labels = stylegan2_editing.classified_samples(G, variables, clf, n, seed)
    return stylegan2_editing.fit_direction(w, labels)


class SmileEdits:
    """Edits of real faces' true codes along a direction, scored against the renderer's
    smile_flipped counterfactual (what stays fixed over directions is computed once).

    `score(direction)`: the direction (W [w_dim] or W+ [num_ws, w_dim]) is scaled to unit
    length per layer (D̂, ‖D̂‖² = num_ws) and each face's true code w moves by ±strength·D̂
    (+ for faces that do not smile, - for those that do). strength None: one strength for all
    faces, the least-squares step that best matches the true edits on average,
    mean_i ±⟨w_flip_i - w_i, D̂⟩ / num_ws (negative when the direction points away from
    smiling). Returned (metrics.MaskedPSNR pooled over the faces, inside / outside
    synthetic_faces.smile_region): psnr_mouth (edit vs smile_flipped), psnr_outside_mouth
    (edit vs G(w): what else the edit changed), the strength and, with a classifier `clf`,
    classifier_flipped: the fraction of edits the attribute classifier reads as the target
    class. `baselines`, the same for every direction: psnr_mouth_unedited (G(w) vs
    smile_flipped: no edit) and psnr_mouth_true_edit (G(w_flip) vs smile_flipped: the code
    of the exact edit)."""

    def __init__(self, G, variables, factors, clf=None):
        from stylejax.data import synthetic_faces

        self.G, self.variables, self.clf = G, variables, clf
        self.target = ~smiling(factors)
        self.sign = towards_smile(factors)
        self.true = true_ws(G, variables, factors)
        true_flip = true_ws(G, variables, flip_smile(factors))
        self.delta = true_flip.astype(np.float64) - self.true
        size = G.img_resolution
        face, labels = render(factors, size, with_labels=True)
        self.truth = render(flip_smile(factors), size)
        self.region = synthetic_faces.smile_region(labels, face, self.truth)
        self.unedited = np.clip(synthesize(G, variables, self.true), -1, 1)
        exact = np.clip(synthesize(G, variables, true_flip), -1, 1)
        psnr = metrics.MaskedPSNR()
        psnr.add("psnr_mouth_unedited", self.unedited, self.truth, self.region)
        psnr.add("psnr_mouth_true_edit", exact, self.truth, self.region)
        self.baselines = psnr.result()

    def score(self, direction, strength=None) -> dict[str, float]:
        d = np.broadcast_to(np.asarray(direction, np.float64), self.true.shape[1:])
        d = d * np.sqrt(d.shape[0]) / np.linalg.norm(d)
        if strength is None:
            along = np.einsum("nkd,kd->n", self.delta, d) / d.shape[0]
            strength = float(np.mean(self.sign * along))
        edited = self.true + (self.sign * strength)[:, None, None] * d[None]
        edit = np.clip(synthesize(self.G, self.variables, edited.astype(np.float32)), -1, 1)
        psnr = metrics.MaskedPSNR()
        psnr.add("psnr_mouth", edit, self.truth, self.region)
        psnr.add("psnr_outside_mouth", edit, self.unedited, ~self.region)
        out = {**psnr.result(), "strength": strength}
        if self.clf is not None:
            said = classify(self.clf, edit)["Smiling"]
            out["classifier_flipped"] = float(np.mean(said == self.target))
        return out


def editing_report(
    G,
    variables,
    factors,
    fit_samples=2000,
    num_components=16,
    pca_samples=20_000,
    seed=0,
    clf=None,
    directions=None,
) -> dict[str, float]:
    """The Smiling directions stylegan2_editing finds, against the truth on the faces of
    `factors`: `<method>/true_axis_cosine` (with true_smile_axis) and `<method>/<edit score>`
    (SmileEdits.score) for fit (fit_smile_direction on fit_samples samples; also
    fit/train_accuracy), sefa and ganspace (the component of the first num_components
    closest to the axis: <method>/component, the cosine up to sign) and true_axis (the axis
    itself: the best one W direction does), plus any `directions` {name: direction} given;
    and once, SmileEdits.baselines (psnr_mouth_unedited, psnr_mouth_true_edit)."""
    from stylejax import stylegan2_editing

    axis = true_smile_axis(G, variables, factors)
    boundary = fit_smile_direction(G, variables, fit_samples, seed, clf)
    report = {"fit/train_accuracy": boundary.accuracy}
    found = {"fit": boundary.direction}
    sefa, _ = stylegan2_editing.sefa(G, variables)
    pca = stylegan2_editing.ganspace_pca(G, variables, pca_samples, num_components, seed)
    for name, rows in (("sefa", sefa[:num_components]), ("ganspace", pca.components)):
        k, _ = best_component(rows, axis)
        report[f"{name}/component"] = k
        found[name] = rows[k]
    found["true_axis"] = axis
    found.update(directions or {})
    edits = SmileEdits(G, variables, factors, clf)
    report.update(edits.baselines)
    for name, d in found.items():
        cos = axis_cosine(d, axis)
        report[f"{name}/true_axis_cosine"] = abs(cos) if name in ("sefa", "ganspace") else cos
        report.update({f"{name}/{k}": v for k, v in edits.score(d).items()})
    return report


def tool_test_factors(model_dir, size, n, name=None, data_dir=None) -> np.ndarray:
    """For the tools: the first n test faces' factors (test_factors) to score the generator
    in model_dir against, or a ValueError when it was not taught the renderer."""
    if not renderer_taught(model_dir):
        raise ValueError(
            f"{model_dir}: not taught the renderer (its config.json has no "
            f'"latents": "{factor_latents.LATENTS}"), so the test faces have no true latents'
        )
    return test_factors(size, n, data_dir, name)
