"""The Inception-v3 of FID (the `pt_inception-2015-12-05` weights of pytorch-fid and the
TensorFlow FID graph) as a Flax Linen module.

It is torchvision's Inception-v3 with pytorch-fid's FID patches: the average pools of the
A, C and E blocks leave the zero padding out of the mean (TensorFlow's rule), and the last E
block (`Mixed_7c`) pools with a max instead of an average. Module names follow the torch
state-dict keys (`Mixed_6b.branch7x7_2.conv.weight` → `Mixed_6b/branch7x7_2/conv/kernel`),
so the converter (`stylejax/convert/inception.py`) is a rename table. NHWC; BatchNorm in
eval mode with ε = 0.001.

Input: NHWC images in [-1, 1] of any size. They are resized to 299×299 first, as pytorch-fid
does: bilinear with half-pixel centres and no antialiasing (`F.interpolate(mode='bilinear',
align_corners=False)`), also when shrinking. Output: the 2048 pool3 features per image.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylejax.nn import torch_ops
from stylejax.nn.conv import Conv

BN_EPS = 1e-3  # torchvision's BasicConv2d
INPUT_SIZE = 299
FEATURES = 2048


def _pad(padding):
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return ((ph, ph), (pw, pw))


class BasicConv2d(nn.Module):
    """conv (no bias) → BatchNorm(ε 0.001) → ReLU, torchvision's building block."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: int | tuple[int, int] = 0

    @nn.compact
    def __call__(self, x):
        x = Conv(
            self.features,
            self.kernel,
            strides=self.stride,
            padding=_pad(self.padding),
            use_bias=False,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


def avg_pool_3x3_no_pad_count(x):
    """3×3 stride-1 average pool over the in-image pixels only (TensorFlow's rule)."""
    return torch_ops.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, name="branch1x1")(x)
        b5 = BasicConv2d(48, name="branch5x5_1")(x)
        b5 = BasicConv2d(64, (5, 5), padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, (3, 3), padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, (3, 3), padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, name="branch_pool")(avg_pool_3x3_no_pad_count(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = BasicConv2d(64, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, (3, 3), padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, torch_ops.max_pool2d(x, 3, 2)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        row = {"kernel": (1, 7), "padding": (0, 3)}
        col = {"kernel": (7, 1), "padding": (3, 0)}
        b1 = BasicConv2d(192, name="branch1x1")(x)
        b7 = BasicConv2d(c7, name="branch7x7_1")(x)
        b7 = BasicConv2d(c7, **row, name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, **col, name="branch7x7_3")(b7)
        bd = BasicConv2d(c7, name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c7, **col, name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c7, **row, name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c7, **col, name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, **row, name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, name="branch_pool")(avg_pool_3x3_no_pad_count(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, name="branch3x3_1")(x)
        b3 = BasicConv2d(320, (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, torch_ops.max_pool2d(x, 3, 2)], axis=-1)


class InceptionE(nn.Module):
    """`max_pool=True` is pytorch-fid's FIDInceptionE_2 (Mixed_7c): a 3×3 max pool in the
    pool branch where the paper and torchvision average."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        def split_1x3_3x1(y, prefix):
            a = BasicConv2d(384, (1, 3), padding=(0, 1), name=f"{prefix}a")(y)
            b = BasicConv2d(384, (3, 1), padding=(1, 0), name=f"{prefix}b")(y)
            return jnp.concatenate([a, b], axis=-1)

        b1 = BasicConv2d(320, name="branch1x1")(x)
        b3 = split_1x3_3x1(BasicConv2d(384, name="branch3x3_1")(x), "branch3x3_2")
        bd = BasicConv2d(448, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, (3, 3), padding=1, name="branch3x3dbl_2")(bd)
        bd = split_1x3_3x1(bd, "branch3x3dbl_3")
        pooled = (
            torch_ops.max_pool2d(x, 3, 1, padding=1)
            if self.max_pool
            else avg_pool_3x3_no_pad_count(x)
        )
        bp = BasicConv2d(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """[N, H, W, 3] images in [-1, 1] → [N, 2048] pool3 features (pytorch-fid's block 3).

    `resize_input=False` skips the resize to 299 (the network needs at least 75×75)."""

    resize_input: bool = True

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"FID Inception input must be [N, H, W, 3] in [-1, 1], got {x.shape}")
        x = jnp.asarray(x, jnp.float32)
        if self.resize_input:
            x = torch_ops.resize_bilinear(x, INPUT_SIZE, positions_dtype=np.float32)
        elif min(x.shape[1:3]) < 75:
            raise ValueError(f"FID Inception needs inputs of at least 75×75, got {x.shape[1:3]}")
        x = BasicConv2d(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, (3, 3), padding=1, name="Conv2d_2b_3x3")(x)
        x = torch_ops.max_pool2d(x, 3, 2)
        x = BasicConv2d(80, name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = torch_ops.max_pool2d(x, 3, 2)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c7 in (
            ("Mixed_6b", 128),
            ("Mixed_6c", 160),
            ("Mixed_6d", 160),
            ("Mixed_6e", 192),
        ):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


def abstract_variables(module: FIDInceptionV3 | None = None):
    """Shapes of the network's variables ({'params', 'batch_stats'}) without computing."""
    module = FIDInceptionV3() if module is None else module
    return jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))


def random_variables(seed: int = 0) -> dict:
    """Seeded random weights in the real layout (tests and parity fixtures, never FID):
    He-scaled kernels and BatchNorm parameters and statistics near 1 and 0, so the features
    stay of order one through the 94 layers. Drawn in the flattened (sorted-key) order."""
    abstract = abstract_variables()
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    values = []
    for path, leaf in leaves:
        name = path[-1].key
        if name == "kernel":
            fan_in = np.prod(leaf.shape[:3])
            v = rng.standard_normal(leaf.shape, np.float32) * np.float32(np.sqrt(2 / fan_in))
        elif name in ("scale", "var"):
            v = rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        else:  # bias, mean
            v = (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
        values.append(v)
    return jax.tree_util.tree_unflatten(treedef, values)
