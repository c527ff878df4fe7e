"""The generator the package ships loads with load_pretrained and generates faces."""

from pathlib import Path

import jax
import numpy as np

import stylejax
from stylejax.model_format import load_pretrained

SHIPPED = Path(stylejax.__file__).parent / "pretrained" / "synthetic64"


def test_shipped_synthetic64_generator():
    G, variables = load_pretrained(SHIPPED)
    assert (G.img_resolution, G.z_dim, tuple(G.channels)) == (64, 64, (32, 32, 32, 32, 32))
    z = jax.random.normal(jax.random.PRNGKey(0), (4, 64))
    img = np.asarray(jax.jit(lambda v, z: G.apply(v, z, noise_mode="const"))(variables, z))
    assert img.shape == (4, 64, 64, 3) and np.isfinite(img).all()
    assert img.std(axis=0).mean() > 0.05  # different latents, different faces
    # Trained, not random: the centre (skin, warm) differs in colour from the border
    # (background, cool).
    centre, border = img[:, 24:40, 24:40].mean(axis=(0, 1, 2)), img[:, :4].mean(axis=(0, 1, 2))
    assert centre[0] - border[0] > 0.1 and border[2] - centre[2] > 0.2
