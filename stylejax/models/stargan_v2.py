"""StarGAN v2 networks (clovaai/stargan-v2 `core/model.py`, in the early form L2M-GAN builds
on): the encoder–decoder generator (instance-normalised residual blocks down, AdaIN residual
blocks up, optional high-pass injection of encoder features under FAN face masks), the
mapping network, the style encoder trunk and the multi-domain discriminator.

Module names follow the official state-dict keys with every run of numeric indices joined
to the name before it (`decode.4.norm1.fc` → `decode_4/norm1/fc`, `shared.6` → `shared_6`,
`unshared.1.4` → `unshared_1_4`), so `stylejax/convert/l2m.py` is a rename table.
Layout NHWC, images in [-1, 1].
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylejax.nn import torch_ops
from stylejax.nn.conv import Conv, conv_general_dilated

HPF_SIZES = (32, 64, 128)  # absolute feature sizes that get the high-pass injection


def default_dim_in(img_size: int) -> int:
    """The official first width: 2**14 // img_size (64 channels at 256 px)."""
    return 2**14 // img_size


def widths(img_size: int, repeat: int, max_conv_dim: int, dim_in: int | None = None):
    """Channel widths before and after each of `repeat` down-sampling blocks."""
    dims = [default_dim_in(img_size) if dim_in is None else dim_in]
    for _ in range(repeat):
        dims.append(min(dims[-1] * 2, max_conv_dim))
    return dims


def leaky_relu(x):
    return jnp.where(x >= 0, x, 0.2 * x)


def high_pass(x, w_hpf: float):
    """Depthwise 3×3 Laplacian [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] / w_hpf, zero padding."""
    c = x.shape[-1]
    kernel = -np.ones((3, 3), np.float32)
    kernel[1, 1] = 8.0
    kernel = jnp.asarray(np.broadcast_to((kernel / w_hpf)[:, :, None, None], (3, 3, 1, c)))
    return conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(1, 1),
        padding=((1, 1), (1, 1)),
        feature_group_count=c,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def conv(features: int, kernel: int, use_bias: bool = True, name=None, padding=None):
    pad = kernel // 2 if padding is None else padding
    return Conv(
        features, (kernel, kernel), padding=((pad, pad), (pad, pad)), use_bias=use_bias, name=name
    )


class InstanceNorm(nn.Module):
    """nn.InstanceNorm2d(affine=True): `scale` (init 1) and `bias` (init 0) per channel."""

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        return torch_ops.instance_norm(x) * scale.astype(x.dtype) + bias.astype(x.dtype)


class ResBlk(nn.Module):
    """Pre-activation residual block, (shortcut + residual) / √2; instance norm when
    `normalize`, 2× average-pool down-sampling when `downsample`."""

    dim_out: int
    normalize: bool = False
    downsample: bool = False

    @nn.compact
    def __call__(self, x):
        dim_in = x.shape[-1]
        shortcut = x
        if dim_in != self.dim_out:
            shortcut = conv(self.dim_out, 1, use_bias=False, name="conv1x1")(shortcut)
        if self.downsample:
            shortcut = torch_ops.avg_pool2d(shortcut, 2)
        h = InstanceNorm(name="norm1")(x) if self.normalize else x
        h = conv(dim_in, 3, name="conv1")(leaky_relu(h))
        if self.downsample:
            h = torch_ops.avg_pool2d(h, 2)
        if self.normalize:
            h = InstanceNorm(name="norm2")(h)
        h = conv(self.dim_out, 3, name="conv2")(leaky_relu(h))
        return (shortcut + h) / math.sqrt(2)


class AdaIN(nn.Module):
    """(1 + γ(s))·IN(x) + β(s); `fc` maps the style to [γ, β] (γ first)."""

    @nn.compact
    def __call__(self, x, s):
        c = x.shape[-1]
        h = nn.Dense(2 * c, name="fc")(s)
        gamma, beta = h[:, None, None, :c], h[:, None, None, c:]
        return (1 + gamma) * torch_ops.instance_norm(x) + beta


class AdainResBlk(nn.Module):
    """Decoder block. With w_hpf > 0 it returns the residual branch alone (no shortcut, no
    /√2): the official high-pass decoder, whose shortcut convs exist but are never used."""

    dim_out: int
    w_hpf: float = 0.0
    upsample: bool = False

    @nn.compact
    def __call__(self, x, s):
        h = leaky_relu(AdaIN(name="norm1")(x, s))
        if self.upsample:
            h = torch_ops.resize_nearest(h, (2 * h.shape[1], 2 * h.shape[2]))
        h = conv(self.dim_out, 3, name="conv1")(h)
        h = leaky_relu(AdaIN(name="norm2")(h, s))
        h = conv(self.dim_out, 3, name="conv2")(h)
        if self.w_hpf > 0:
            return h
        shortcut = (
            torch_ops.resize_nearest(x, (2 * x.shape[1], 2 * x.shape[2])) if self.upsample else x
        )
        if x.shape[-1] != self.dim_out:
            shortcut = conv(self.dim_out, 1, use_bias=False, name="conv1x1")(shortcut)
        return (h + shortcut) / math.sqrt(2)


def generator_repeat(img_size: int, w_hpf: float) -> int:
    """Down-sampling blocks: down to 16 px, one level further (8 px) when w_hpf > 0."""
    return int(np.log2(img_size)) - 4 + (1 if w_hpf > 0 else 0)


class Generator(nn.Module):
    """G(x, s, masks): encodes x down to 16 px (8 px with w_hpf > 0), two bottleneck blocks
    on each side, decodes with AdaIN from style s. `masks` = (mask0, mask1), each
    [N, H, W, 1] (any H = W; the FAN gives 256): after a decoder block whose output is 32,
    64 or 128 px, HPF(mask · encoder input cached at that size) is added, mask0 at 32 px and
    mask1 above. `dim_in` overrides the official first width 2**14 // img_size."""

    img_size: int = 256
    style_dim: int = 64
    max_conv_dim: int = 512
    w_hpf: float = 1.0
    dim_in: int | None = None

    @nn.compact
    def __call__(self, x, s, masks=None):
        if masks is not None and self.w_hpf <= 0:
            raise ValueError("masks were given but w_hpf = 0: the generator has no high-pass path")
        repeat = generator_repeat(self.img_size, self.w_hpf)
        dims = widths(self.img_size, repeat, self.max_conv_dim, self.dim_in)
        x = conv(dims[0], 3, name="from_rgb")(x)
        encode = [ResBlk(dims[i + 1], True, True, name=f"encode_{i}") for i in range(repeat)]
        encode += [ResBlk(dims[-1], True, name=f"encode_{repeat + i}") for i in range(2)]
        # The official decoder is a stack: bottleneck blocks first, then the up-samplers.
        decode = [AdainResBlk(dims[-1], self.w_hpf, name=f"decode_{i}") for i in range(2)]
        decode += [
            AdainResBlk(dims[repeat - 1 - i], self.w_hpf, True, name=f"decode_{2 + i}")
            for i in range(repeat)
        ]
        cache = {}
        for block in encode:
            if masks is not None and x.shape[1] in HPF_SIZES:
                cache[x.shape[1]] = x
            x = block(x)
        for block in decode:
            x = block(x, s)
            size = x.shape[1]
            if masks is not None and size in HPF_SIZES:
                mask = torch_ops.resize_bilinear(masks[0] if size == 32 else masks[1], size)
                x = x + high_pass(mask.astype(x.dtype) * cache[size], self.w_hpf)
        x = leaky_relu(InstanceNorm(name="to_rgb_0")(x))
        return conv(3, 1, name="to_rgb_2")(x)


def select_domain(per_domain, y):
    """[N, D, ...] → [N, ...]: each sample's entry for its domain y[n]."""
    return jnp.take_along_axis(per_domain, y.astype(jnp.int32)[:, None, None], axis=1)[:, 0]


class MappingNetwork(nn.Module):
    """z → style of domain y: a shared trunk of 4 Linear+ReLU layers, then one head per
    domain of 3 Linear+ReLU and a Linear to style_dim (StarGAN v2; hidden width 512)."""

    style_dim: int = 64
    num_domains: int = 2
    hidden_dim: int = 512

    @nn.compact
    def __call__(self, z, y):
        h = z
        for i in range(4):
            h = nn.relu(nn.Dense(self.hidden_dim, name=f"shared_{2 * i}")(h))
        out = []
        for d in range(self.num_domains):
            hd = h
            for i in range(3):
                hd = nn.relu(nn.Dense(self.hidden_dim, name=f"unshared_{d}_{2 * i}")(hd))
            out.append(nn.Dense(self.style_dim, name=f"unshared_{d}_6")(hd))
        return select_domain(jnp.stack(out, axis=1), y)


def trunk_indices(img_size: int) -> list[int]:
    """State-dict indices of the trunk's layers (the LeakyReLUs hold the others)."""
    repeat = int(np.log2(img_size)) - 2
    return [0, *range(1, repeat + 1), repeat + 2]


def trunk_layers(img_size: int, max_conv_dim: int, dim_in: int | None = None, prefix=None):
    """The style encoder's and the discriminator's shared part as (state-dict index,
    module) pairs: conv, ResBlks down to 4 px, then the 4×4 valid conv. Named
    `{prefix}_{index}` when `prefix` is given (compact modules); unnamed for setup()."""
    repeat = int(np.log2(img_size)) - 2
    dims = widths(img_size, repeat, max_conv_dim, dim_in)

    def name(index):
        return None if prefix is None else f"{prefix}_{index}"

    layers = [(0, conv(dims[0], 3, name=name(0)))]
    for i in range(repeat):
        layers.append((i + 1, ResBlk(dims[i + 1], downsample=True, name=name(i + 1))))
    layers.append((repeat + 2, conv(dims[-1], 4, padding=0, name=name(repeat + 2))))
    return layers


def run_trunk(layers, x):
    """conv → ResBlks → LeakyReLU → 4×4 conv → LeakyReLU → [N, C]."""
    h = layers[0](x)
    for layer in layers[1:-1]:
        h = layer(h)
    h = leaky_relu(layers[-1](leaky_relu(h)))
    return h.reshape(h.shape[0], -1)


class StyleEncoder(nn.Module):
    """StarGAN v2's style encoder: the shared trunk, then one Linear head per domain.
    Returns the style for domain y, or every domain's ([N, D, style_dim]) when y is None."""

    img_size: int = 256
    style_dim: int = 64
    num_domains: int = 2
    max_conv_dim: int = 512
    dim_in: int | None = None

    @nn.compact
    def __call__(self, x, y=None):
        layers = trunk_layers(self.img_size, self.max_conv_dim, self.dim_in, "shared")
        h = run_trunk([layer for _, layer in layers], x)
        heads = [nn.Dense(self.style_dim, name=f"unshared_{d}")(h) for d in range(self.num_domains)]
        out = jnp.stack(heads, axis=1)
        return out if y is None else select_domain(out, y)


class Discriminator(nn.Module):
    """Multi-task discriminator: the trunk, then a 1×1 conv (a Dense on the 1×1 map) to one
    logit per domain; returns each sample's logit for its domain y, or all [N, D] when y is
    None (the attribute classifier of the L2M evaluation is this network too)."""

    img_size: int = 256
    num_domains: int = 2
    max_conv_dim: int = 512
    dim_in: int | None = None

    @nn.compact
    def __call__(self, x, y=None):
        layers = trunk_layers(self.img_size, self.max_conv_dim, self.dim_in, "main")
        h = run_trunk([layer for _, layer in layers], x)
        repeat = int(np.log2(self.img_size)) - 2
        logits = nn.Dense(self.num_domains, name=f"main_{repeat + 4}")(h)
        return logits if y is None else select_domain(logits[:, :, None], y)[:, 0]


class GlobalLocalDiscriminator(nn.Module):
    """Ours: the discriminator plus a second one on a fixed square crop `box` = (top, left,
    size) of the image, where the edited attribute lives on aligned faces (the mouth for
    Smiling). Each domain's logit is the sum of the two, so every loss on D's logits
    (adversarial, R1, wrong-domain) trains both, and the crop is seen at full resolution by
    a network of its own width."""

    img_size: int = 256
    num_domains: int = 2
    max_conv_dim: int = 512
    dim_in: int | None = None
    box: tuple[int, int, int] = (0, 0, 32)
    local_dim_in: int | None = None

    @nn.compact
    def __call__(self, x, y=None):
        top, left, size = self.box
        crop = x[:, top : top + size, left : left + size]
        whole = Discriminator(
            self.img_size, self.num_domains, self.max_conv_dim, self.dim_in, name="whole"
        )
        local = Discriminator(
            size, self.num_domains, self.max_conv_dim, self.local_dim_in, name="local"
        )
        logits = whole(x) + local(crop)
        return logits if y is None else select_domain(logits[:, :, None], y)[:, 0]


def he_init(module: nn.Module, rng, *args, **kwargs):
    """Variables of `module` with StarGAN v2's he_init: every kernel N(0, 2 / fan_in), biases
    0, norm scales 1. One random draw for all kernels (per-parameter draws make XLA compile
    an init for tens of seconds on a CPU)."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    sizes = [int(np.prod(leaf.shape)) for path, leaf in leaves if path[-1].key == "kernel"]
    draw = jax.random.normal(rng, (sum(sizes),))
    out, offset = [], 0
    for path, leaf in leaves:
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            size = int(np.prod(leaf.shape))
            value = draw[offset : offset + size].reshape(leaf.shape) * math.sqrt(2.0 / fan_in)
            offset += size
        elif name in ("scale", "var"):
            value = jnp.ones(leaf.shape, leaf.dtype)
        else:
            value = jnp.zeros(leaf.shape, leaf.dtype)
        out.append(value.astype(leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)
