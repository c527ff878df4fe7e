"""pSp encoders (Richardson et al. 2021) and the pSp model G(E(x) + w_avg), as Flax modules.

Names mirror the official pixel2style2pixel state dicts (`input_layer`, `body_{i}`,
`latlayer1`, `styles_{i}/conv_{k}`, `styles_{i}/linear`, `output_layer_2` …) so that
`stylejax/convert/psp.py` is a rename table. NHWC images in [-1, 1]; any channel count
(RGB 3, sketches 1, segmentation label maps 19).
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from stylejax.models import stylegan2 as sg
from stylejax.models.irse import batch_norm, ir_body, pyramid_taps
from stylejax.nn import torch_ops
from stylejax.nn.conv import Conv
from stylejax.nn.layers import EqualDense

ENCODER_TYPES = (
    "GradualStyleEncoder",
    "BackboneEncoderUsingLastLayerIntoW",
    "BackboneEncoderUsingLastLayerIntoWPlus",
)


class GradualStyleBlock(nn.Module):
    """map2style: log2(spatial) stride-2 3×3 convs (bias, LeakyReLU 0.01) down to 1×1, then an
    equalized dense layer. `spatial` is the map size the block was built for (16/32/64);
    smaller inputs stay 1×1 after their last halving, as in the reference."""

    features: int
    spatial: int

    @nn.compact
    def __call__(self, x):
        for k in range(int(math.log2(self.spatial))):
            x = Conv(
                self.features,
                (3, 3),
                strides=2,
                padding=((1, 1), (1, 1)),
                name=f"conv_{k}",
            )(x)
            x = nn.leaky_relu(x, 0.01)  # PyTorch's default slope, no gain
        if x.shape[1:3] != (1, 1):
            raise ValueError(
                f"GradualStyleBlock(spatial={self.spatial}) left a {x.shape[1]}×{x.shape[2]} "
                f"map; the encoder input is larger than the 256×256 it was built for"
            )
        return EqualDense(self.features, name="linear")(x.reshape(x.shape[0], -1))


class GradualStyleEncoder(nn.Module):
    """IR-SE trunk + feature pyramid → [N, n_styles, style_dim].

    Pyramid taps after body units 6, 20 and 23 for IR-50/100/152 (fixed indices, as in the
    reference; see irse.pyramid_taps); p2 = up(c3) + latlayer1(c2), p1 = up(p2) + latlayer2(c1) with align_corners=True
    bilinear up-sampling. Styles 0–2 read c3, 3–6 read p2, the rest p1.
    """

    n_styles: int = 18
    style_dim: int = 512
    num_layers: int = 50
    mode: str = "ir_se"
    base_width: int = 64
    taps: Sequence[int] | None = None  # None: irse.pyramid_taps(num_layers)
    coarse_ind: int = 3
    middle_ind: int = 7
    block_spatial: Sequence[int] = (16, 32, 64)

    @nn.compact
    def __call__(self, x, train: bool = False):
        taps = self.taps or pyramid_taps(self.num_layers)
        _, feats = ir_body(x, self.num_layers, self.mode, self.base_width, train, taps)
        c1, c2, c3 = (feats[i] for i in taps)
        width = c3.shape[-1]
        p2 = upsample_add(c3, Conv(width, (1, 1), name="latlayer1")(c2))
        p1 = upsample_add(p2, Conv(width, (1, 1), name="latlayer2")(c1))
        styles = []
        for i in range(self.n_styles):
            level = 0 if i < self.coarse_ind else 1 if i < self.middle_ind else 2
            block = GradualStyleBlock(self.style_dim, self.block_spatial[level], name=f"styles_{i}")
            styles.append(block((c3, p2, p1)[level]))
        return jnp.stack(styles, axis=1)


def upsample_add(x, y):
    return torch_ops.resize_bilinear(x, y.shape[1:3], align_corners=True) + y


class BackboneEncoderUsingLastLayerIntoW(nn.Module):
    """Ablation / learn_in_w: trunk → global mean pool → equalized dense → one W [N, style_dim]."""

    style_dim: int = 512
    num_layers: int = 50
    mode: str = "ir_se"
    base_width: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        x, _ = ir_body(x, self.num_layers, self.mode, self.base_width, train)
        return EqualDense(self.style_dim, name="linear")(jnp.mean(x, axis=(1, 2)))


class BackboneEncoderUsingLastLayerIntoWPlus(nn.Module):
    """Ablation: trunk → BN → adaptive pool 7×7 → flatten → dense → equalized dense to W+."""

    n_styles: int = 18
    style_dim: int = 512
    num_layers: int = 50
    mode: str = "ir_se"
    base_width: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        x, _ = ir_body(x, self.num_layers, self.mode, self.base_width, train)
        x = OutputLayer2(self.style_dim, name="output_layer_2")(x, train)
        x = EqualDense(self.style_dim * self.n_styles, name="linear")(x)
        return x.reshape(x.shape[0], self.n_styles, self.style_dim)


class OutputLayer2(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = batch_norm(train, "bn")(x)
        x = torch_ops.adaptive_avg_pool2d(x, 7)
        # NHWC flatten; the converter permutes torch's NCHW-ordered kernel to match.
        return nn.Dense(self.features, name="linear")(x.reshape(x.shape[0], -1))


def build_encoder(encoder_type: str, **kwargs) -> nn.Module:
    classes = {
        "GradualStyleEncoder": GradualStyleEncoder,
        "BackboneEncoderUsingLastLayerIntoW": BackboneEncoderUsingLastLayerIntoW,
        "BackboneEncoderUsingLastLayerIntoWPlus": BackboneEncoderUsingLastLayerIntoWPlus,
    }
    if encoder_type not in classes:
        raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {encoder_type!r}")
    if encoder_type == "BackboneEncoderUsingLastLayerIntoW":
        kwargs.pop("n_styles", None)
    return classes[encoder_type](**kwargs)


class PSP(nn.Module):
    """codes = encoder(x) (+ latent_avg), images = decoder(codes) with the StyleGAN2 generator.

    The encoder returns W+ [N, n_styles, w] or, for the IntoW encoder, one W [N, w] that the
    decoder broadcasts to every layer. `latent_avg` is a buffer [n_styles, w_dim] (for a
    W encoder only its first row is used). `resize` applies pSp's face_pool (adaptive
    average pooling to 256). Variables: params/{encoder,decoder}, batch_stats/encoder,
    buffers/{decoder, latent_avg}.
    """

    encoder: nn.Module
    decoder: sg.Generator
    start_from_latent_avg: bool = True

    def setup(self):
        self.latent_avg = self.variable(
            "buffers",
            "latent_avg",
            jnp.zeros,
            (self.decoder.num_ws, self.decoder.w_dim),
            jnp.float32,
        )

    def encode(self, x, train: bool = False):
        codes = self.encoder(x, train)
        if self.start_from_latent_avg:
            avg = self.latent_avg.value
            codes = codes + (avg[0] if codes.ndim == 2 else avg)
        return codes

    def decode(self, codes, noise_mode: str = "const", resize: bool = False):
        space = "w" if codes.ndim == 2 else "w+"
        images = self.decoder(codes, input_space=space, noise_mode=noise_mode)
        return torch_ops.adaptive_avg_pool2d(images, 256) if resize else images

    def __call__(
        self,
        x,
        *,
        train: bool = False,
        noise_mode: str = "const",
        resize: bool = False,
        return_latents: bool = False,
    ):
        if self.is_initializing():  # the W+ path skips the mapping network; create it too
            self.decoder.map(jnp.zeros((1, self.decoder.z_dim)))
        codes = self.encode(x, train)
        images = self.decode(codes, noise_mode, resize)
        return (images, codes) if return_latents else images
