"""The fixed, invertible map between a StyleGAN2 latent z ~ N(0, I) and the synthetic
faces' 22 factors (face_renderer.FACTOR_NAMES), so a generator can be taught the renderer.

The generator's mapping network first divides z by its root mean square, so it never sees
z's length; the factors are therefore read from that normalised ẑ = z / rms(z), the code the
generator actually receives: factor i comes from ẑ_i (i < 22; the other coordinates carry
nothing). ẑ_i / √n (n = z_dim) is one coordinate of a uniform point on the unit sphere, so
u_i = I_{(1 + ẑ_i/√n) / 2}((n-1)/2, (n-1)/2) (the regularised incomplete beta function) is
exactly uniform on [0, 1], and u_i becomes the factor through the inverse of its prior in
face_renderer.sample_factors:

- uniform factors: lo + (hi - lo) u;
- categorical factors (hair style and colour, eye colour): bin floor(k u) of k equal bins;
- smile, uniform on [0, 0.35] or [0.65, 1] with equal odds: the lower half of u maps onto the
  first range, the upper half onto the second, so no z gives an ambiguous smile;
- eyeglasses, Bernoulli(0.3): 1 where u ≥ 0.7.

The marginals are exact; the factors are independent up to the sphere's constraint on the
22 coordinates (their squared sum is at most n), which for n = 64 is a correlation of about
-1/63 between squared coordinates. Going back, `factors_to_z` puts each categorical or
Bernoulli factor at the centre of its interval of u and fills the unused coordinates with a
fixed direction, giving "the true latent" of a face.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stylejax.data import face_renderer as renderer

NUM_FACTORS = len(renderer.FACTOR_NAMES)
# An exported generator's config.json "latents" when its z is this map's (train.objective
# "renderer"): what stylejax.ground_truth looks for before scoring against the truth.
LATENTS = "synthetic_faces_factors"

# name -> ("uniform", lo, hi) | ("categorical", k) | ("smile",) | ("bernoulli", p):
# sample_factors' prior, written as data (tests check the two agree).
PRIOR = {
    "face_width": ("uniform", 0.36, 0.44),
    "face_height": ("uniform", 0.47, 0.55),
    "skin_tone": ("uniform", 0.0, 1.0),
    "hair_style": ("categorical", len(renderer.HAIR_STYLES)),
    "hair_color": ("categorical", len(renderer.HAIR_COLORS)),
    "eye_color": ("categorical", len(renderer.EYE_RGB)),
    "eye_spacing": ("uniform", 0.13, 0.17),
    "eye_size": ("uniform", 0.045, 0.06),
    "brow_thickness": ("uniform", 0.012, 0.024),
    "brow_tilt": ("uniform", -12.0, 12.0),
    "nose_length": ("uniform", 0.13, 0.19),
    "nose_width": ("uniform", 0.03, 0.05),
    "mouth_width": ("uniform", 0.08, 0.12),
    "lip_thickness": ("uniform", 0.018, 0.03),
    "yaw": ("uniform", -55.0, 55.0),
    "roll": ("uniform", -15.0, 15.0),
    "smile": ("smile",),
    "eyeglasses": ("bernoulli", 0.3),
    "background_hue": ("uniform", 0.25, 0.8),
    "background_value": ("uniform", 0.45, 0.85),
    "light_azimuth": ("uniform", -60.0, 60.0),
    "light_strength": ("uniform", 0.3, 0.8),
}
SMILE_LOW, SMILE_HIGH = 0.35, 0.65  # the smile's two ranges: [0, 0.35] and [0.65, 1]


def check_z_dim(z_dim):
    if z_dim < NUM_FACTORS:
        raise ValueError(f"z_dim {z_dim} is below the {NUM_FACTORS} factors it must carry")


@functools.partial(jax.jit, static_argnums=1)
def _sphere_cdf(t, n):
    """P(T ≤ t) for one coordinate T of a uniform point on the unit sphere in n dims."""
    a = (n - 1) / 2
    return jax.scipy.special.betainc(a, a, jnp.clip((1 + t) / 2, 0.0, 1.0))


def z_to_uniforms(z) -> np.ndarray:
    """[N, z_dim] latents -> [N, 22] uniforms u_i (see the module docstring)."""
    z = np.asarray(z, np.float64)
    n = z.shape[-1]
    check_z_dim(n)
    t = z[:, :NUM_FACTORS] / np.linalg.norm(z, axis=-1, keepdims=True)
    return np.asarray(_sphere_cdf(jnp.asarray(t, jnp.float32), n), np.float64)


def uniforms_to_factor_vectors(u) -> np.ndarray:
    """[N, 22] uniforms -> [N, 22] factor vectors in FACTOR_NAMES order."""
    u = np.clip(np.asarray(u, np.float64), 0.0, 1.0)
    out = np.empty_like(u)
    for i, name in enumerate(renderer.FACTOR_NAMES):
        kind, *args = PRIOR[name]
        x = u[:, i]
        if kind == "uniform":
            lo, hi = args
            out[:, i] = lo + (hi - lo) * x
        elif kind == "categorical":
            (k,) = args
            out[:, i] = np.minimum(np.floor(k * x), k - 1)
        elif kind == "smile":
            out[:, i] = np.where(
                x < 0.5, SMILE_LOW * 2 * x, SMILE_HIGH + (1 - SMILE_HIGH) * (2 * x - 1)
            )
        else:  # bernoulli
            (p,) = args
            out[:, i] = (x >= 1 - p).astype(np.float64)
    return out.astype(np.float32)


def factor_vectors_to_uniforms(factors) -> np.ndarray:
    """The inverse of uniforms_to_factor_vectors; a categorical or Bernoulli factor goes to
    the centre of its interval of u."""
    f = np.asarray(factors, np.float64)
    u = np.empty_like(f)
    for i, name in enumerate(renderer.FACTOR_NAMES):
        kind, *args = PRIOR[name]
        x = f[:, i]
        if kind == "uniform":
            lo, hi = args
            u[:, i] = (x - lo) / (hi - lo)
        elif kind == "categorical":
            (k,) = args
            u[:, i] = (np.round(x) + 0.5) / k
        elif kind == "smile":
            u[:, i] = np.where(
                x < 0.5, x / (2 * SMILE_LOW), 0.5 + (x - SMILE_HIGH) / (2 * (1 - SMILE_HIGH))
            )
        else:  # bernoulli
            (p,) = args
            u[:, i] = np.where(x > 0.5, 1 - p / 2, (1 - p) / 2)
    return np.clip(u, 0.0, 1.0)


def z_to_factor_vectors(z) -> np.ndarray:
    """[N, z_dim] latents -> [N, 22] factor vectors: what face_renderer.render draws."""
    return uniforms_to_factor_vectors(z_to_uniforms(z))


def _uniforms_to_sphere(u, n, iterations=40):
    """Inverts _sphere_cdf by bisection (it is increasing in t)."""
    lo, hi = np.full(u.shape, -1.0), np.full(u.shape, 1.0)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = np.asarray(_sphere_cdf(jnp.asarray(mid, jnp.float32), n)) < u
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def factors_to_z(factors, z_dim) -> np.ndarray:
    """[N, 22] factor vectors -> [N, z_dim] latents of unit rms whose factors they are (the
    "true latent" of a face). Coordinates past the 22nd get a fixed direction."""
    check_z_dim(z_dim)
    f = np.atleast_2d(np.asarray(factors, np.float64))
    t = _uniforms_to_sphere(factor_vectors_to_uniforms(f), z_dim)
    rest = z_dim - NUM_FACTORS
    # The unit vector's remaining length goes to the unused coordinates; with none left
    # the 22 coordinates are rescaled onto the sphere (exact only when they already fit).
    left = np.maximum(1 - np.sum(t**2, axis=-1, keepdims=True), 0.0)
    if rest:
        direction = np.random.default_rng(0).standard_normal(rest)
        t = np.concatenate([t, np.sqrt(left) * direction / np.linalg.norm(direction)], -1)
    else:
        t = t / np.linalg.norm(t, axis=-1, keepdims=True)
    return (t * np.sqrt(z_dim)).astype(np.float32)


def render_batch(z, size, with_labels=False):
    """G's target for latents z: render_factors of their factors."""
    return render_factors(z_to_factor_vectors(z), size, with_labels)


def render_factors(factors, size, with_labels=False):
    """[N, size, size, 3] float32 images in [-1, 1] of [N, 22] factor vectors (and with
    with_labels, their [N, size, size] uint8 part labels, stylejax.data.labels)."""
    rendered = [renderer.render(renderer.vector_to_factors(f), size) for f in factors]
    images = np.stack([image for image, _ in rendered]).astype(np.float32) / 127.5 - 1.0
    if with_labels:
        return images, np.stack([labels for _, labels in rendered])
    return images
