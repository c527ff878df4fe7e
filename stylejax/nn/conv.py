"""Convolutions that XLA:CPU differentiates fast; XLA's own convolution elsewhere.

On this project's 2-core AVX2 machine XLA:CPU runs a stride-1 convolution, its input
gradient and its weight gradient at 50–190 GFLOP/s, but some forms fall off a cliff
(measured with `tools/benchmark.py convs`):

- the weight gradient of an input-dilated (transposed, up-sampling) convolution runs at
  1 GFLOP/s: 30 s for one 512-channel 3×3 layer at 64 px and batch 4;
- grouped convolutions (the fused modulated conv folds the batch into groups): weight
  gradients 3–20× slower than the same sums as batched matrix products (forward on a par);
- strided convolutions: their input gradient is an input-dilated convolution, so a
  gradient of that gradient (R1) hits the first cliff.

`conv_general_dilated` is a drop-in for `lax.conv_general_dilated` (flax's
`nn.Conv(conv_general_dilated=...)` takes it). With the CPU route it rewrites those forms
into stride-1 convolutions, pads, strided slices and batched dot products, which compute the
same function and whose derivatives of every order and mode (R1 and path length take
gradients of gradients; tests take forward-mode Jacobians) stay on XLA:CPU's fast paths.
Every other convolution, and every convolution on GPU/TPU, is XLA's.
"""

import contextlib
import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

NHWC = ("NHWC", "HWIO", "NHWC")
ROUTES = ("cpu", "xla")
ROUTE_ENV = "STYLEJAX_CONV_ROUTE"
_forced_route = None


@contextlib.contextmanager
def route(name: str):
    """Force the "cpu" rewrites or XLA's "xla" convolutions while tracing,
    on any backend: for side-by-side benchmarks and tests. Read at trace time, so it applies
    to functions traced inside the block."""
    global _forced_route
    if name not in ROUTES:
        raise ValueError(f"unknown convolution route {name!r}; expected one of {ROUTES}")
    previous, _forced_route = _forced_route, name
    try:
        yield
    finally:
        _forced_route = previous


def cpu_route() -> bool:
    """Whether convolutions take the CPU rewrites: inside `route`, else as
    $STYLEJAX_CONV_ROUTE says ("cpu" or "xla"), else on the CPU backend only."""
    forced = _forced_route or os.environ.get(ROUTE_ENV) or None
    if forced is not None:
        if forced not in ROUTES:
            raise ValueError(f"{ROUTE_ENV}={forced!r}: expected one of {ROUTES}")
        return forced == "cpu"
    return jax.default_backend() == "cpu"


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """`lax.conv_general_dilated`, rewritten on the CPU route for 2-D NHWC/HWIO convolutions
    that are transposed (input-dilated), grouped or strided (kernels wider than 1×1)."""
    xla = lambda: lax.conv_general_dilated(  # noqa: E731
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if not (
        cpu_route()
        and lhs.ndim == 4
        and _is_nhwc(lhs.shape, rhs.shape, dimension_numbers)
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and batch_group_count == 1
        and preferred_element_type is None
    ):
        return xla()
    strides = tuple(window_strides)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    padding = tuple(tuple(p) for p in padding)
    dilation = tuple(lhs_dilation or (1, 1))
    if dilation != (1, 1):
        if strides != (1, 1):
            return xla()
        return transposed_as_phases(lhs, rhs, padding, dilation, feature_group_count, precision)
    if feature_group_count > 1:
        return grouped_as_matmuls(lhs, rhs, strides, padding, feature_group_count, precision)
    if strides != (1, 1) and rhs.shape[:2] != (1, 1):
        return strided_as_phases(lhs, rhs, strides, padding, precision)
    if _wide(lhs.shape, rhs.shape):
        return conv_matmul_weight_grad(lhs, rhs, padding, precision)
    return xla()


# XLA:CPU's weight gradient of a wide stride-1 convolution runs at a half to a third of the
# speed of the same sums as one matrix product per kernel tap, measured on this project's
# 2-core CPU while other jobs ran: 256 channels at 64 px 23 against 41 GFLOP/s, 128 channels
# 6 against 17; at 64 channels and fewer the products lose. Forward and input gradient stay
# XLA's, which are faster. (The wide64 training step: 0.34 -> 0.42 img/s, same conditions.)
WIDE_MIN_CHANNELS = 128
WIDE_MIN_PIXELS = 32 * 32


def _wide(lhs_shape, rhs_shape) -> bool:
    kh, kw, cin, cout = rhs_shape
    pixels = lhs_shape[1] * lhs_shape[2]
    return (kh, kw) != (1, 1) and min(cin, cout) >= WIDE_MIN_CHANNELS and pixels >= WIDE_MIN_PIXELS


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def conv_matmul_weight_grad(x, kernel, padding, precision=None):
    """A stride-1 convolution computed by XLA, whose kernel tangent (and so, transposed, its
    weight gradient) is one matrix product per tap (grouped_as_matmuls with one group). A JVP
    rule rather than a VJP, so forward mode and every higher order still work."""
    return lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=NHWC, precision=precision
    )


def _conv_matmul_weight_grad_jvp(padding, precision, primals, tangents):
    x, kernel = primals
    dx, dkernel = tangents
    y = conv_matmul_weight_grad(x, kernel, padding, precision)
    terms = []  # zero tangents stay symbolic: no product with a zero kernel tangent
    if not isinstance(dx, SymbolicZero):
        terms.append(
            lax.conv_general_dilated(
                dx, kernel, (1, 1), padding, dimension_numbers=NHWC, precision=precision
            )
        )
    if not isinstance(dkernel, SymbolicZero):
        terms.append(grouped_as_matmuls(x, dkernel, (1, 1), padding, 1, precision))
    return y, sum(terms[1:], terms[0])


conv_matmul_weight_grad.defjvp(_conv_matmul_weight_grad_jvp, symbolic_zeros=True)


def _is_nhwc(lhs_shape, rhs_shape, dimension_numbers) -> bool:
    if dimension_numbers is None:  # lax's default is NCHW/OIHW
        return False
    given = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
    return given == lax.conv_dimension_numbers(lhs_shape, rhs_shape, NHWC)


def _pad(x, padding):
    """Zero-pads (negative values crop) the two spatial axes of an NHWC batch."""
    zero = jnp.zeros((), x.dtype)
    return lax.pad(x, zero, [(0, 0, 0), (*padding[0], 0), (*padding[1], 0), (0, 0, 0)])


def grouped_as_matmuls(x, kernel, strides, padding, groups, precision=None):
    """A grouped convolution as a sum over the kernel taps of batched (per-group) matrix
    products of strided slices of the padded input; a depthwise one as a sum of
    per-channel products (2× faster backward than 1×1 matmuls, 4–11× than XLA's)."""
    n = x.shape[0]
    kh, kw, group_in, out = kernel.shape
    group_out = out // groups
    x = _pad(x, padding)
    (sh, sw), (hp, wp) = strides, x.shape[1:3]
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    if group_in == 1 and group_out == 1:  # depthwise: a product per tap, no matmul at all
        y = None
        for a in range(kh):
            for b in range(kw):
                part = x[:, a : a + (ho - 1) * sh + 1 : sh, b : b + (wo - 1) * sw + 1 : sw]
                part = part * kernel[a, b, 0]
                y = part if y is None else y + part
        return y
    # Groups leading, so each product is a plain batched matmul (one transpose each way).
    x = x.reshape(n, hp, wp, groups, group_in).transpose(3, 0, 1, 2, 4)
    kernel = kernel.reshape(kh, kw, group_in, groups, group_out).transpose(0, 1, 3, 2, 4)
    y = None
    for a in range(kh):
        for b in range(kw):
            part = x[:, :, a : a + (ho - 1) * sh + 1 : sh, b : b + (wo - 1) * sw + 1 : sw]
            part = jnp.einsum("gnhwi,gio->gnhwo", part, kernel[a, b], precision=precision)
            y = part if y is None else y + part
    return y.transpose(1, 2, 3, 0, 4).reshape(n, ho, wo, out)


def strided_as_phases(x, kernel, strides, padding, precision=None):
    """A strided convolution as the sum of one stride-1 convolution per input phase
    (x[b::stride] with kernel[b::stride]). Its input gradient is then a stride-1
    convolution too, not XLA's input-dilated one, whose weight gradient (R1 takes it) runs
    at 1 GFLOP/s."""
    x = _pad(x, padding)
    kh, kw = kernel.shape[:2]
    (sh, sw), (hp, wp) = strides, x.shape[1:3]
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    y = None
    for a in range(min(sh, kh)):
        for b in range(min(sw, kw)):
            sub = kernel[a::sh, b::sw]
            part = x[:, a::sh, b::sw][:, : ho + sub.shape[0] - 1, : wo + sub.shape[1] - 1]
            part = conv_general_dilated(
                part, sub, (1, 1), ((0, 0), (0, 0)), dimension_numbers=NHWC, precision=precision
            )
            y = part if y is None else y + part
    return y


def _phase_taps(size, kernel_size, stride, pad_lo, pad_hi):
    """One axis of an input-dilated correlation, split into `stride` output phases.

    Output o = stride·r + a correlates the undilated input at r + d with kernel tap
    t = stride·d + pad_lo − a, for the d where 0 ≤ t < kernel_size. Returns the undilated
    input's (lo, hi) padding, per phase (first d offset into the padded input, taps), the
    rows per phase and the output length."""
    out_len = (size - 1) * stride + 1 + pad_lo + pad_hi - kernel_size + 1
    rows = -(-out_len // stride)
    d0 = -(pad_lo // stride)
    d1 = (kernel_size + stride - 2 - pad_lo) // stride
    phases = []
    for a in range(stride):
        ds = [d for d in range(d0, d1 + 1) if 0 <= stride * d + pad_lo - a < kernel_size]
        phases.append((ds[0] - d0 if ds else 0, [stride * d + pad_lo - a for d in ds]))
    return (-d0, rows - 1 + d1 - (size - 1)), phases, rows, out_len


def transposed_as_phases(x, kernel, padding, dilation, groups=1, precision=None):
    """An input-dilated (transposed) convolution as one stride-1 convolution of the
    undilated input per output phase, interleaved (depth to space): no multiply by an
    inserted zero. A 3×3 kernel at stride 2 gives 2×2, 2×1, 1×2 and 1×1 phase kernels; in
    one convolution padded to 2×2 taps they ran 2× slower backward (16/9 of the work and a
    slower weight gradient)."""
    n, h, w, _ = x.shape
    out = kernel.shape[3]
    pad_h, phases_h, rows_h, len_h = _phase_taps(h, kernel.shape[0], dilation[0], *padding[0])
    pad_w, phases_w, rows_w, len_w = _phase_taps(w, kernel.shape[1], dilation[1], *padding[1])
    x = _pad(x, (pad_h, pad_w))
    rows = []
    for u0, taps_h in phases_h:
        row = []
        for v0, taps_w in phases_w:
            if not (taps_h and taps_w):
                row.append(jnp.zeros((n, rows_h, rows_w, out), x.dtype))
                continue
            part = x[:, u0 : u0 + rows_h + len(taps_h) - 1, v0 : v0 + rows_w + len(taps_w) - 1]
            phase_kernel = kernel[np.array(taps_h)[:, None], np.array(taps_w)[None, :]]
            row.append(
                conv_general_dilated(
                    part,
                    phase_kernel,
                    (1, 1),
                    ((0, 0), (0, 0)),
                    dimension_numbers=NHWC,
                    feature_group_count=groups,
                    precision=precision,
                )
            )
        rows.append(jnp.stack(row, axis=3))  # [n, rows_h, rows_w, phases_w, out]
    y = jnp.stack(rows, axis=2)  # [n, rows_h, phases_h, rows_w, phases_w, out]
    y = y.reshape(n, rows_h * dilation[0], rows_w * dilation[1], out)
    return y[:, :len_h, :len_w]


# flax's nn.Conv computing with `conv_general_dilated` (same parameters and names).
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
