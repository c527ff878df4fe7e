"""The StyleGAN2 ops against direct float64 numpy references."""

import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.nn import ops


def upfirdn2d_reference(x, taps, up, down, pad, gain):
    """Literal definition: zero-insert, pad/crop, true 2-D convolution, keep every down-th."""
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    y = np.zeros((n, h * up, w * up, c))
    y[:, ::up, ::up] = x
    x0, x1, y0, y1 = pad
    y = np.pad(y, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)), (0, 0)))
    y = y[:, max(-y0, 0) : y.shape[1] - max(-y1, 0), max(-x0, 0) : y.shape[2] - max(-x1, 0)]
    f = np.outer(taps, taps).astype(np.float64) * gain
    k = f.shape[0]
    oh, ow = y.shape[1] - k + 1, y.shape[2] - k + 1
    out = np.zeros((n, oh, ow, c))
    for a in range(k):
        for b in range(k):
            out += y[:, a : a + oh, b : b + ow] * f[k - 1 - a, k - 1 - b]
    return out[:, ::down, ::down]


@pytest.mark.parametrize(
    "up,down,pad,gain",
    [
        (1, 1, (1, 2, 2, 1), 1.0),
        (2, 1, (2, 1, 2, 1), 4.0),  # the skip-path image up-sampler
        (1, 2, (1, 1, 1, 1), 1.0),  # discriminator skip down-sampler
        (1, 1, (2, 2, 2, 2), 1.0),  # blur before the stride-2 down conv
        (2, 1, (-1, 0, 0, -2), 4.0),  # negative pads crop
        (4, 2, (3, 0, 1, 2), 16.0),
        (1, 4, (0, 3, 3, 0), 1.0),
    ],
)
def test_upfirdn2d_matches_reference(up, down, pad, gain):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 7, 3)).astype(np.float32)
    taps = rng.uniform(0.2, 1.0, 4)  # asymmetric: catches a missing filter flip
    taps = (taps / taps.sum()).astype(np.float32)
    got = ops.upfirdn2d(jnp.asarray(x), taps, up=up, down=down, pad=pad, gain=gain)
    want = upfirdn2d_reference(x, taps, up, down, pad, gain)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_upsample_and_downsample_shapes_and_dc_gain():
    taps = ops.fir_filter()
    x = jnp.ones((1, 8, 8, 2))
    up = ops.upsample2d(x, taps)
    down = ops.downsample2d(x, taps)
    assert up.shape == (1, 16, 16, 2) and down.shape == (1, 4, 4, 2)
    # A constant image stays constant away from the borders (gain up² restores the DC level).
    np.testing.assert_allclose(np.asarray(up[0, 4:12, 4:12]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(down[0, 1:3, 1:3]), 1.0, rtol=1e-6)


def conv_transpose_reference(x, w_hwio, stride):
    """Transposed conv as the scatter it is: out[y*s + a] += x[y] * w[a]."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w_hwio, np.float64)
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    out = np.zeros((n, (h - 1) * stride + kh, (wd - 1) * stride + kw, o))
    for i in range(h):
        for j in range(wd):
            out[:, i * stride : i * stride + kh, j * stride : j * stride + kw] += np.einsum(
                "nc,abco->nabo", x[:, i, j], w
            )
    return out


def test_up_conv_is_transposed_conv_then_blur():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    taps = ops.fir_filter()
    got = ops.conv2d_resample(jnp.asarray(x), jnp.asarray(w), taps, up=2)
    t = conv_transpose_reference(x, w, 2)  # 2H + 1
    want = upfirdn2d_reference(t, taps, 1, 1, (1, 1, 1, 1), 4.0)
    assert got.shape == (2, 10, 10, 4)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_down_conv_is_blur_then_strided_conv():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    taps = ops.fir_filter()
    got = ops.conv2d_resample(jnp.asarray(x), jnp.asarray(w), taps, down=2)
    blurred = upfirdn2d_reference(x, taps, 1, 1, (2, 2, 2, 2), 1.0)
    want = np.zeros((2, 4, 4, 4))
    for i in range(4):
        for j in range(4):
            want[:, i, j] = np.einsum(
                "nabc,abco->no", blurred[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3], w
            )
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("up,k,demodulate", [(1, 3, True), (2, 3, True), (1, 1, False)])
def test_fused_and_unfused_modulated_conv_agree(up, k, demodulate):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((3, 8, 8, 6)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 6, 5)), jnp.float32)
    s = jnp.asarray(rng.uniform(0.5, 2.0, (3, 6)), jnp.float32)
    taps = ops.fir_filter()
    fused = ops.modulated_conv2d(x, w, s, demodulate=demodulate, up=up, taps=taps, fused=True)
    unfused = ops.modulated_conv2d(x, w, s, demodulate=demodulate, up=up, taps=taps, fused=False)
    assert fused.shape == (3, 8 * up, 8 * up, 5)
    np.testing.assert_allclose(np.asarray(fused), np.asarray(unfused), rtol=1e-5, atol=1e-5)
    # Per-sample weights really differ: sample 0 with sample 1's styles gives another output.
    swapped = ops.modulated_conv2d(x[:1], w, s[1:2], demodulate=demodulate, up=up, taps=taps)
    assert not np.allclose(np.asarray(swapped), np.asarray(fused[:1]), atol=1e-3)


def test_demodulated_output_has_unit_variance():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((4, 32, 32, 64)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 64, 32)), jnp.float32)
    s = jnp.asarray(rng.uniform(0.1, 3.0, (4, 64)), jnp.float32)  # wildly scaled styles
    y = ops.modulated_conv2d(x, w, s, demodulate=True, taps=ops.fir_filter())
    var = np.asarray(y[:, 1:-1, 1:-1]).var(axis=(1, 2))  # interior: no zero padding
    # Each channel's expected variance is exactly 1; 900 pixels estimate it to about ±5 %.
    np.testing.assert_allclose(var.mean(axis=1), 1.0, atol=0.03)
    np.testing.assert_allclose(var, 1.0, atol=0.25)
    raw = ops.modulated_conv2d(x, w, s, demodulate=False, taps=ops.fir_filter())
    assert np.asarray(raw).var() > 10  # without demodulation the scale is not controlled


def test_minibatch_stddev_matches_numpy():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 4, 4, 6)).astype(np.float32)
    got = np.asarray(ops.minibatch_stddev(jnp.asarray(x), group_size=4, num_channels=2))
    assert got.shape == (8, 4, 4, 8)
    np.testing.assert_array_equal(got[..., :6], x)
    g = x.astype(np.float64).reshape(4, 2, 4, 4, 2, 3)  # members strided by N/G = 2
    std = np.sqrt(g.var(axis=0) + 1e-8).mean(axis=(1, 2, 4))  # [2, F]
    for i in range(8):
        np.testing.assert_allclose(got[i, 0, 0, 6:], std[i % 2], rtol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        ops.minibatch_stddev(jnp.ones((6, 4, 4, 2)), group_size=4)


def test_bias_act_gain_and_clamp():
    x = jnp.asarray([-2.0, -0.5, 0.5, 300.0])
    y = ops.bias_act(x, jnp.asarray(1.0), "lrelu", clamp=256.0)
    pre = np.array([-1.0, 0.5, 1.5, 301.0])  # x + bias
    want = np.clip(np.where(pre >= 0, pre, 0.2 * pre) * np.sqrt(2), -256, 256)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-6)
    assert float(y[-1]) == 256.0
    with pytest.raises(ValueError, match="unknown activation"):
        ops.bias_act(x, act="gelu")
