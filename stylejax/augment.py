"""ADA: the adaptive discriminator augmentation pipeline of StyleGAN2-ADA (Karras et al. 2020).

The same transforms, probabilities, strengths, order of operations and float32 arithmetic as
stylegan2-ada-pytorch's `training/augment.py` AugmentPipe, in jax on NHWC float images in
[-1, 1]: differentiable with respect to the images, and jit-friendly with a traced `p` (the
adaptive probability changes without recompiling; every shape is static).

    spec = AugmentSpec.preset("bgc")
    images = augment(images, p, rng, spec)                    # draws sampled from rng
    images = apply(images, p, sample_draws(rng, spec, images.shape), spec)   # the same

`apply` takes the random draws explicitly (raw uniforms and normals, in the official pipe's
order, see `draw_plan`), which is what lets tests/test_augment.py feed it the draws recorded
from the official pipe.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from stylejax.nn import conv, ops

F32 = jnp.float32
HIGHEST = lax.Precision.HIGHEST

# Symlet low-pass filters, taps as the official code lists them: sym6 band-limits the
# geometric resampling, sym2 builds the image filter's frequency bands.
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip

# The official train.py's --augpipe choices (augpipe_specs); "bgc" is its default.
_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
PRESETS = {
    "blit": _BLIT,
    "geom": _GEOM,
    "color": _COLOR,
    "filter": dict(imgfilter=1),
    "noise": dict(noise=1),
    "cutout": dict(cutout=1),
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1, "cutout": 1},
}


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    """Probability multipliers (0 = off; the transform's probability is multiplier * p) and
    strengths, with the official defaults. Frozen, so it can be a static jit argument."""

    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0  # integer translation
    xint_max: float = 0.125  # its range, relative to the image size
    scale: float = 0.0  # isotropic scaling
    rotate: float = 0.0  # arbitrary rotation
    aniso: float = 0.0  # anisotropic scaling
    xfrac: float = 0.0  # fractional translation
    scale_std: float = 0.2  # log2 standard deviation
    rotate_max: float = 1.0  # 1 = full circle
    aniso_std: float = 0.2  # log2 standard deviation
    xfrac_std: float = 0.125  # relative to the image size
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    brightness_std: float = 0.2
    contrast_std: float = 0.5  # log2
    hue_max: float = 1.0  # 1 = full circle
    saturation_std: float = 1.0  # log2
    imgfilter: float = 0.0
    imgfilter_bands: tuple = (1.0, 1.0, 1.0, 1.0)  # per-band multipliers, low to high
    imgfilter_std: float = 1.0  # log2 standard deviation of a band's gain
    noise: float = 0.0
    cutout: float = 0.0
    noise_std: float = 0.1
    cutout_size: float = 0.5  # relative to the image size

    @classmethod
    def preset(cls, name: str, **overrides) -> "AugmentSpec":
        if name not in PRESETS:
            raise ValueError(
                f"unknown augmentation preset {name!r}; expected one of {sorted(PRESETS)}"
            )
        return cls(**{**PRESETS[name], **overrides})

    @property
    def geometric(self) -> bool:
        return any(
            (self.xflip, self.rotate90, self.xint, self.scale, self.rotate, self.aniso, self.xfrac)
        )


# ---------------------------------------------------------------------------------------------
# Random draws


def draw_plan(spec: AugmentSpec, shape) -> list[tuple[str, str, tuple]]:
    """(name, "uniform" | "normal", shape) of every draw, in the order the official pipe draws.

    Most transforms draw a value and then a uniform `NAME_p` that is compared with
    multiplier * p; hue and saturation are skipped for 1-channel images, as there.
    """
    b, h, w, c = shape
    plan = []

    def add(name, kind, *dims, prob=True):
        plan.append((name, kind, (b, *dims)))
        if prob:
            plan.append((name + "_p", "uniform", (b,)))

    U, N = "uniform", "normal"
    for name, kind, dims, on in (
        ("xflip", U, (), spec.xflip),
        ("rotate90", U, (), spec.rotate90),
        ("xint", U, (2,), spec.xint),
        ("scale", N, (), spec.scale),
        ("rotate_pre", U, (), spec.rotate),
        ("aniso", N, (), spec.aniso),
        ("rotate_post", U, (), spec.rotate),
        ("xfrac", N, (2,), spec.xfrac),
        ("brightness", N, (), spec.brightness),
        ("contrast", N, (), spec.contrast),
        ("lumaflip", U, (), spec.lumaflip),
        ("hue", U, (), spec.hue and c > 1),
        ("saturation", N, (), spec.saturation and c > 1),
    ):
        if on:
            add(name, kind, *dims)
    if spec.imgfilter:
        for i in range(len(spec.imgfilter_bands)):
            add(f"imgfilter{i}", N)
    if spec.noise:
        add("noise_sigma", N)
        add("noise", N, h, w, c, prob=False)
    if spec.cutout:
        add("cutout_p", U, prob=False)  # its probability draw comes first here
        add("cutout_center", U, 2, prob=False)
    return plan


def sample_draws(rng, spec: AugmentSpec, shape) -> dict:
    plan = draw_plan(spec, shape)
    keys = jax.random.split(rng, max(len(plan), 1))
    sample = {"uniform": jax.random.uniform, "normal": jax.random.normal}
    return {name: sample[kind](k, dims, F32) for k, (name, kind, dims) in zip(keys, plan)}


# ---------------------------------------------------------------------------------------------
# Matrices (batched [b, n, n], float32, composed in the official order)


def _matrix(*rows):
    entries = [jnp.asarray(e, F32) for row in rows for e in row]
    shape = jnp.broadcast_shapes(*(e.shape for e in entries))
    n = len(rows[0])
    return jnp.stack([jnp.broadcast_to(e, shape) for e in entries], -1).reshape(
        *shape, len(rows), n
    )


def _mm(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


def _translate2d(tx, ty):
    return _matrix([1, 0, tx], [0, 1, ty], [0, 0, 1])


def _scale2d(sx, sy):
    return _matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1])


def _rotate2d(theta):
    return _matrix(
        [jnp.cos(theta), jnp.sin(-theta), 0], [jnp.sin(theta), jnp.cos(theta), 0], [0, 0, 1]
    )


def _rotate3d(v, theta):
    vx, vy, vz = v[0], v[1], v[2]
    s, c = jnp.sin(theta), jnp.cos(theta)
    cc = 1 - c
    return _matrix(
        [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
        [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
        [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
        [0, 0, 0, 1],
    )


# ---------------------------------------------------------------------------------------------
# The pipeline


def augment(images, p, rng, spec: AugmentSpec):
    """Augments an NHWC float batch with probability multiplier p (a traced scalar is fine)."""
    return apply(images, p, sample_draws(rng, spec, images.shape), spec)


def apply(images, p, draws: dict, spec: AugmentSpec):
    """The official AugmentPipe.forward with its random draws given (see `draw_plan`)."""
    images = jnp.asarray(images, F32)
    p = jnp.asarray(p, F32)
    # Full float32 in every matrix product and filter (GPUs would use TF32 by default).
    with jax.default_matmul_precision("highest"):
        if spec.geometric:
            images = _geometric(images, _geometric_matrix(p, draws, spec, images.shape))
        images = _colour(images, p, draws, spec)
        if spec.imgfilter:
            images = _imgfilter(images, p, draws, spec)
        if spec.noise:
            sigma = jnp.abs(draws["noise_sigma"]) * spec.noise_std
            sigma = _chosen(draws, "noise_sigma", spec.noise * p, sigma, 0.0)
            images = images + draws["noise"] * sigma[:, None, None, None]
        if spec.cutout:
            images = _cutout(images, p, draws, spec)
    return images


def _chosen(draws, name, prob, value, otherwise):
    """The official torch.where(rand < probability, value, otherwise), per sample."""
    u = draws[name + "_p"]
    value = jnp.asarray(value, F32)
    u = u.reshape(u.shape + (1,) * (value.ndim - u.ndim))
    return jnp.where(u < prob, value, jnp.asarray(otherwise, F32))


def _geometric_matrix(p, draws, spec, shape):
    """G_inv, mapping output pixels to input pixels (centred coordinates), as composed there."""
    _, h, w, _ = shape
    g = jnp.eye(3, dtype=F32)
    if spec.xflip:
        i = _chosen(draws, "xflip", spec.xflip * p, jnp.floor(draws["xflip"] * 2), 0.0)
        g = _mm(g, _scale2d(1 / (1 - 2 * i), 1))
    if spec.rotate90:
        i = _chosen(draws, "rotate90", spec.rotate90 * p, jnp.floor(draws["rotate90"] * 4), 0.0)
        g = _mm(g, _rotate2d(-(F32(-np.pi / 2) * i)))
    if spec.xint:
        t = _chosen(draws, "xint", spec.xint * p, (draws["xint"] * 2 - 1) * F32(spec.xint_max), 0.0)
        g = _mm(g, _translate2d(-jnp.round(t[:, 0] * w), -jnp.round(t[:, 1] * h)))
    if spec.scale:
        s = jnp.exp2(draws["scale"] * F32(spec.scale_std))
        s = _chosen(draws, "scale", spec.scale * p, s, 1.0)
        g = _mm(g, _scale2d(1 / s, 1 / s))
    # Rotation happens before and after the anisotropic scaling, each with p_rot, so that
    # P(either) = rotate * p.
    p_rot = 1 - jnp.sqrt(jnp.clip(1 - spec.rotate * p, 0, 1))
    for name in ("rotate_pre", "aniso", "rotate_post"):
        if name == "aniso" and spec.aniso:
            s = jnp.exp2(draws["aniso"] * F32(spec.aniso_std))
            s = _chosen(draws, "aniso", spec.aniso * p, s, 1.0)
            g = _mm(g, _scale2d(1 / s, 1 / (1 / s)))
        elif name != "aniso" and spec.rotate:
            theta = (draws[name] * 2 - 1) * F32(np.pi) * F32(spec.rotate_max)
            g = _mm(g, _rotate2d(_chosen(draws, name, p_rot, theta, 0.0)))
    if spec.xfrac:
        t = _chosen(draws, "xfrac", spec.xfrac * p, draws["xfrac"] * F32(spec.xfrac_std), 0.0)
        g = _mm(g, _translate2d(-(t[:, 0] * w), -(t[:, 1] * h)))
    return jnp.broadcast_to(g, (shape[0], 3, 3))


def _geometric(images, g_inv):
    """Reflect-pad, up-sample 2x with sym6, bilinear-sample through G_inv, down-sample.

    The official pad is data dependent (the batch's transformed corners plus the filter's
    reach, at most size - 1 per side); shapes must be static here, so the image is
    reflect-padded by the most and everything outside the official pad is zeroed, which is
    what the official up-sampler and grid_sample (zeros outside) see. sym6 is not symmetric,
    so a flip or 90-degree turn also shifts the image by about 0.2 px, there as here.
    """
    b, h, w, c = images.shape
    k = len(SYM6)
    hz_pad = k // 4
    cx, cy = (w - 1) / 2, (h - 1) / 2
    corners = jnp.asarray([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], F32).T
    cp = _mm(g_inv, corners)  # [b, xyz, corner]
    xs, ys = cp[:, 0, :], cp[:, 1, :]
    margin = jnp.stack([jnp.max(-xs), jnp.max(-ys), jnp.max(xs), jnp.max(ys)])
    margin = margin + jnp.asarray([hz_pad * 2 - cx, hz_pad * 2 - cy] * 2, F32)
    margin = jnp.minimum(jnp.maximum(margin, 0), jnp.asarray([w - 1, h - 1] * 2, F32))
    mx0, my0, mx1, my1 = jnp.ceil(margin).astype(jnp.int32)
    g_inv = _mm(_translate2d((mx0 - mx1) / 2, (my0 - my1) / 2), g_inv)
    # Which canvas rows/columns (the image reflect-padded by size - 1) lie in the official pad.
    row, col = jnp.arange(3 * h - 2) - (h - 1), jnp.arange(3 * w - 2) - (w - 1)
    keep_y = ((row >= -my0) & (row < h + my1)).astype(F32)
    keep_x = ((col >= -mx0) & (col < w + mx1)).astype(F32)

    taps = np.asarray(SYM6, np.float32)
    taps = taps / taps.sum()  # normalised in float32, as upfirdn2d.setup_filter does
    if conv.cpu_route():
        # XLA:CPU differentiates the FIR filter's pads and slices ~10x slower than it runs
        # them; small matrices per axis (pad, mask and up-sample in one) are fast both ways.
        canvas = _along(
            _along(images, _upsampler(h, taps, keep_y), 1), _upsampler(w, taps, keep_x), 2
        )
    else:
        canvas = jnp.pad(images, ((0, 0), (h - 1, h - 1), (w - 1, w - 1), (0, 0)), mode="reflect")
        canvas = ops.upsample2d(canvas * keep_y[:, None, None] * keep_x[:, None], taps)
    g_inv = _mm(_mm(_scale2d(2, 2), g_inv), _scale2d(0.5, 0.5))
    g_inv = _mm(_mm(_translate2d(-0.5, -0.5), g_inv), _translate2d(0.5, 0.5))

    # The official up-sampled image is the canvas window starting at 2 * (size - 1 - m0).
    up_w = 2 * (w + mx0 + mx1)
    up_h = 2 * (h + my0 + my1)
    out_w, out_h = (w + hz_pad * 2) * 2, (h + hz_pad * 2) * 2
    g_inv = _mm(_scale2d(2 / up_w.astype(F32), 2 / up_h.astype(F32)), g_inv)
    g_inv = _mm(g_inv, _scale2d(np.float32(1 / (2 / out_w)), np.float32(1 / (2 / out_h))))
    gx, gy = _affine_grid(g_inv, out_h, out_w)
    images = _grid_sample(canvas, gx, gy, up_w, up_h, 2 * (w - 1 - mx0), 2 * (h - 1 - my0))

    # Down-sample with the flipped filter after cropping hz_pad * 2 - 5 up-sampled pixels
    # per side (the official padding=-hz_pad*2 on top of down-sampling's own 5).
    crop = hz_pad * 2 - (k - 1) // 2
    if conv.cpu_route():
        images = _along(images, _toeplitz(taps, h, out_h, 2, crop), 1)
        return _along(images, _toeplitz(taps, w, out_w, 2, crop), 2)
    images = images[:, crop : out_h - crop, crop : out_w - crop]
    return ops.upfirdn2d(images, taps, down=2, flip_filter=True)


def _upsampler(n, taps, keep):
    """[2 (3n - 2), n]: along one axis, reflect-pad by n - 1, zero where not `keep`, then
    upsample2d (zero insertion, pads (k + 1) // 2 and (k - 2) // 2, gain 2 per axis)."""
    k = len(taps)
    up = 2 * _toeplitz(taps, 3 * n - 2, 2 * (3 * n - 2), 2, (k + 1) // 2 - k + 1).T
    return _mm(up * keep, _reflect(n, n - 1))


def _toeplitz(taps, rows, cols, step, offset):
    """M[..., i, j] = taps[..., j - step * i - offset] (zero off the filter): a FIR filter
    (correlation) with stride `step` as a matrix; `taps` may carry a batch axis."""
    t = np.arange(cols)[None, :] - step * np.arange(rows)[:, None] - offset
    inside = (t >= 0) & (t < taps.shape[-1])
    return jnp.where(
        inside, jnp.take(jnp.asarray(taps), np.clip(t, 0, taps.shape[-1] - 1), axis=-1), 0
    )


def _reflect(n, pad):
    """[n + 2 pad, n]: reflect padding (no edge repeat, torch's "reflect") as a matrix."""
    return jnp.asarray(np.eye(n, dtype=np.float32)[np.pad(np.arange(n), pad, mode="reflect")])


def _along(x, m, axis):
    """Multiplies NHWC x's axis 1 (rows) or 2 (columns) by m: [out, in] or [b, out, in]."""
    batch = "b" if m.ndim == 3 else ""
    spec = {1: "bjwc->biwc", 2: "bhjc->bhic"}[axis]
    return jnp.einsum(f"{batch}ij,{spec}", m, x, precision=HIGHEST)


def _affine_grid(theta, out_h, out_w):
    """torch's affine_grid (align_corners=False): normalised sampling positions [b, h, w]."""

    def base(n):  # torch: linspace(-1, 1, n) * (n - 1) / n, in float32
        return np.linspace(-1, 1, n).astype(np.float32) * np.float32(n - 1) / np.float32(n)

    x = jnp.asarray(base(out_w))[None, None, :]
    y = jnp.asarray(base(out_h))[None, :, None]
    t = theta[:, :2, :, None, None]
    gx = x * t[:, 0, 0] + y * t[:, 0, 1] + t[:, 0, 2]
    gy = x * t[:, 1, 0] + y * t[:, 1, 1] + t[:, 1, 2]
    return gx, gy


def _grid_sample(canvas, gx, gy, size_w, size_h, off_x, off_y):
    """torch's grid_sample (bilinear, zeros outside, align_corners=False) of the size_h x
    size_w window of `canvas` that starts at (off_y, off_x)."""
    b, hc, wc, c = canvas.shape
    ix = (gx + 1) * (size_w.astype(F32) / 2) - 0.5
    iy = (gy + 1) * (size_h.astype(F32) / 2) - 0.5
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    wx, wy = ix - x0, iy - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    flat = canvas.reshape(b, hc * wc, c)

    def corner(xi, yi, weight):
        inside = (xi >= 0) & (xi < size_w) & (yi >= 0) & (yi < size_h)
        index = jnp.clip(yi + off_y, 0, hc - 1) * wc + jnp.clip(xi + off_x, 0, wc - 1)
        v = jnp.take_along_axis(flat, index.reshape(b, -1, 1), axis=1).reshape(*xi.shape, c)
        return jnp.where(inside[..., None], v, 0.0) * weight[..., None]

    return (
        corner(x0, y0, (1 - wy) * (1 - wx))
        + corner(x0 + 1, y0, (1 - wy) * wx)
        + corner(x0, y0 + 1, wy * (1 - wx))
        + corner(x0 + 1, y0 + 1, wy * wx)
    )


def _colour(images, p, draws, spec):
    """Brightness, contrast, luma flip, hue and saturation as one 4x4 matrix per sample."""
    b, h, w, c = images.shape
    eye = jnp.eye(4, dtype=F32)
    m = eye
    if spec.brightness:
        v = _chosen(
            draws,
            "brightness",
            spec.brightness * p,
            draws["brightness"] * F32(spec.brightness_std),
            0.0,
        )
        m = _mm(_matrix([1, 0, 0, v], [0, 1, 0, v], [0, 0, 1, v], [0, 0, 0, 1]), m)
    if spec.contrast:
        v = jnp.exp2(draws["contrast"] * F32(spec.contrast_std))
        v = _chosen(draws, "contrast", spec.contrast * p, v, 1.0)
        m = _mm(_matrix([v, 0, 0, 0], [0, v, 0, 0], [0, 0, v, 0], [0, 0, 0, 1]), m)
    luma = jnp.asarray(np.asarray([1, 1, 1, 0]) / np.sqrt(3), F32)  # the luma axis
    vv = jnp.outer(luma, luma)
    if spec.lumaflip:
        i = _chosen(draws, "lumaflip", spec.lumaflip * p, jnp.floor(draws["lumaflip"] * 2), 0.0)
        m = _mm(eye - 2 * vv * i[:, None, None], m)  # Householder reflection
    if spec.hue and c > 1:
        theta = (draws["hue"] * 2 - 1) * F32(np.pi) * F32(spec.hue_max)
        m = _mm(_rotate3d(luma, _chosen(draws, "hue", spec.hue * p, theta, 0.0)), m)
    if spec.saturation and c > 1:
        s = jnp.exp2(draws["saturation"] * F32(spec.saturation_std))
        s = _chosen(draws, "saturation", spec.saturation * p, s, 1.0)
        m = _mm(vv + (eye - vv) * s[:, None, None], m)
    if m is eye:
        return images
    if c == 3:
        return (
            jnp.einsum("bij,bhwj->bhwi", m[:, :3, :3], images, precision=HIGHEST)
            + m[:, None, None, :3, 3]
        )
    if c == 1:
        m = jnp.mean(m[:, :3, :], axis=1)  # [b, 4]
        return images * jnp.sum(m[:, :3], axis=1)[:, None, None, None] + m[:, None, None, 3:]
    raise ValueError(
        f"colour augmentation needs RGB (3 channels) or L (1 channel) images, got {c} channels"
    )


def filter_bank(bands: int = 4) -> np.ndarray:
    """[bands, taps] zero-phase filters splitting the spectrum into octaves (low to high),
    from sym2's low-pass H(z) and high-pass H(-z); the bands sum to the identity filter."""
    lo = np.asarray(SYM2)
    hi = lo * (-1) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2  # H(z) H(1/z) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(bands, 1)
    for i in range(1, bands):
        # Stretch the finer bands by 2 (zero insertion), low-pass them, add band i's high-pass.
        stretched = np.zeros((bands, bank.shape[1] * 2 - 1))
        stretched[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in stretched])
        mid = bank.shape[1] // 2
        bank[i, mid - hi2.size // 2 : mid + hi2.size // 2 + 1] += hi2
    return bank.astype(np.float32)


def _imgfilter(images, p, draws, spec):
    """Random gains per frequency band (power-normalised), applied as one separable filter."""
    b, h, w, c = images.shape
    bank = filter_bank(len(spec.imgfilter_bands))
    bands = bank.shape[0]
    expected_power = jnp.asarray(np.array([10, 1, 1, 1]) / 13, F32)  # 1/f spectrum
    g = jnp.ones((b, bands), F32)
    for i, band_strength in enumerate(spec.imgfilter_bands):
        t_i = jnp.exp2(draws[f"imgfilter{i}"] * F32(spec.imgfilter_std))
        t_i = _chosen(draws, f"imgfilter{i}", spec.imgfilter * p * band_strength, t_i, 1.0)
        t = jnp.ones((b, bands), F32).at[:, i].set(t_i)
        t = t / jnp.sqrt(jnp.sum(expected_power * jnp.square(t), axis=-1, keepdims=True))
        g = g * t
    taps = _mm(g, jnp.asarray(bank))  # [b, taps]
    # Per-sample filters (reflect padding included) as matrices: along x first, then y.
    k = taps.shape[1]
    images = _along(images, _mm(_toeplitz(taps, w, w + k - 1, 1, 0), _reflect(w, k // 2)), 2)
    return _along(images, _mm(_toeplitz(taps, h, h + k - 1, 1, 0), _reflect(h, k // 2)), 1)


def _cutout(images, p, draws, spec):
    b, h, w, c = images.shape
    size = _chosen(draws, "cutout", spec.cutout * p, jnp.full((b,), spec.cutout_size, F32), 0.0)
    center = draws["cutout_center"]
    x = (jnp.arange(w, dtype=F32) + 0.5) / w
    y = (jnp.arange(h, dtype=F32) + 0.5) / h
    mask_x = jnp.abs(x[None, :] - center[:, :1]) >= size[:, None] / 2  # [b, w]
    mask_y = jnp.abs(y[None, :] - center[:, 1:]) >= size[:, None] / 2  # [b, h]
    return images * (mask_y[:, :, None] | mask_x[:, None, :]).astype(F32)[..., None]


# ---------------------------------------------------------------------------------------------
# Adaptive p


def update_p(p, rt_sum, rt_count, batch_size, interval, target=0.6, speed_kimg=500):
    """One ADA step: r_t = rt_sum / rt_count = E[sign(D(real))] over the reals seen since the
    last update; p moves by batch_size * interval / (speed_kimg * 1000) towards r_t = target
    (so by one unit per speed_kimg thousand images) and is clipped below at 0 only, as in
    the official training_loop.py (above 1 every probability saturates). Returns (p, r_t);
    p is unchanged when no reals were counted."""
    rt = rt_sum / jnp.maximum(rt_count, 1)
    adjust = jnp.sign(rt - target) * (batch_size * interval) / (speed_kimg * 1000)
    return jnp.where(rt_count > 0, jnp.maximum(p + adjust, 0.0), p), rt
