from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import assert_close

from stylejax import metrics
from stylejax.models import irse


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


@pytest.fixture(scope="module")
def ssim_ref():
    return np.load(Path(__file__).parent / "data" / "fid" / "ssim_ref.npz")


def test_ssim_and_psnr_match_skimage(ssim_ref):
    # tools/make_fid_fixture.py: skimage's structural_similarity(gaussian_weights=True,
    # sigma=1.5, use_sample_covariance=False) and peak_signal_noise_ratio on the same pairs
    # (noise, odd sizes, one channel, 11×11, data_range 1 on [0, 1] images).
    ssim = jax.jit(metrics.ssim, static_argnums=2)
    for i in range(5):
        x, y, r = ssim_ref[f"x{i}"], ssim_ref[f"y{i}"], float(ssim_ref[f"range{i}"])
        assert_close(ssim(x, y, r), ssim_ref[f"ssim{i}"], rel=2e-6, max_abs=1e-6, what="ssim")
        assert_close(metrics.psnr(x, y, r), ssim_ref[f"psnr{i}"], rel=1e-6, what="psnr")


def test_ssim_psnr_properties_and_errors():
    x = np.random.default_rng(1).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(metrics.ssim(x, x), 1.0, atol=1e-6)
    # Constant offset of 0.2 in [-1, 1] (range 2): MSE 0.04 → 10·log10(4 / 0.04) = 20 dB.
    np.testing.assert_allclose(metrics.psnr(x, x + 0.2), 20.0, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 11×11"):
        metrics.ssim(x[:, :10], x[:, :10])
    with pytest.raises(ValueError, match="one shape"):
        metrics.ssim(x, x[:1])


class _PixelEmbedding(nn.Module):
    """Stands in for ArcFace: the same call (112×112 faces → embeddings), seconds to build."""

    @nn.compact
    def __call__(self, x):
        assert x.shape[1:3] == (112, 112)
        return nn.Dense(8)(x.reshape(x.shape[0], -1))


def test_identity_similarity_is_the_cosine_of_cropped_embeddings():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (3, 256, 256, 3)).astype(np.float32)
    y = rng.uniform(-1, 1, (3, 256, 256, 3)).astype(np.float32)
    net = _PixelEmbedding()
    variables = net.init(jax.random.key(0), np.zeros((1, 112, 112, 3)))
    got = jax.jit(lambda a, b: metrics.identity_similarity(net, variables, a, b))(x, y)
    ex = np.asarray(net.apply(variables, irse.id_crop_and_pool(x)), np.float64)
    ey = np.asarray(net.apply(variables, irse.id_crop_and_pool(y)), np.float64)
    want = (ex * ey).sum(1) / np.linalg.norm(ex, axis=1) / np.linalg.norm(ey, axis=1)
    assert_close(got, want, rel=1e-5, what="identity similarity")
    np.testing.assert_allclose(metrics.identity_similarity(net, variables, x, x), 1.0, rtol=1e-5)
    # 128×128 faces are pooled up to the 256 layout first, as pSp's ID loss does.
    assert metrics.identity_similarity(net, variables, x[:, ::2, ::2], y[:, ::2, ::2]).shape == (3,)
