"""IR / IR-SE face-recognition ResNets (the trunk of the pSp encoders) and the ArcFace
identity network of the pSp ID loss, as Flax Linen modules.

Module names follow the official PyTorch state-dict keys with the `nn.Sequential` indices
replaced by names (`body.3.res_layer.1` → `body_3/res_layer/conv1`), so the converter is a
rename table (`stylejax/convert/psp.py`). Layout NHWC; BatchNorm statistics live in the
`batch_stats` collection and are used (eval mode) unless `train=True`.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from stylejax.nn import torch_ops
from stylejax.nn.conv import Conv

# Units per stage for the 50/100/152-layer variants (pSp, ArcFace) and the shallower 18/34
# of InsightFace's iresnet (small encoders for CPU runs); stage widths are
# base_width·(1, 2, 4, 8).
UNITS_PER_STAGE = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
}
MODES = ("ir", "ir_se")
BN_EPS = 1e-5  # PyTorch's default


def unit_specs(num_layers: int, base_width: int = 64) -> list[tuple[int, int, int]]:
    """(in_channels, depth, stride) of every body unit; each stage opens with stride 2."""
    if num_layers not in UNITS_PER_STAGE:
        raise ValueError(f"num_layers must be one of {sorted(UNITS_PER_STAGE)}, got {num_layers}")
    specs, in_ch = [], base_width
    for stage, units in enumerate(UNITS_PER_STAGE[num_layers]):
        depth = base_width * 2**stage
        specs.append((in_ch, depth, 2))
        specs += [(depth, depth, 1)] * (units - 1)
        in_ch = depth
    return specs


def pyramid_taps(num_layers: int) -> tuple[int, int, int]:
    """Body units whose outputs feed pSp's feature pyramid. The reference hard-codes units
    6, 20 and 23 (the last units of stages 2–4 of IR-50) and keeps them for 100 and 152;
    for the other depths they are the last units of stages 2–4."""
    if num_layers in (50, 100, 152):
        return (6, 20, 23)
    ends = np.cumsum(UNITS_PER_STAGE[num_layers]) - 1
    return tuple(int(i) for i in ends[1:])


def batch_norm(train: bool, name: str):
    # momentum 0.9 is PyTorch's 0.1 written the Flax way. Flax keeps the biased batch
    # variance as its running estimate where PyTorch keeps the unbiased one (training only).
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPS, name=name)


def conv(features: int, kernel: int, stride: int = 1, use_bias: bool = False, name=None):
    # Explicit symmetric padding: 'SAME' would pad (0, 1) at stride 2 and shift the features.
    pad = kernel // 2
    return Conv(
        features,
        (kernel, kernel),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        use_bias=use_bias,
        name=name,
    )


class PReLU(nn.Module):
    """max(0, x) + weight·min(0, x) with one learned slope per channel (PyTorch init 0.25)."""

    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", nn.initializers.constant(0.25), (x.shape[-1],))
        return jnp.where(x >= 0, x, x * weight.astype(x.dtype))


class SEModule(nn.Module):
    """Squeeze-and-excitation: global mean → 1×1 conv (C/16) → ReLU → 1×1 conv → sigmoid gate."""

    reduction: int = 16

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        if channels < self.reduction:
            raise ValueError(
                f"SE blocks need at least {self.reduction} channels, got {channels} "
                f"(base_width must be >= {self.reduction} in 'ir_se' mode)"
            )
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.relu(conv(channels // self.reduction, 1, name="fc1")(s))
        s = nn.sigmoid(conv(channels, 1, name="fc2")(s))
        return x * s


class BottleneckIR(nn.Module):
    """BN → conv3×3 → PReLU → conv3×3 (stride) → BN (→ SE), plus the shortcut.

    The shortcut is MaxPool2d(1, stride), i.e. plain subsampling, when the channel count
    is unchanged, and conv1×1 (stride) + BN otherwise."""

    depth: int
    stride: int
    use_se: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.shape[-1] == self.depth:
            shortcut = x[:, :: self.stride, :: self.stride]
        else:
            shortcut = ShortcutLayer(self.depth, self.stride, name="shortcut_layer")(x, train)
        residual = ResLayer(self.depth, self.stride, self.use_se, name="res_layer")(x, train)
        return residual + shortcut


class ShortcutLayer(nn.Module):
    depth: int
    stride: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = conv(self.depth, 1, self.stride, name="conv")(x)
        return batch_norm(train, "bn")(x)


class ResLayer(nn.Module):
    depth: int
    stride: int
    use_se: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = batch_norm(train, "bn1")(x)
        x = conv(self.depth, 3, name="conv1")(x)
        x = PReLU(name="prelu")(x)
        x = conv(self.depth, 3, self.stride, name="conv2")(x)
        x = batch_norm(train, "bn2")(x)
        if self.use_se:
            x = SEModule(name="se")(x)
        return x


class InputLayer(nn.Module):
    """conv3×3 (no bias) → BN → PReLU at full resolution."""

    features: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = conv(self.features, 3, name="conv")(x)
        x = batch_norm(train, "bn")(x)
        return PReLU(name="prelu")(x)


def ir_body(x, num_layers, mode, base_width, train, taps=()):
    """input_layer and body units `body_0 … body_{n-1}`. Call it inside a compact method: the
    modules then sit at the caller's top level, named as in the official state dicts.
    Returns the final map and {unit index: output} for the units in `taps`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x = InputLayer(base_width, name="input_layer")(x, train)
    tapped = {}
    for i, (_, depth, stride) in enumerate(unit_specs(num_layers, base_width)):
        x = BottleneckIR(depth, stride, mode == "ir_se", name=f"body_{i}")(x, train)
        if i in taps:
            tapped[i] = x
    return x, tapped


class Backbone(nn.Module):
    """ArcFace IR-SE identity network (TreB1eN layout, as pSp's ID loss loads it).

    112×112 (or 224×224) NHWC input in [-1, 1] → L2-normalised embedding. The output layer
    is BN2d → dropout → flatten → Linear(C·7·7, embedding_dim) → BN1d (affine); the dense
    kernel is stored for our NHWC flatten order (the converter permutes torch's).
    """

    input_size: int = 112
    num_layers: int = 50
    mode: str = "ir_se"
    base_width: int = 64
    embedding_dim: int = 512
    drop_ratio: float = 0.6

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.input_size not in (112, 224):
            raise ValueError(f"input_size must be 112 or 224, got {self.input_size}")
        if x.shape[1:3] != (self.input_size, self.input_size):
            raise ValueError(
                f"ArcFace input must be [N, {self.input_size}, {self.input_size}, C], got "
                f"{x.shape} (use id_crop_and_pool for 256×256 faces)"
            )
        x, _ = ir_body(x, self.num_layers, self.mode, self.base_width, train)
        x = OutputLayer(self.embedding_dim, self.drop_ratio, name="output_layer")(x, train)
        # l2_norm of the reference: divide by the norm, no epsilon.
        return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class OutputLayer(nn.Module):
    embedding_dim: int = 512
    drop_ratio: float = 0.6

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = batch_norm(train, "bn2d")(x)
        x = nn.Dropout(self.drop_ratio, deterministic=not train)(x)
        x = x.reshape(x.shape[0], -1)  # NHWC order; see the class docstring
        x = nn.Dense(self.embedding_dim, name="linear")(x)
        return batch_norm(train, "bn1d")(x)


def id_crop_and_pool(images):
    """pSp's ID-loss preprocessing: NHWC faces (pooled to 256 first if needed), crop rows
    35:223 and columns 32:220, then adaptive average pooling 188 → 112."""
    if images.shape[1:3] != (256, 256):
        images = torch_ops.adaptive_avg_pool2d(images, 256)
    return torch_ops.adaptive_avg_pool2d(images[:, 35:223, 32:220], 112)
