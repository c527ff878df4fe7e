"""The PyTorch resampling rules of the pSp family against direct float64 numpy loops."""

import jax
import numpy as np
import pytest

from stylejax.nn import ops


def bilinear_align_corners_ref(x, out_h, out_w):
    """Textbook align_corners=True bilinear interpolation, one output pixel at a time."""
    n, h, w, c = x.shape
    out = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        sy = i * (h - 1) / (out_h - 1) if out_h > 1 else 0.0
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, h - 1)
        fy = sy - y0
        for j in range(out_w):
            sx = j * (w - 1) / (out_w - 1) if out_w > 1 else 0.0
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, w - 1)
            fx = sx - x0
            top = (1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1]
            bottom = (1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]
            out[:, i, j] = (1 - fy) * top + fy * bottom
    return out


def adaptive_avg_pool_ref(x, out_h, out_w):
    """PyTorch's rule: cell i averages [floor(i·in/out), ceil((i+1)·in/out))."""
    n, h, w, c = x.shape
    out = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        y0, y1 = (i * h) // out_h, int(np.ceil((i + 1) * h / out_h))
        for j in range(out_w):
            x0, x1 = (j * w) // out_w, int(np.ceil((j + 1) * w / out_w))
            out[:, i, j] = x[:, y0:y1, x0:x1].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [((16, 16), (32, 32)), ((32, 32), (64, 64)), ((5, 7), (9, 4)), ((6, 6), (1, 3))],
)
def test_resize_bilinear_align_corners(in_hw, out_hw):
    x = np.random.default_rng(0).normal(size=(2, *in_hw, 3))
    got = jax.jit(ops.resize_bilinear_align_corners, static_argnums=1)(x.astype(np.float32), out_hw)
    want = bilinear_align_corners_ref(x, *out_hw)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5)


def test_align_corners_keeps_the_corners_and_differs_from_half_pixel():
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 1)).astype(np.float32)
    got = np.asarray(ops.resize_bilinear_align_corners(x, 7))
    np.testing.assert_array_equal(got[0, ::2, ::2], x[0])  # 4 → 7 maps every input onto 2i
    half_pixel = np.asarray(jax.image.resize(x, (1, 7, 7, 1), "bilinear"))
    assert np.abs(got - half_pixel).max() > 1e-2


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [((188, 188), (112, 112)), ((16, 16), (7, 7)), ((64, 64), (16, 16)), ((5, 9), (3, 4))],
)
def test_adaptive_avg_pool2d(in_hw, out_hw):
    x = np.random.default_rng(2).normal(size=(2, *in_hw, 3))
    got = jax.jit(ops.adaptive_avg_pool2d, static_argnums=1)(x.astype(np.float32), out_hw)
    want = adaptive_avg_pool_ref(x, *out_hw)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5)


def test_adaptive_pool_188_to_112_uses_overlapping_windows():
    # A ramp along the rows: cell 0 averages rows 0..1, cell 1 rows 1..3 (row 1 is shared),
    # cell 2 rows 3..5.
    x = np.broadcast_to(np.arange(188, dtype=np.float32)[None, :, None, None], (1, 188, 188, 1))
    got = np.asarray(ops.adaptive_avg_pool2d(x, 112))[0, :3, 0, 0]
    np.testing.assert_allclose(got, [0.5, 2.0, 4.0], atol=1e-6)
