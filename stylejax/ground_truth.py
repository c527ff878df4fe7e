"""Scores against the synthetic faces' exact answers: every test face is
`render(factors)`, and a generator taught the renderer (train.objective "renderer") has a
true latent for it, `factor_latents.factors_to_z(factors)`. So a generator's fidelity, the
attributes of its samples, an encoder's or a projection's recovered code, and an edit can be
measured against the truth rather than by proxies.
"""

import os
from pathlib import Path

import jax
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
        steps=2000,  # at 600 steps Smiling reached 0.93 test accuracy beside the 5 hair logits
        data_dir=data_dir,
    )


def classifier(size: int, folder=None, data_dir=None) -> attribute_classifier.AttributeClassifier:
    """classifier_settings(size)'s classifier, trained on first use (about 4 CPU-minutes at
    64 px) and cached in `folder` (default: $XDG_CACHE_HOME/stylejax/ or ~/.cache/stylejax/,
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


def render(factors, size) -> np.ndarray:
    """[N, size, size, 3] float32 in [-1, 1]: the renderer's image of each factor vector."""
    out = [renderer.render(renderer.vector_to_factors(f), size)[0] for f in factors]
    return np.stack(out).astype(np.float32) / 127.5 - 1.0


def generate(G, variables, z, batch=100) -> np.ndarray:
    """G(z) with the stored noise (deterministic), in batches."""
    fn = jax.jit(lambda v, z: G.apply(v, z, noise_mode="const"))
    return np.concatenate(
        [np.asarray(fn(variables, z[i : i + batch])) for i in range(0, len(z), batch)]
    )


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

    return model_format.read_config(model_dir).get("latents") == "synthetic_faces_factors"


def test_factors(size, n, data_dir=None) -> np.ndarray:
    """The first n test faces' [n, 22] factor vectors of synthetic_faces/size."""
    from stylejax.data import pipeline

    name = f"synthetic_faces/{size}"
    batches = pipeline.split_batches(name, "test", ("factors",), limit=n, data_dir=data_dir)
    return np.concatenate([b["factors"] for b in batches])
