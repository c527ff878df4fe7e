"""Image-quality metrics.

Distribution distances between image sets: `frechet_distance` is the FID formula for any
features. `pixel_features` is a stated proxy for when no Inception weights are available:
16×16 area-downsampled pixels. Numbers from it are not FID and are only comparable with each
other.

Per-sample comparisons of two image batches (jittable): `psnr`, `ssim`, `identity_similarity`
(ArcFace cosine), `lpips_distance`.
"""

import jax.numpy as jnp
import numpy as np

from stylejax.models import irse


def _sqrtm_psd(m):
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(feats_a, feats_b) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½), in float64."""
    a = np.asarray(feats_a, np.float64)
    b = np.asarray(feats_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    return float(
        np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(cross)
    )


def pixel_features(images, size: int = 16) -> np.ndarray:
    """[N, H, W, C] images in [-1, 1] → [N, size·size·C] area-downsampled pixels."""
    x = np.asarray(images, np.float32)
    n, h, w, c = x.shape
    if h % size or w % size:
        raise ValueError(f"image size {h}x{w} must be a multiple of {size}")
    x = x.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))
    return x.reshape(n, -1)


# ---------------------------------------------------------------------------------------------
# Per-sample image comparisons (jittable; NHWC batches in [-1, 1] unless data_range says).


def psnr(x, y, data_range: float = 2.0):
    """Peak signal-to-noise ratio in dB per sample: 10·log10(R² / MSE) over H, W, C."""
    mse = jnp.mean((jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32)) ** 2, (1, 2, 3))
    return 10.0 * jnp.log10(data_range**2 / mse)


SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5·σ + 0.5): scipy's gaussian_filter truncation, as skimage uses it
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_window() -> np.ndarray:
    taps = np.exp(-0.5 * (np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1) / SSIM_SIGMA) ** 2)
    return taps / taps.sum()


def _valid_blur(x):
    """Separable 11-tap Gaussian over H and W of [N, H, W, C], keeping only the positions whose
    window lies inside the image. skimage filters with reflected borders and then crops
    (win − 1)/2 = 5 pixels per side before averaging; the kept pixels never see the reflected
    border, so this 'valid' filter gives the same numbers without padding."""
    taps = jnp.asarray(_gaussian_window(), x.dtype)
    h, w = x.shape[1:3]
    k = len(taps)
    x = sum(taps[i] * x[:, i : h - k + 1 + i] for i in range(k))
    return sum(taps[i] * x[:, :, i : w - k + 1 + i] for i in range(k))


def ssim(x, y, data_range: float = 2.0):
    """Mean structural similarity per sample, equal to
    `skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=-1)`: 11×11 Gaussian
    window (σ = 1.5), K1 = 0.01, K2 = 0.03, averaged over the image minus a 5-pixel border and
    then over channels. Images must be at least 11×11."""
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two NHWC batches of one shape, got {x.shape} and {y.shape}")
    if min(x.shape[1:3]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"ssim needs images of at least 11×11 pixels, got {x.shape[1:3]}")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _valid_blur(x), _valid_blur(y)
    var_x = _valid_blur(x * x) - mu_x * mu_x
    var_y = _valid_blur(y * y) - mu_y * mu_y
    cov = _valid_blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    return jnp.mean(s, axis=(1, 2, 3))


def identity_similarity(arcface_module, arcface_vars, x, y):
    """Cosine similarity [N] of ArcFace embeddings of two face batches (NHWC in [-1, 1], any
    size: pSp's crop and pooling to 112×112 via `irse.id_crop_and_pool` come first)."""
    ex = arcface_module.apply(arcface_vars, irse.id_crop_and_pool(x))
    ey = arcface_module.apply(arcface_vars, irse.id_crop_and_pool(y))
    return jnp.sum(ex * ey, -1) / (jnp.linalg.norm(ex, axis=-1) * jnp.linalg.norm(ey, axis=-1))


def lpips_distance(lpips_module, lpips_vars, x, y):
    """LPIPS distance [N] between two NHWC batches in [-1, 1] (an `lpips.LPIPS` module)."""
    return lpips_module.apply(lpips_vars, x, y)
