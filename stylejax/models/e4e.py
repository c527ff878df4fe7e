"""e4e, the encoder for editing (Tov et al. 2021), and its latent discriminator, as Flax modules.

`Encoder4Editing` has exactly the parameters of pSp's GradualStyleEncoder (the official
checkpoints share every key name and shape); only the forward differs: one base code
w0 = styles_0(c3) is repeated over all W+ rows, and row i adds its own offset styles_i(f),
f being the pyramid level pSp would use for that style. Progressive training unlocks the
offsets one by one: at stage s only offsets 1 … s are added (stage None: all of them, the
official `ProgressiveStage.Inference`). The stage may be a traced integer, so one compiled
training step serves every stage.
"""

import flax.linen as nn
import jax.numpy as jnp

from stylejax.models import psp as psp_models

ENCODER_TYPES = ("Encoder4Editing",)


def progressive_codes(styles, stage=None):
    """[N, n, w] per-row head outputs → [N, n, w] codes: row 0 = w0, row i = w0 + Δi for
    i ≤ stage, w0 for the rows not yet unlocked."""
    w0, deltas = styles[:, :1], styles[:, 1:]
    if stage is not None:
        active = jnp.arange(1, styles.shape[1]) <= stage
        deltas = jnp.where(active[None, :, None], deltas, 0)
    return jnp.concatenate([w0, w0 + deltas], axis=1)


def delta_norms(codes, stage=None, p: float = 2.0):
    """‖w_i − w_0‖_p per sample for every unlocked row i ≥ 1: [N, n − 1], locked rows 0."""
    deltas = codes[:, 1:] - codes[:, :1]
    total = jnp.sum(jnp.abs(deltas) ** p, axis=-1)
    # Locked rows have Δ = 0 exactly: a zero (sub)gradient there, not ∞ · 0 = NaN.
    safe = jnp.where(total > 0, total, 1.0)
    norms = jnp.where(total > 0, safe ** (1.0 / p), 0.0)
    if stage is not None:
        norms = jnp.where(jnp.arange(1, codes.shape[1])[None] <= stage, norms, 0)
    return norms


class Encoder4Editing(psp_models.GradualStyleEncoder):
    """IR-SE trunk + feature pyramid (pSp's) → w0 + progressive per-row offsets."""

    def __call__(self, x, train: bool = False, stage=None):
        return progressive_codes(super().__call__(x, train), stage)


class E4E(psp_models.PSP):
    """pSp wrapper whose encoder takes the progressive stage: codes = E(x, stage)
    (+ latent_avg when start_from_latent_avg, as e4e's forward does)."""

    def encode(self, x, train: bool = False, stage=None):
        codes = self.encoder(x, train, stage)
        if self.start_from_latent_avg:
            codes = codes + self.latent_avg.value
        return codes

    def __call__(
        self,
        x,
        *,
        stage=None,
        train: bool = False,
        noise_mode: str = "const",
        resize: bool = False,
        return_latents: bool = False,
    ):
        if self.is_initializing():  # the W+ path skips the mapping network; create it too
            self.decoder.map(jnp.zeros((1, self.decoder.z_dim)))
        codes = self.encode(x, train, stage)
        images = self.decode(codes, noise_mode, resize)
        return (images, codes) if return_latents else images


class LatentCodesDiscriminator(nn.Module):
    """e4e's discriminator on single W codes: `num_layers` − 1 × (Dense, LeakyReLU 0.2), then
    Dense → 1 logit. Names `mlp_{0,2,4,6}` mirror the official `mlp.{0,2,4,6}`."""

    features: int = 512
    num_layers: int = 4

    @nn.compact
    def __call__(self, w):
        for i in range(self.num_layers - 1):
            w = nn.leaky_relu(nn.Dense(self.features, name=f"mlp_{2 * i}")(w), 0.2)
        return nn.Dense(1, name=f"mlp_{2 * (self.num_layers - 1)}")(w)
