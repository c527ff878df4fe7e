"""Distribution distances between image sets.

`frechet_distance` is the FID formula for any features. `pixel_features` is a stated proxy
for when no Inception weights are available: 16×16 area-downsampled pixels. Numbers from it
are not FID and are only comparable with each other.
"""

import numpy as np


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
