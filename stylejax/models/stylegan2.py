"""StyleGAN2 generator and discriminator (Karras et al. 2020) as Flax Linen modules.

Module and parameter names mirror NVIDIA's stylegan2-ada-pytorch (`mapping/fc0`,
`synthesis/b8/conv0/affine`, `b32/fromrgb`, `b4/fc` …) so that every checkpoint format
converts with a rename-and-transpose table (see `stylejax/convert/stylegan2.py`).

Variable collections:
  params   trainable weights, stored raw (equalized-lr gains are applied at run time);
  buffers  non-trainable state: `mapping/w_avg` (EMA of mapping outputs, used for
           truncation) and each synthesis layer's `noise_const` (the fixed noise of
           noise_mode='const').
RNG streams: `noise` for noise_mode='random'.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylejax.nn import ops
from stylejax.nn.layers import EqualConv2d, EqualDense

NOISE_MODES = ("random", "const", "none")


def resolutions(img_resolution: int) -> list[int]:
    """[4, 8, …, img_resolution]; validates that the resolution is a power of two ≥ 4."""
    log2 = int(np.log2(img_resolution)) if img_resolution > 0 else 0
    if img_resolution < 4 or 2**log2 != img_resolution:
        raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
    return [2**i for i in range(2, log2 + 1)]


def channels_from_base(
    img_resolution: int, channel_base: int = 32768, channel_max: int = 512
) -> tuple[int, ...]:
    """NVIDIA's rule min(channel_base / res, channel_max) for res = 4 … img_resolution.

    channel_base 32768 is config-f (TF fmap_base 16384 counts stages, hence ×2)."""
    return tuple(min(channel_base // r, channel_max) for r in resolutions(img_resolution))


def rosinality_channels(
    img_resolution: int, channel_multiplier: int = 2, width: int = 512
) -> tuple[int, ...]:
    """rosinality's table: 512 up to 32 px, then 256m, 128m, 64m, 32m, 16m (m = multiplier)."""
    table = {
        4: width,
        8: width,
        16: width,
        32: width,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }
    return tuple(table[r] for r in resolutions(img_resolution))


def num_ws(img_resolution: int) -> int:
    return 2 * int(np.log2(img_resolution)) - 2


def _check_channels(channels, img_resolution, who):
    expected = len(resolutions(img_resolution))
    if len(channels) != expected:
        raise ValueError(
            f"{who}: channels must list one count per resolution 4…{img_resolution} "
            f"({expected} values), got {len(channels)}: {tuple(channels)}"
        )


class MappingNetwork(nn.Module):
    """z (and optional one-hot class c) → w, with a tracked w_avg for truncation.

    z_dim may be 0 (the conditional discriminator's mapping of c alone); num_ws None returns
    [N, w_dim] instead of broadcasting to [N, num_ws, w_dim].
    """

    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int | None
    num_layers: int = 8
    embed_features: int | None = None
    layer_features: int | None = None
    lr_mul: float = 0.01
    w_avg_beta: float | None = 0.995

    @nn.compact
    def __call__(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        embed_features = self.w_dim if self.embed_features is None else self.embed_features
        layer_features = self.w_dim if self.layer_features is None else self.layer_features
        parts = []
        if self.z_dim > 0:
            parts.append(ops.normalize_2nd_moment(z.astype(jnp.float32)))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this network is conditional (c_dim={self.c_dim}): pass labels c")
            y = EqualDense(embed_features, name="embed")(c.astype(jnp.float32))
            parts.append(ops.normalize_2nd_moment(y))
        x = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            features = self.w_dim if i == self.num_layers - 1 else layer_features
            x = EqualDense(features, lr_mul=self.lr_mul, act="lrelu", name=f"fc{i}")(x)

        if self.w_avg_beta is not None:
            w_avg = self.variable("buffers", "w_avg", jnp.zeros, (self.w_dim,), jnp.float32)
            if update_w_avg and not self.is_initializing():
                batch_mean = jnp.mean(jax.lax.stop_gradient(x), axis=0)
                w_avg.value = batch_mean + self.w_avg_beta * (w_avg.value - batch_mean)
        if self.num_ws is not None:
            x = jnp.broadcast_to(x[:, None], (x.shape[0], self.num_ws, self.w_dim))
        if truncation_psi != 1:
            x = truncate(x, w_avg.value, truncation_psi, truncation_cutoff)
        return x


def truncate(ws, w_avg, psi, cutoff=None):
    """w' = w_avg + ψ (w − w_avg), on the first `cutoff` layers only when given."""
    truncated = w_avg + psi * (ws - w_avg)
    if cutoff is None or ws.ndim == 2:
        return truncated
    layer = jnp.arange(ws.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, truncated, ws)


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (optionally up-sampling) → noise → bias → lrelu·√2 (→ clamp)."""

    features: int
    resolution: int
    up: int = 1
    conv_clamp: float | None = None
    fused_modconv: bool = True
    resample_taps: Sequence[float] = (1, 3, 3, 1)

    @nn.compact
    def __call__(self, x, w, noise_mode="random", gain=1.0):
        in_ch = x.shape[-1]
        styles = EqualDense(in_ch, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", nn.initializers.normal(1.0), (3, 3, in_ch, self.features))
        weight = weight * (1.0 / math.sqrt(in_ch * 9))
        noise_strength = self.param("noise_strength", nn.initializers.zeros, ())
        noise_const = self.variable(
            "buffers",
            "noise_const",
            lambda: jax.random.normal(self.make_rng("params"), (self.resolution, self.resolution)),
        )
        x = ops.modulated_conv2d(
            x,
            weight,
            styles,
            demodulate=True,
            up=self.up,
            taps=ops.fir_filter(self.resample_taps),
            fused=self.fused_modconv,
        )
        if noise_mode == "random":
            noise = jax.random.normal(self.make_rng("noise"), x.shape[:3] + (1,), x.dtype)
            x = x + noise * noise_strength.astype(x.dtype)
        elif noise_mode == "const":
            x = x + (noise_const.value[None, :, :, None] * noise_strength).astype(x.dtype)
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, bias, "lrelu", gain=ops.SQRT2 * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """1×1 modulated conv without demodulation, plus bias (→ clamp)."""

    features: int
    conv_clamp: float | None = None
    fused_modconv: bool = True

    @nn.compact
    def __call__(self, x, w):
        in_ch = x.shape[-1]
        styles = EqualDense(in_ch, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", nn.initializers.normal(1.0), (1, 1, in_ch, self.features))
        weight = weight * (1.0 / math.sqrt(in_ch))
        x = ops.modulated_conv2d(x, weight, styles, demodulate=False, fused=self.fused_modconv)
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return ops.bias_act(x, bias, "linear", clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | conv0↑) → conv1 → torgb."""

    resolution: int
    features: int
    img_channels: int
    is_last: bool
    architecture: str = "skip"
    conv_clamp: float | None = None
    fused_modconv: bool = True
    resample_taps: Sequence[float] = (1, 3, 3, 1)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, img, ws, noise_mode="random"):
        """ws: [N, k, w_dim], the block's slice of W+ (conv0, conv1, torgb)."""
        layer = dict(
            features=self.features,
            resolution=self.resolution,
            conv_clamp=self.conv_clamp,
            fused_modconv=self.fused_modconv,
            resample_taps=self.resample_taps,
        )
        w_iter = iter(range(ws.shape[1]))
        if x is None:
            const = self.param("const", nn.initializers.normal(1.0), (4, 4, self.features))
            x = jnp.broadcast_to(const[None], (ws.shape[0],) + const.shape).astype(self.dtype)
            x = SynthesisLayer(**layer, name="conv1")(x, ws[:, next(w_iter)], noise_mode)
        elif self.architecture == "resnet":
            y = EqualConv2d(
                self.features,
                1,
                up=2,
                use_bias=False,
                resample_taps=self.resample_taps,
                name="skip",
            )(x, gain=math.sqrt(0.5))
            x = SynthesisLayer(**layer, up=2, name="conv0")(x, ws[:, next(w_iter)], noise_mode)
            x = SynthesisLayer(**layer, name="conv1")(
                x, ws[:, next(w_iter)], noise_mode, gain=math.sqrt(0.5)
            )
            x = x + y
        else:
            x = SynthesisLayer(**layer, up=2, name="conv0")(x, ws[:, next(w_iter)], noise_mode)
            x = SynthesisLayer(**layer, name="conv1")(x, ws[:, next(w_iter)], noise_mode)

        if img is not None:
            img = ops.upsample2d(img, ops.fir_filter(self.resample_taps))
        if self.is_last or self.architecture == "skip":
            y = ToRGBLayer(
                self.img_channels,
                conv_clamp=self.conv_clamp,
                fused_modconv=self.fused_modconv,
                name="torgb",
            )(x, ws[:, next(w_iter)])
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ [N, num_ws, w_dim] → image [N, R, R, img_channels]."""

    img_resolution: int
    channels: Sequence[int]
    img_channels: int = 3
    architecture: str = "skip"
    conv_clamp: float | None = None
    fused_modconv: bool = True
    resample_taps: Sequence[float] = (1, 3, 3, 1)
    dtype: Any = jnp.float32  # compute dtype of the convolutions (bfloat16 opt-in)

    @nn.compact
    def __call__(self, ws, noise_mode="random"):
        if self.architecture not in ("skip", "resnet"):
            raise ValueError(
                f"synthesis architecture must be 'skip' or 'resnet', got {self.architecture!r}"
            )
        _check_channels(self.channels, self.img_resolution, "SynthesisNetwork")
        res_list = resolutions(self.img_resolution)
        if ws.shape[1] != num_ws(self.img_resolution):
            raise ValueError(
                f"expected W+ with {num_ws(self.img_resolution)} layers for "
                f"{self.img_resolution} px, got shape {ws.shape}"
            )
        x = img = None
        w_idx = 0
        for res, ch in zip(res_list, self.channels):
            is_last = res == self.img_resolution
            num_conv = 1 if res == 4 else 2
            num_torgb = 1 if (is_last or self.architecture == "skip") else 0
            block = SynthesisBlock(
                res,
                ch,
                self.img_channels,
                is_last,
                self.architecture,
                self.conv_clamp,
                self.fused_modconv,
                tuple(self.resample_taps),
                self.dtype,
                name=f"b{res}",
            )
            x, img = block(x, img, ws[:, w_idx : w_idx + num_conv + num_torgb], noise_mode)
            w_idx += num_conv
        return img.astype(jnp.float32)


class Generator(nn.Module):
    """StyleGAN2 generator: mapping + synthesis.

    Call with z ([N, z_dim]), W ([N, w_dim]) or W+ ([N, num_ws, w_dim]) via `input_space`.
    Style mixing: `mix_latents` (same space) replace the codes from layer `inject_index` on;
    `inject_index` is an int or a per-sample [N] array.
    """

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    channels: Sequence[int] = channels_from_base(1024)
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    architecture: str = "skip"
    conv_clamp: float | None = None
    fused_modconv: bool = True
    w_avg_beta: float = 0.995
    resample_taps: Sequence[float] = (1, 3, 3, 1)
    dtype: Any = jnp.float32  # synthesis compute dtype; mapping and outputs stay float32

    @property
    def num_ws(self) -> int:
        return num_ws(self.img_resolution)

    def setup(self):
        self.mapping = MappingNetwork(
            self.z_dim,
            self.c_dim,
            self.w_dim,
            self.num_ws,
            num_layers=self.mapping_layers,
            lr_mul=self.mapping_lr_mul,
            w_avg_beta=self.w_avg_beta,
        )
        self.synthesis = SynthesisNetwork(
            self.img_resolution,
            tuple(self.channels),
            self.img_channels,
            self.architecture,
            self.conv_clamp,
            self.fused_modconv,
            tuple(self.resample_taps),
            self.dtype,
        )

    def __call__(
        self,
        latents,
        c=None,
        *,
        input_space="z",
        mix_latents=None,
        inject_index=None,
        truncation_psi=1.0,
        truncation_cutoff=None,
        noise_mode="random",
        update_w_avg=False,
        return_latents=False,
    ):
        ws = self.latents_to_ws(
            latents, c, input_space, truncation_psi, truncation_cutoff, update_w_avg
        )
        if mix_latents is not None:
            if inject_index is None:
                raise ValueError("style mixing needs inject_index (an int or one per sample)")
            ws2 = self.latents_to_ws(mix_latents, c, input_space, truncation_psi, truncation_cutoff)
            ws = mix_styles(ws, ws2, inject_index)
        img = self.synthesis(ws, noise_mode)
        return (img, ws) if return_latents else img

    def latents_to_ws(
        self,
        latents,
        c=None,
        input_space="z",
        truncation_psi=1.0,
        truncation_cutoff=None,
        update_w_avg=False,
    ):
        """z / W / W+ → W+ [N, num_ws, w_dim], with truncation applied in every space."""
        if input_space == "z":
            return self.mapping(latents, c, truncation_psi, truncation_cutoff, update_w_avg)
        if input_space == "w":
            ws = jnp.broadcast_to(latents[:, None], (latents.shape[0], self.num_ws, self.w_dim))
        elif input_space == "w+":
            if latents.ndim != 3 or latents.shape[1:] != (self.num_ws, self.w_dim):
                raise ValueError(
                    f"W+ input must be [N, {self.num_ws}, {self.w_dim}], got {latents.shape}"
                )
            ws = latents
        else:
            raise ValueError(f"input_space must be 'z', 'w' or 'w+', got {input_space!r}")
        if truncation_psi != 1:
            ws = truncate(ws, self.w_avg(), truncation_psi, truncation_cutoff)
        return ws

    def map(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        return self.mapping(z, c, truncation_psi, truncation_cutoff, update_w_avg)

    def synthesize(self, ws, noise_mode="random"):
        return self.synthesis(ws, noise_mode)

    def w_avg(self):
        return self.mapping.get_variable("buffers", "w_avg")


def mix_styles(ws, ws2, inject_index):
    """Layers < inject_index from ws, the rest from ws2; inject_index int or [N]."""
    idx = jnp.asarray(inject_index)
    idx = idx.reshape(-1, 1, 1) if idx.ndim == 1 else idx
    layer = jnp.arange(ws.shape[1])[None, :, None]
    return jnp.where(layer < idx, ws, ws2)


class DiscriminatorBlock(nn.Module):
    """fromrgb (first block, or every block for 'skip') → conv0 → conv1↓, plus the
    1×1 down-sampled skip for 'resnet' (merged with gain √0.5)."""

    tmp_features: int
    out_features: int
    first: bool
    architecture: str = "resnet"
    conv_clamp: float | None = None
    resample_taps: Sequence[float] = (1, 3, 3, 1)

    @nn.compact
    def __call__(self, x, img):
        conv = dict(act="lrelu", clamp=self.conv_clamp, resample_taps=self.resample_taps)
        if self.first or self.architecture == "skip":
            y = EqualConv2d(self.tmp_features, 1, **conv, name="fromrgb")(img)
            x = y if x is None else x + y
            img = (
                ops.downsample2d(img, ops.fir_filter(self.resample_taps))
                if self.architecture == "skip"
                else None
            )
        if self.architecture == "resnet":
            y = EqualConv2d(
                self.out_features,
                1,
                down=2,
                use_bias=False,
                resample_taps=self.resample_taps,
                name="skip",
            )(x, gain=math.sqrt(0.5))
            x = EqualConv2d(self.tmp_features, 3, **conv, name="conv0")(x)
            x = EqualConv2d(self.out_features, 3, down=2, **conv, name="conv1")(
                x, gain=math.sqrt(0.5)
            )
            x = x + y
        else:
            x = EqualConv2d(self.tmp_features, 3, **conv, name="conv0")(x)
            x = EqualConv2d(self.out_features, 3, down=2, **conv, name="conv1")(x)
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """4×4: minibatch stddev → conv → fc → out (projection onto cmap when conditional)."""

    features: int
    cmap_dim: int = 0
    architecture: str = "resnet"
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x, img, cmap=None):
        if self.architecture == "skip":
            x = x + EqualConv2d(x.shape[-1], 1, act="lrelu", name="fromrgb")(img)
        if self.mbstd_num_channels > 0:
            x = ops.minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = EqualConv2d(self.features, 3, act="lrelu", clamp=self.conv_clamp, name="conv")(x)
        # Flattened in NHWC order; the converter permutes NCHW-ordered checkpoints to match.
        x = EqualDense(self.features, act="lrelu", name="fc")(x.reshape(x.shape[0], -1))
        x = EqualDense(self.cmap_dim if cmap is not None else 1, name="out")(x)
        if cmap is not None:
            x = jnp.sum(x * cmap, axis=1, keepdims=True) * (1.0 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2 discriminator: image [N, R, R, C] (and c) → logits [N, 1]."""

    c_dim: int = 0
    img_resolution: int = 1024
    img_channels: int = 3
    channels: Sequence[int] = channels_from_base(1024)
    architecture: str = "resnet"
    conv_clamp: float | None = None
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    cmap_dim: int | None = None
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01  # the label mapping's; NVIDIA's TF networks use 0.1
    resample_taps: Sequence[float] = (1, 3, 3, 1)
    dtype: Any = jnp.float32  # compute dtype (bfloat16 opt-in); logits are float32

    @nn.compact
    def __call__(self, img, c=None):
        if self.architecture not in ("skip", "resnet"):
            raise ValueError(
                f"discriminator architecture must be 'skip' or 'resnet', got {self.architecture!r}"
            )
        _check_channels(self.channels, self.img_resolution, "Discriminator")
        expected = (self.img_resolution, self.img_resolution, self.img_channels)
        if img.shape[1:] != expected:
            raise ValueError(
                f"Discriminator expects images [N, {expected[0]}, {expected[1]}, "
                f"{expected[2]}] (NHWC), got {img.shape}"
            )
        ch = dict(zip(resolutions(self.img_resolution), self.channels))
        x = None
        img = img.astype(self.dtype)
        for res in resolutions(self.img_resolution)[:0:-1]:
            x, img = DiscriminatorBlock(
                ch[res],
                ch[res // 2],
                res == self.img_resolution,
                self.architecture,
                self.conv_clamp,
                tuple(self.resample_taps),
                name=f"b{res}",
            )(x, img)
        cmap = None
        if self.c_dim > 0:
            cmap_dim = ch[4] if self.cmap_dim is None else self.cmap_dim
            if c is None:
                raise ValueError(f"this discriminator is conditional (c_dim={self.c_dim}): pass c")
            cmap = MappingNetwork(
                0,
                self.c_dim,
                cmap_dim,
                None,
                num_layers=self.mapping_layers,
                lr_mul=self.mapping_lr_mul,
                w_avg_beta=None,
                name="mapping",
            )(None, c)
        return DiscriminatorEpilogue(
            ch[4],
            cmap.shape[1] if cmap is not None else 0,
            self.architecture,
            self.mbstd_group_size,
            self.mbstd_num_channels,
            self.conv_clamp,
            name="b4",
        )(x, img, cmap).astype(jnp.float32)


def init_variables(module: nn.Module, rng, *args, **kwargs) -> dict[str, Any]:
    """Initialises a generator or discriminator (params + buffers) from example inputs."""
    params_rng, noise_rng = jax.random.split(rng)
    return module.init({"params": params_rng, "noise": noise_rng}, *args, **kwargs)
