"""PyTorch's resampling, pooling and normalisation rules on NHWC batches, for the networks
ported from torch code (pSp family, SEAN, L2M-GAN, FID Inception, LPIPS, VGG19).

Each function reproduces one torch call exactly, down to the choice of source pixels; the
jax.image and flax equivalents differ (half-pixel nearest, antialiased shrinking). Resizes
and adaptive pools are gathers with element-wise weights rather than matmuls, so no backend
lowers their precision. Sizes are an int (square) or (height, width).
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _bilinear_taps(in_size: int, out_size: int, align_corners: bool, positions_dtype):
    """Source indices (lo, hi) and weights of hi on one axis, computed in `positions_dtype`.
    Half-pixel source positions (dst + ½)·in/out − ½ clamp at 0, neighbours at the end."""
    dtype = np.dtype(positions_dtype).type
    dst = np.arange(out_size, dtype=dtype)
    if align_corners:
        src = dst * dtype((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        scale = dtype(in_size) / dtype(out_size)
        src = np.maximum(scale * (dst + dtype(0.5)) - dtype(0.5), dtype(0))
    lo = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    return lo, hi, (src - lo.astype(dtype)).astype(np.float32)


def resize_bilinear(x, size, align_corners: bool = False, positions_dtype=np.float64):
    """F.interpolate(x, size, mode='bilinear', align_corners=align_corners), no antialiasing
    (also when shrinking, unlike jax.image.resize; L2M's 256 → 32 masks depend on it).

    align_corners=True maps the corner pixels onto each other (pSp's FPN, FAN's heatmaps).
    `positions_dtype` is the float type the source positions are computed in: float64 is
    exact; float32 rounds them like torch's float32 kernel, which pytorch-fid's Inception
    resize needs to agree to ~4e-6 on 300 px axes."""
    for axis, out_size in zip((1, 2), _pair(size)):
        if x.shape[axis] == out_size:
            continue
        lo, hi, frac = _bilinear_taps(x.shape[axis], out_size, align_corners, positions_dtype)
        shape = [1, 1, 1, 1]
        shape[axis] = out_size
        frac = jnp.asarray(frac, x.dtype).reshape(shape)
        x = jnp.take(x, lo, axis=axis) * (1 - frac) + jnp.take(x, hi, axis=axis) * frac
    return x


def resize_nearest(x, size):
    """F.interpolate(x, size, mode='nearest'), torch's legacy nearest: source index
    floor(dst·in/out) (jax.image.resize uses half-pixel centres and changes SEAN's output by
    26 %). Whole-factor enlargements are repeats, whose gradient is a plain sum."""
    for axis, out_size in zip((1, 2), _pair(size)):
        in_size = x.shape[axis]
        if out_size % in_size == 0:
            x = jnp.repeat(x, out_size // in_size, axis=axis)
        else:
            x = jnp.take(x, (np.arange(out_size) * in_size) // out_size, axis=axis)
    return x


def instance_norm(x, eps: float = 1e-5):
    """F.instance_norm(x) / nn.InstanceNorm2d(affine=False): per sample and channel over
    H, W with the biased variance."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps)


def avg_pool2d(x, kernel: int, stride: int | None = None, padding: int = 0, count_include_pad=True):
    """F.avg_pool2d(x, kernel, stride, padding, count_include_pad=...) (floor mode).
    Unpadded pools with stride = kernel are a reshape and a mean (XLA:CPU runs those and
    their gradient faster than a reduce_window)."""
    stride = kernel if stride is None else stride
    if padding == 0 and stride == kernel:
        n, h, w, c = x.shape
        h, w = h // kernel, w // kernel
        x = x[:, : h * kernel, : w * kernel]
        return x.reshape(n, h, kernel, w, kernel, c).mean(axis=(2, 4))
    pads = ((padding, padding), (padding, padding))
    return nn.avg_pool(
        x, (kernel, kernel), (stride, stride), pads, count_include_pad=count_include_pad
    )


def max_pool2d(x, kernel: int, stride: int | None = None, padding: int = 0):
    """F.max_pool2d(x, kernel, stride, padding) (floor mode; padding never wins the max)."""
    stride = kernel if stride is None else stride
    pads = ((padding, padding), (padding, padding))
    return nn.max_pool(x, (kernel, kernel), (stride, stride), pads)


def _adaptive_windows(in_size: int, out_size: int):
    """Index table [out, k] and weights of PyTorch's adaptive pooling windows
    [floor(i·in/out), ceil((i+1)·in/out)) on one axis; short windows are padded with weight 0."""
    starts = [(i * in_size) // out_size for i in range(out_size)]
    ends = [-((-(i + 1) * in_size) // out_size) for i in range(out_size)]
    k = max(e - s for s, e in zip(starts, ends))
    index = np.zeros((out_size, k), np.int32)
    weight = np.zeros((out_size, k), np.float32)
    for i, (s, e) in enumerate(zip(starts, ends)):
        index[i, : e - s] = np.arange(s, e)
        weight[i, : e - s] = 1.0 / (e - s)
    return index, weight


def adaptive_avg_pool2d(x, out_size):
    """F.adaptive_avg_pool2d(x, out_size) / nn.AdaptiveAvgPool2d. Windows overlap when the
    sizes don't divide (188 → 112 in the ArcFace ID loss), so this is neither a resize nor a
    strided pool."""
    for axis, size in zip((1, 2), _pair(out_size)):
        if x.shape[axis] == size:
            continue
        index, weight = _adaptive_windows(x.shape[axis], size)
        gathered = jnp.take(x, index.reshape(-1), axis=axis)  # axis becomes out·k
        shape = list(x.shape)
        shape[axis : axis + 1] = list(index.shape)
        wshape = [1] * len(shape)
        wshape[axis : axis + 2] = list(weight.shape)
        x = jnp.sum(
            gathered.reshape(shape) * jnp.asarray(weight, x.dtype).reshape(wshape), axis + 1
        )
    return x
