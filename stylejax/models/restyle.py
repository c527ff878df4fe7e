"""ReStyle (Alaluf et al. 2021): iterative residual encoding into W+, as Flax modules.

The encoder sees the input image concatenated with the current reconstruction (6 channels)
and predicts a residual added to the current code:

    w_0 = latent_avg, y_0 = G(latent_avg)
    w_{t+1} = w_t + E([x, pool(y_t)]),  y_{t+1} = G(w_{t+1})

`pool` is pSp's face_pool (adaptive average pooling to the encoder's input size: an exact
pixel copy from 32 px, an exact 4×4 mean from 1024 px). Encoders (names mirror the official
`restyle_psp_encoders.py` / `restyle_e4e_encoders.py` state dicts, so the converter is pSp's
rename table): `BackboneEncoder` takes every style from the last 16×16 map;
`ProgressiveBackboneEncoder` is its e4e flavour (a base w0 plus unlockable offsets);
pSp's `GradualStyleEncoder` (with input_nc 6) also works.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylejax.models import e4e
from stylejax.models import psp as psp_models
from stylejax.models.irse import ir_body
from stylejax.nn import torch_ops

ENCODER_TYPES = ("BackboneEncoder", "ProgressiveBackboneEncoder", "GradualStyleEncoder")
PROGRESSIVE_TYPES = ("ProgressiveBackboneEncoder",)


class BackboneEncoder(nn.Module):
    """IR-SE trunk → one map2style block per W+ row, all on the final map (16×16 for the
    official 256 px input; `block_spatial` is that size, so smaller inputs get fewer convs)."""

    n_styles: int = 18
    style_dim: int = 512
    num_layers: int = 50
    mode: str = "ir_se"
    base_width: int = 64
    block_spatial: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        x, _ = ir_body(x, self.num_layers, self.mode, self.base_width, train)
        styles = [
            psp_models.GradualStyleBlock(self.style_dim, self.block_spatial, name=f"styles_{i}")(x)
            for i in range(self.n_styles)
        ]
        return jnp.stack(styles, axis=1)


class ProgressiveBackboneEncoder(BackboneEncoder):
    """ReStyle-e4e: row 0 = w0 = styles_0, row i = w0 + styles_i for the unlocked rows."""

    def __call__(self, x, train: bool = False, stage=None):
        return e4e.progressive_codes(super().__call__(x, train), stage)


def build_encoder(encoder_type: str, **kwargs) -> nn.Module:
    classes = {
        "BackboneEncoder": BackboneEncoder,
        "ProgressiveBackboneEncoder": ProgressiveBackboneEncoder,
        "GradualStyleEncoder": psp_models.GradualStyleEncoder,
    }
    if encoder_type not in classes:
        raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {encoder_type!r}")
    return classes[encoder_type](**kwargs)


class ReStyle(psp_models.PSP):
    """Iterative refinement around the StyleGAN2 decoder.

    Variables as stylejax PSP: params/{encoder, decoder}, batch_stats/encoder,
    buffers/{decoder, latent_avg}. `__call__` runs `n_iters` steps and returns every step's
    images [T, N, R, R, 3] and codes [T, N, n_styles, w]. `init` (optional, [N, n, w]) starts
    from another encoder's codes instead of latent_avg (encoder bootstrapping); its image is
    then G(init).
    """

    start_from_latent_avg: bool = False  # the residuals never add latent_avg themselves

    @property
    def progressive(self) -> bool:
        return isinstance(self.encoder, ProgressiveBackboneEncoder)

    def average_image(self, noise_mode: str = "const"):
        """G(latent_avg) [1, R, R, 3], the reconstruction every input starts from."""
        return self.decode(self.latent_avg.value[None], noise_mode)

    def start(self, x, init=None, noise_mode: str = "const"):
        """(codes, images) of step −1: latent_avg and its image, or `init` and G(init)."""
        if init is None:
            avg = self.latent_avg.value
            codes = jnp.broadcast_to(avg, (x.shape[0],) + avg.shape)
            avg_image = self.average_image(noise_mode)
            images = jnp.broadcast_to(avg_image, x.shape[:1] + avg_image.shape[1:])
            return codes, images
        return init, self.decode(init, noise_mode)

    def step(self, x, codes, images, *, stage=None, train=False, noise_mode="const"):
        """One refinement: (new codes, new images, the residual)."""
        previous = torch_ops.adaptive_avg_pool2d(images, x.shape[1:3])
        inputs = jnp.concatenate([x, previous.astype(x.dtype)], axis=-1)
        if self.progressive:
            residual = self.encoder(inputs, train, stage)
        elif stage is not None:
            raise ValueError(f"{type(self.encoder).__name__} has no progressive stage")
        else:
            residual = self.encoder(inputs, train)
        codes = codes + residual
        return codes, self.decode(codes, noise_mode), residual

    def __call__(
        self,
        x,
        n_iters: int = 5,
        *,
        init=None,
        stage=None,
        train: bool = False,
        noise_mode: str = "const",
        return_residuals: bool = False,
    ):
        if self.is_initializing():  # the W+ path skips the mapping network; create it too
            self.decoder.map(jnp.zeros((1, self.decoder.z_dim)))
        codes, images = self.start(x, init, noise_mode)
        all_codes, all_images, residuals = [], [], []
        for _ in range(n_iters):
            codes, images, residual = self.step(
                x, codes, images, stage=stage, train=train, noise_mode=noise_mode
            )
            all_codes.append(codes)
            all_images.append(images)
            residuals.append(residual)
        out = jnp.stack(all_images), jnp.stack(all_codes)
        return out + (jnp.stack(residuals),) if return_residuals else out


def run_iterations(model: ReStyle, variables, x, n_iters: int = 5, init=None, stage=None):
    """Inference with the step under `lax.scan` (one compiled step whatever n_iters): every
    step's images [T, N, R, R, 3] and codes [T, N, n, w]. Pure; jit it with n_iters static:
    `jax.jit(run_iterations, static_argnums=(0, 3))`."""
    codes, images = model.apply(variables, x, init, method=ReStyle.start)

    def body(carry, _):
        codes, images, _ = model.apply(variables, x, *carry, stage=stage, method=ReStyle.step)
        return (codes, images), (images, codes)

    _, (images, codes) = jax.lax.scan(body, (codes, images), None, length=n_iters)
    return images, codes
