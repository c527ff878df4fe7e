"""The FAN face-landmark network of StarGAN v2 (`core/wing.py`, the AdaptiveWingLoss
variant: CoordConv stem, one 4-level hourglass, 98 landmark heatmaps + 1 boundary map) and
the mask recipe that turns its heatmaps into the two high-pass masks of the generator.

Widths are fixed (64/128/256), as in the official code. BatchNorm always runs on its
running statistics (the network is only used frozen). Names follow the state-dict keys
(`conv2.downsample.0` → `conv2/downsample_0`, `m0.b2_plus_1` → `m0/b2_plus_1`).
NHWC throughout; heatmaps come out at 64 px for a 256 px input.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from stylejax.models import irse
from stylejax.nn import torch_ops

NUM_LANDMARKS = 98
INPUT_SIZE = 256
HEATMAP_THRESHOLD = 0.1


def batch_norm(name):
    return nn.BatchNorm(use_running_average=True, epsilon=1e-5, name=name)


def conv(features, kernel, stride=1, use_bias=True, name=None):
    return irse.conv(features, kernel, stride, use_bias=use_bias, name=name)


def coordinates(height: int, width: int) -> np.ndarray:
    """[H, W, 3]: row and column coordinates in [-1, 1] and their radius divided by its
    maximum (AddCoordsTh with_r; the row coordinate comes first)."""
    rows = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], (height, width))
    cols = np.broadcast_to(np.arange(width, dtype=np.float32)[None, :], (height, width))
    rows = rows / (height - 1) * 2 - 1
    cols = cols / (width - 1) * 2 - 1
    radius = np.sqrt(rows**2 + cols**2)
    return np.stack([rows, cols, radius / radius.max()], axis=-1).astype(np.float32)


def add_coordinates(x):
    n, h, w, _ = x.shape
    coords = jnp.broadcast_to(jnp.asarray(coordinates(h, w), x.dtype), (n, h, w, 3))
    return jnp.concatenate([x, coords], axis=-1)


class ConvBlock(nn.Module):
    """Three pre-activated 3×3 convs (out/2, out/4, out/4) concatenated, plus the input
    (through BN-ReLU-1×1 conv when the width changes)."""

    out_planes: int

    @nn.compact
    def __call__(self, x):
        half, quarter = self.out_planes // 2, self.out_planes // 4
        out1 = conv(half, 3, use_bias=False, name="conv1")(nn.relu(batch_norm("bn1")(x)))
        out2 = conv(quarter, 3, use_bias=False, name="conv2")(nn.relu(batch_norm("bn2")(out1)))
        out3 = conv(quarter, 3, use_bias=False, name="conv3")(nn.relu(batch_norm("bn3")(out2)))
        residual = x
        if x.shape[-1] != self.out_planes:
            residual = nn.relu(batch_norm("downsample_0")(x))
            residual = conv(self.out_planes, 1, use_bias=False, name="downsample_2")(residual)
        return jnp.concatenate([out1, out2, out3], axis=-1) + residual


class HourGlass(nn.Module):
    """CoordConv 1×1 (the input plus 3 coordinate channels), then a recursive hourglass:
    each level adds a full-resolution branch to the nearest-upsampled half-resolution one."""

    depth: int = 4
    features: int = 256

    def setup(self):
        self.coordconv = _CoordConv(self.features, 1)
        for level in range(self.depth, 0, -1):
            setattr(self, f"b1_{level}", ConvBlock(self.features))
            setattr(self, f"b2_{level}", ConvBlock(self.features))
            setattr(self, f"b3_{level}", ConvBlock(self.features))
        self.b2_plus_1 = ConvBlock(self.features)

    def _level(self, level, x):
        up1 = getattr(self, f"b1_{level}")(x)
        low = getattr(self, f"b2_{level}")(torch_ops.avg_pool2d(x, 2))
        low = self._level(level - 1, low) if level > 1 else self.b2_plus_1(low)
        low = getattr(self, f"b3_{level}")(low)
        return up1 + torch_ops.resize_nearest(low, up1.shape[1:3])

    def __call__(self, x):
        return self._level(self.depth, self.coordconv(x))


class _CoordConv(nn.Module):
    features: int
    kernel: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        return conv(self.features, self.kernel, self.stride, name="conv")(add_coordinates(x))


class FAN(nn.Module):
    """x in [0, 1], [N, 256, 256, 3] → [N, 64, 64, 99] heatmaps (98 landmarks + boundary)."""

    num_landmarks: int = NUM_LANDMARKS

    @nn.compact
    def __call__(self, x):
        x = _CoordConv(64, 7, 2, name="conv1")(x)
        x = nn.relu(batch_norm("bn1")(x))
        x = torch_ops.avg_pool2d(ConvBlock(128, name="conv2")(x), 2)
        x = ConvBlock(128, name="conv3")(x)
        x = ConvBlock(256, name="conv4")(x)
        x = HourGlass(4, 256, name="m0")(x)
        x = ConvBlock(256, name="top_m_0")(x)
        x = nn.relu(batch_norm("bn_end0")(conv(256, 1, name="conv_last0")(x)))
        return conv(self.num_landmarks + 1, 1, name="l0")(x)

    def masks(self, images):
        """The generator's two masks for images in [-1, 1] of any size: [N, 256, 256, 1]
        each (`FAN.get_heatmap` + `preprocess`; mask1 leaves out the face outline, the
        eyebrows and the mouth)."""
        return heatmap_masks(self.heatmaps(images))

    def heatmaps(self, images):
        """Landmark heatmaps (boundary map dropped), up-sampled to 256 px."""
        x = torch_ops.resize_bilinear(images, INPUT_SIZE) * 0.5 + 0.5
        heatmaps = self(x)[..., : self.num_landmarks]
        return torch_ops.resize_bilinear(heatmaps, INPUT_SIZE, align_corners=True)


# Landmark index ranges of the 98-point (WFLW) layout, [start, end).
CHIN = (8, 25)
EYEBROWS = (33, 51)
EYEBROW_EDGES = (33, 46)
NOSE = (51, 55)
NOSTRILS = (55, 60)
EYES = (60, 76)
LIP_EDGES = (76, 82)
LIP_UPPER = (77, 82)
LIP_LOWER = (83, 88)
LIP_INNER = (88, 96)


def _shift(x, n: int):
    """The official shift(x, n): a circular roll of the rows by -n."""
    return jnp.roll(x, -n, axis=1)


def heatmap_masks(x):
    """StarGAN v2's `preprocess` on [N, H, W, 98] heatmaps: truncate below 0.1, min–max per
    channel, per-part shifts and powers, then sums clamped to [0, 1]: (mask0, mask1)."""
    h = x.shape[1]
    x = jnp.where(x < HEATMAP_THRESHOLD, 0.0, x)
    lo = jnp.min(x, axis=(1, 2), keepdims=True)
    hi = jnp.max(x, axis=(1, 2), keepdims=True)
    x = (x - lo) / (hi - lo + 1e-6)
    sw = h // 256
    parts = [x[..., i] for i in range(x.shape[-1])]

    def apply(span, fn):
        for i in range(*span):
            parts[i] = fn(parts[i])

    for span, shift, power in (
        (CHIN, 0, 3),
        (EYEBROWS, -7 * sw, 2),
        (NOSTRILS, 8 * sw, 4),
        (LIP_UPPER, -8 * sw, 4),
        (LIP_LOWER, 8 * sw, 4),
        (LIP_INNER, -2 * sw, 3),
    ):
        apply(span, lambda p, s=shift, k=power: _shift(p, s) ** k)
    zero = [*range(CHIN[0]), *range(CHIN[1], 33), EYEBROW_EDGES[0], EYEBROW_EDGES[1]]
    zero += [LIP_EDGES[0], LIP_EDGES[1]]
    for i in zero:
        parts[i] = jnp.zeros_like(parts[i])
    apply((NOSE[0] + 1, NOSE[1]), lambda p: _shift(p, 4 * sw))
    # The eye shifts are not scaled with the size in the official code.
    apply(EYES, lambda p: _shift(p, -8) ** 3 + _shift(p, -24))
    second = list(parts)
    for span in (CHIN, (LIP_EDGES[0], LIP_INNER[1]), EYEBROWS):
        for i in range(*span):
            second[i] = jnp.zeros_like(second[i])
    mask0 = sum(parts[1:], parts[0])[..., None]
    mask1 = sum(second[1:], second[0])[..., None]
    # NaN (a constant heatmap) → 0 in both masks.
    mask0 = jnp.where(jnp.isnan(mask0), 0.0, mask0)
    mask1 = jnp.where(jnp.isnan(mask1), 0.0, mask1)
    return jnp.clip(mask0, 0, 1), jnp.clip(mask1, 0, 1)
