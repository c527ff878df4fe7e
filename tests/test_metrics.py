import numpy as np
import pytest

from stylejax import metrics


def test_frechet_distance_of_gaussians_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 3))
    b = rng.standard_normal((20000, 3)) * 2.0 + 1.0
    # N(0, I) vs N(1, 4I): |Δμ|² = 3, tr(I + 4I - 2·2I) = 3 → 6.
    assert metrics.frechet_distance(a, b) == pytest.approx(6.0, rel=0.03)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_pixel_features_average_blocks():
    img = np.zeros((1, 32, 32, 3), np.float32)
    img[0, :2, :2] = 1.0  # one 2×2 block of the first output pixel
    feats = metrics.pixel_features(img, 16)
    assert feats.shape == (1, 768) and feats[0, 0] == 1.0 and feats[0, 3:].max() == 0.0
    with pytest.raises(ValueError, match="multiple of 16"):
        metrics.pixel_features(np.zeros((1, 24, 24, 3)), 16)
