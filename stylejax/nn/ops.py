"""Pure functions behind the StyleGAN2 layers: FIR resampling, bias + activation,
modulated convolution, minibatch standard deviation. All activations are NHWC and all
conv kernels HWIO."""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from stylejax.nn import conv

SQRT2 = math.sqrt(2.0)


def fir_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> np.ndarray:
    """1-D FIR taps normalised to sum 1; used separably (the 2-D filter is the outer product)."""
    f = np.asarray(taps, np.float64)
    return (f / f.sum()).astype(np.float32)


def upfirdn2d(
    x,
    taps,
    up: int = 1,
    down: int = 1,
    pad=(0, 0, 0, 0),
    gain: float = 1.0,
    flip_filter: bool = False,
):
    """Up-sample by zero insertion, pad, FIR-filter and down-sample an NHWC batch.

    Same semantics as NVIDIA's upfirdn2d: `pad` is (x0, x1, y0, y1) applied after zero
    insertion (negative values crop), the filter is separable (1-D `taps`, already
    normalised), `gain` multiplies the 2-D filter (use up**2 when up-sampling), and the
    operation is a true convolution unless `flip_filter` (symmetric filters don't care).
    On the CPU it is pads and strided slices (XLA:CPU runs the depthwise convolutions of the
    other form 25-100x slower: measured on [8, 64, 64, 32] and [4, 64, 64, 256], forward and
    gradient); GPU/TPU keep the convolution form. Both give the same values.
    """
    impl = _upfirdn2d_slices if jax.default_backend() == "cpu" else _upfirdn2d_conv
    return impl(x, taps, up, down, pad, gain, flip_filter)


def _upfirdn2d_conv(x, taps, up, down, pad, gain, flip_filter):
    """Each axis is one depthwise convolution: lhs dilation inserts the zeros, the (possibly
    negative) padding pads or crops, and the stride down-samples."""
    c = x.shape[-1]
    taps = jnp.asarray(taps, x.dtype) * jnp.asarray(math.sqrt(gain), x.dtype)
    if not flip_filter:
        taps = taps[::-1]  # lax convolutions are correlations
    k = taps.shape[0]
    x0, x1, y0, y1 = pad
    # Zero insertion appends up-1 zeros after the last sample too; lhs dilation does not.
    for axis, (p0, p1) in ((1, (y0, y1 + up - 1)), (2, (x0, x1 + up - 1))):
        kernel = jnp.broadcast_to(
            taps.reshape((k, 1, 1, 1) if axis == 1 else (1, k, 1, 1)),
            (k, 1, 1, c) if axis == 1 else (1, k, 1, c),
        )
        along = lambda v, rest: (v, rest) if axis == 1 else (rest, v)
        x = lax.conv_general_dilated(
            x,
            kernel,
            window_strides=along(down, 1),
            padding=along((p0, p1), (0, 0)),
            lhs_dilation=along(up, 1),
            feature_group_count=c,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
    return x


def _upfirdn2d_slices(x, taps, up, down, pad, gain, flip_filter):
    """Each axis is a pad (zero insertion and the pads in one) and a sum of strided slices."""
    taps = jnp.asarray(taps, x.dtype) * jnp.asarray(math.sqrt(gain), x.dtype)
    if not flip_filter:
        taps = taps[::-1]  # a true convolution: slices correlate
    k = len(taps)
    x0, x1, y0, y1 = pad
    zero = jnp.zeros((), x.dtype)
    for axis, (p0, p1) in ((1, (y0, y1)), (2, (x0, x1))):
        cfg = [(0, 0, 0)] * x.ndim
        # Zero insertion (up - 1 zeros after every sample, the last included), then the pads.
        cfg[axis] = (p0, p1 + up - 1, up - 1)
        x = lax.pad(x, zero, cfg)
        n_out = (x.shape[axis] - k) // down + 1
        acc = None
        for t in range(k):
            part = lax.slice_in_dim(x, t, t + (n_out - 1) * down + 1, down, axis)
            part = part * taps[t]
            acc = part if acc is None else acc + part
        x = acc
    return x


def upsample2d(x, taps, factor: int = 2):
    """The skip-path image up-sampler: pads (2, 1) for 4 taps and gain factor**2."""
    k = len(taps)
    p0 = (k + factor - 1) // 2
    p1 = (k - factor) // 2
    return upfirdn2d(x, taps, up=factor, pad=(p0, p1, p0, p1), gain=factor**2)


def downsample2d(x, taps, factor: int = 2):
    """Low-pass then keep every `factor`-th sample: pads (1, 1) for 4 taps."""
    k = len(taps)
    p0 = (k - factor + 1) // 2
    p1 = (k - factor) // 2
    return upfirdn2d(x, taps, down=factor, pad=(p0, p1, p0, p1))


def bias_act(
    x,
    bias=None,
    act: str = "linear",
    alpha: float = 0.2,
    gain: float | None = None,
    clamp: float | None = None,
):
    """Adds a per-channel bias, applies the activation, scales by `gain` (√2 for
    lrelu by default) and clamps to ±clamp when given (stylegan2-ada's conv_clamp)."""
    if bias is not None:
        x = x + bias.astype(x.dtype)
    if act == "lrelu":
        x = jnp.where(x >= 0, x, x * alpha)
        default_gain = SQRT2
    elif act == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unknown activation {act!r}; expected 'linear' or 'lrelu'")
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return x


def conv2d(
    x, kernel, stride: int = 1, padding=((0, 0), (0, 0)), lhs_dilation=(1, 1), groups: int = 1
):
    return conv.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(stride, stride),
        padding=padding,
        lhs_dilation=lhs_dilation,
        feature_group_count=groups,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def conv2d_resample(x, kernel, taps, up: int = 1, down: int = 1, groups: int = 1):
    """A 'same' convolution combined with FIR up- or down-sampling by 2, as in StyleGAN2.

    Up-sampling with a k×k kernel is a transposed convolution (stride 2) followed by the FIR
    blur, both with pads that keep the output at exactly 2H. The stored kernel is in the
    PyTorch-port orientation (rosinality / stylegan2-ada), i.e. already flipped relative to
    TensorFlow, so the dilated correlation below flips it back. Down-sampling blurs first,
    then convolves with stride 2. 1×1 kernels resample around the convolution instead.
    """
    kh, kw = kernel.shape[:2]
    if up == 1 and down == 1:
        ph, pw = kh // 2, kw // 2
        return conv2d(x, kernel, padding=((ph, ph), (pw, pw)), groups=groups)
    nt = len(taps)
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample does either up- or down-sampling, not both")
    if kh == 1 and kw == 1:
        if down > 1:
            return conv2d(downsample2d(x, taps, down), kernel, groups=groups)
        x = conv2d(x, kernel, groups=groups)
        return upsample2d(x, taps, up) if up > 1 else x
    if up > 1:
        # Transposed conv == correlation of the zero-inserted input with the flipped kernel.
        x = conv2d(
            x,
            kernel[::-1, ::-1],
            padding=((kh - 1, kh - 1), (kw - 1, kw - 1)),
            lhs_dilation=(up, up),
            groups=groups,
        )
        p = nt - up - (kh - 1)
        p0, p1 = (p + 1) // 2 + up - 1, p // 2 + 1
        return upfirdn2d(x, taps, pad=(p0, p1, p0, p1), gain=up**2)
    p = nt - down + (kh - 1)
    x = upfirdn2d(x, taps, pad=((p + 1) // 2, p // 2, (p + 1) // 2, p // 2))
    return conv2d(x, kernel, stride=down, groups=groups)


def modulated_conv2d(
    x,
    weight,
    styles,
    *,
    demodulate: bool = True,
    up: int = 1,
    taps=None,
    fused: bool = True,
    eps: float = 1e-8,
):
    """StyleGAN2's modulated convolution.

    x: [N, H, W, I]; weight: [kh, kw, I, O] (already scaled by its equalized-lr gain);
    styles: [N, I]. The weight is scaled per sample by the styles and, with `demodulate`,
    renormalised so each output channel has unit expected variance. `fused` runs one grouped
    convolution with per-sample weights; otherwise the activations are scaled before and
    after a shared convolution. Both compute the same function.
    """
    n, _, _, in_ch = x.shape
    kh, kw, _, out_ch = weight.shape
    weight = weight.astype(x.dtype)
    styles = styles.astype(x.dtype)
    dcoefs = None
    if demodulate:
        w = weight[None] * styles[:, None, None, :, None]  # [N, kh, kw, I, O]
        dcoefs = lax.rsqrt(jnp.sum(jnp.square(w), axis=(1, 2, 3)) + eps)  # [N, O]
    if not fused:
        x = x * styles[:, None, None, :]
        x = conv2d_resample(x, weight, taps, up=up)
        return x * dcoefs[:, None, None, :] if demodulate else x
    w = weight[None] * styles[:, None, None, :, None]
    if demodulate:
        w = w * dcoefs[:, None, None, None, :]
    # Batch folded into channels: group g uses sample g's kernel.
    x = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, x.shape[1], x.shape[2], n * in_ch)
    w = jnp.transpose(w, (1, 2, 3, 0, 4)).reshape(kh, kw, in_ch, n * out_ch)
    x = conv2d_resample(x, w, taps, up=up, groups=n)
    h, wd = x.shape[1], x.shape[2]
    return jnp.transpose(x.reshape(h, wd, n, out_ch), (2, 0, 1, 3))


def minibatch_stddev(x, group_size: int | None = 4, num_channels: int = 1, eps: float = 1e-8):
    """Appends the standard deviation over sample groups as extra channels.

    Group members are strided by N / G (sample i belongs to group i mod (N/G)), as in every
    official implementation; `group_size=None` uses the whole batch.
    """
    n, h, w, c = x.shape
    g = n if group_size is None else min(group_size, n)
    if n % g:
        raise ValueError(f"batch size {n} must be divisible by the mbstd group size {g}")
    f = num_channels
    y = x.reshape(g, n // g, h, w, f, c // f)
    y = y - y.mean(axis=0)
    y = jnp.sqrt(jnp.square(y).mean(axis=0) + eps)  # [N/G, H, W, F, C/F]
    y = y.mean(axis=(1, 2, 4))  # [N/G, F]
    y = jnp.tile(y, (g, 1))  # sample i gets group (i mod N/G)
    y = jnp.broadcast_to(y[:, None, None, :], (n, h, w, f)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


def normalize_2nd_moment(x, axis=-1, eps=1e-8):
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)
