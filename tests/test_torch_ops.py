"""stylejax.nn.torch_ops against direct float64 numpy loops written from the PyTorch
documentation's formulas (and a few values worked out by hand from torch)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.nn import torch_ops


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


align_corners = functools.partial(torch_ops.resize_bilinear, align_corners=True)


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [((16, 16), (32, 32)), ((32, 32), (64, 64)), ((5, 7), (9, 4)), ((6, 6), (1, 3))],
)
def test_resize_bilinear_align_corners(in_hw, out_hw):
    x = np.random.default_rng(0).normal(size=(2, *in_hw, 3))
    got = jax.jit(align_corners, static_argnums=1)(x.astype(np.float32), out_hw)
    want = bilinear_align_corners_ref(x, *out_hw)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5)


def test_align_corners_keeps_the_corners_and_differs_from_half_pixel():
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 1)).astype(np.float32)
    got = np.asarray(align_corners(x, 7))
    np.testing.assert_array_equal(got[0, ::2, ::2], x[0])  # 4 → 7 maps every input onto 2i
    half_pixel = np.asarray(jax.image.resize(x, (1, 7, 7, 1), "bilinear"))
    assert np.abs(got - half_pixel).max() > 1e-2


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [((188, 188), (112, 112)), ((16, 16), (7, 7)), ((64, 64), (16, 16)), ((5, 9), (3, 4))],
)
def test_adaptive_avg_pool2d(in_hw, out_hw):
    x = np.random.default_rng(2).normal(size=(2, *in_hw, 3))
    got = jax.jit(torch_ops.adaptive_avg_pool2d, static_argnums=1)(x.astype(np.float32), out_hw)
    want = adaptive_avg_pool_ref(x, *out_hw)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5)


def test_adaptive_pool_188_to_112_uses_overlapping_windows():
    # A ramp along the rows: cell 0 averages rows 0..1, cell 1 rows 1..3 (row 1 is shared),
    # cell 2 rows 3..5.
    x = np.broadcast_to(np.arange(188, dtype=np.float32)[None, :, None, None], (1, 188, 188, 1))
    got = np.asarray(torch_ops.adaptive_avg_pool2d(x, 112))[0, :3, 0, 0]
    np.testing.assert_allclose(got, [0.5, 2.0, 4.0], atol=1e-6)


def bilinear_half_pixel_ref(x, out_h, out_w):
    """align_corners=False: source (dst + ½)·in/out − ½, clamped at 0 and at the last pixel."""
    n, h, w, c = x.shape

    def taps(i, in_size, out_size):
        s = max((i + 0.5) * in_size / out_size - 0.5, 0.0)
        i0 = min(int(np.floor(s)), in_size - 1)
        return i0, min(i0 + 1, in_size - 1), s - i0

    out = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        y0, y1, fy = taps(i, h, out_h)
        for j in range(out_w):
            x0, x1, fx = taps(j, w, out_w)
            top = (1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1]
            bottom = (1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]
            out[:, i, j] = (1 - fy) * top + fy * bottom
    return out


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [((16, 16), (32, 32)), ((256, 256), (32, 32)), ((5, 7), (9, 4)), ((6, 5), (6, 3))],
)
@pytest.mark.parametrize("positions_dtype", [np.float64, np.float32])
def test_resize_bilinear_half_pixel(in_hw, out_hw, positions_dtype):
    x = np.random.default_rng(3).normal(size=(2, *in_hw, 3))
    resize = functools.partial(torch_ops.resize_bilinear, positions_dtype=positions_dtype)
    got = jax.jit(resize, static_argnums=1)(x.astype(np.float32), out_hw)
    want = bilinear_half_pixel_ref(x, *out_hw)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5)


def test_resize_bilinear_matches_torch_rules():
    # torch: F.interpolate([[0, 1, 2, 3]], size=2, bilinear) = [0.5, 2.5]; size 8 → clamped
    # edges [0, .25, .75, 1.25, 1.75, 2.25, 2.75, 3].
    x = jnp.broadcast_to(jnp.arange(4.0)[None, None, :, None], (1, 4, 4, 1))
    np.testing.assert_allclose(torch_ops.resize_bilinear(x, 2)[0, 0, :, 0], [0.5, 2.5])
    np.testing.assert_allclose(
        torch_ops.resize_bilinear(x, 8)[0, 0, :, 0],
        [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3],
        atol=1e-6,
    )


def nearest_ref(x, out_h, out_w):
    """torch's legacy nearest: output pixel (i, j) copies input (floor(i·h/out_h), ...)."""
    n, h, w, c = x.shape
    rows = [i * h // out_h for i in range(out_h)]
    cols = [j * w // out_w for j in range(out_w)]
    return x[:, rows][:, :, cols]


@pytest.mark.parametrize(
    "in_hw, out_hw", [((8, 8), (16, 16)), ((4, 6), (12, 12)), ((64, 5), (2, 3)), ((5, 5), (7, 8))]
)
def test_resize_nearest(in_hw, out_hw):
    x = np.random.default_rng(4).normal(size=(2, *in_hw, 3)).astype(np.float32)
    got = jax.jit(torch_ops.resize_nearest, static_argnums=1)(x, out_hw)
    np.testing.assert_array_equal(np.asarray(got), nearest_ref(x, *out_hw))


def test_legacy_nearest_resize_rule():
    x = jnp.arange(64.0).reshape(1, 64, 1, 1) * jnp.ones((1, 1, 5, 1))
    np.testing.assert_array_equal(torch_ops.resize_nearest(x, (2, 3))[0, :, 0, 0], [0, 32])
    # 5 → 3: floor(d·5/3) = 0, 1, 3 (half-pixel centres would give 0, 2, 4)
    y = jnp.arange(5.0).reshape(1, 1, 5, 1)
    np.testing.assert_array_equal(torch_ops.resize_nearest(y, (1, 3))[0, 0, :, 0], [0, 1, 3])


def test_instance_norm():
    x = np.random.default_rng(5).normal(2.0, 3.0, size=(3, 6, 5, 4))
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)  # biased, as torch
    for eps in (1e-5, 1.0):
        want = (x - mean) / np.sqrt(var + eps)
        got = torch_ops.instance_norm(x.astype(np.float32), eps)
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5)


def pool_ref(x, kernel, stride, padding, reduce, count_include_pad=True):
    """F.avg_pool2d / F.max_pool2d in floor mode: windows over the zero-padded input, out
    size (in + 2p − k) // s + 1; padded pixels never win a max and count in an average
    only with count_include_pad."""
    n, h, w, c = x.shape
    fill = -np.inf if reduce == "max" else 0.0
    padded = np.pad(x, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)), constant_values=fill)
    inside = np.pad(np.ones((h, w)), padding)
    out_h, out_w = (
        (h + 2 * padding - kernel) // stride + 1,
        (w + 2 * padding - kernel) // stride + 1,
    )
    out = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        for j in range(out_w):
            rows, cols = (
                slice(i * stride, i * stride + kernel),
                slice(j * stride, j * stride + kernel),
            )
            window = padded[:, rows, cols]
            if reduce == "max":
                out[:, i, j] = window.max(axis=(1, 2))
            else:
                count = kernel * kernel if count_include_pad else inside[rows, cols].sum()
                out[:, i, j] = window.sum(axis=(1, 2)) / count
    return out


@pytest.mark.parametrize(
    "hw, kernel, stride, padding, count_include_pad",
    [
        ((8, 6), 2, None, 0, True),  # StarGAN v2 / FAN: the reshape-mean form
        ((7, 5), 2, None, 0, True),  # odd sizes drop the last row and column
        ((9, 9), 3, 2, 1, False),  # SEAN's multiscale discriminator
        ((8, 7), 3, 1, 1, False),  # FID Inception (TensorFlow's rule)
        ((8, 7), 3, 2, 1, True),
    ],
)
def test_avg_pool2d(hw, kernel, stride, padding, count_include_pad):
    x = np.random.default_rng(6).normal(size=(2, *hw, 3))
    got = torch_ops.avg_pool2d(x.astype(np.float32), kernel, stride, padding, count_include_pad)
    want = pool_ref(x, kernel, stride or kernel, padding, "avg", count_include_pad)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "hw, kernel, stride, padding",
    [((9, 8), 3, 2, 0), ((8, 7), 3, 1, 1), ((7, 9), 2, None, 0)],  # Inception; VGG, LPIPS
)
def test_max_pool2d(hw, kernel, stride, padding):
    x = np.random.default_rng(7).normal(size=(2, *hw, 3)).astype(np.float32)
    got = torch_ops.max_pool2d(x, kernel, stride, padding)
    np.testing.assert_array_equal(
        np.asarray(got), pool_ref(x, kernel, stride or kernel, padding, "max")
    )
