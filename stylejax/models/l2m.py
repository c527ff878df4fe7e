"""L2M-GAN (rucmlcv/L2M-GAN): attribute editing by decomposing a StarGAN v2 style code.

The style encoder maps an image to a style s of its source domain, a decomposer splits s
into the attribute-irrelevant part s1 = transform1(s) and the attribute part s2 = s − s1, a
per-domain transformer maps s2 to the target domain, s3 = transform2[y_trg](s2), and the
generator decodes the edited style s1 + s2 + α·(s3 − s2) (α is the editing strength: 0
reconstructs, 1 edits fully, above 1 extrapolates).

    model, variables = stylejax.model_format.load_pretrained("l2m_celebahq")
    edited = model.apply(variables, x, y_src, y_trg, alpha)        # NHWC in [-1, 1]

Names follow the official state-dict keys (`transform2.1.4` → `transform2_1_4`), see
stylejax/models/stargan_v2.py.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylejax.models import stargan_v2
from stylejax.models.fan import FAN


def edit_style(s1, s2, s3, alpha):
    """s1 + s2 + α·(s3 − s2), in the official order of operations (α = 1 equals s1 + s3
    only up to rounding)."""
    alpha = jnp.asarray(alpha, s2.dtype)
    if alpha.ndim == 1:
        alpha = alpha[:, None]
    return s1 + s2 + alpha * (s3 - s2)


def orthogonality(a, b, eps: float = 1e-8):
    """Per-sample |cos(a, b)|: 0 exactly when the two parts are perpendicular."""
    dot = jnp.sum(a * b, axis=-1)
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.abs(dot) / (norms + eps)


class StyleEncoder(nn.Module):
    """StarGAN v2 style encoder + L2M decomposer (`transform1`, 3 Linear layers with ReLUs
    between) + one transformer per domain (`transform2_{d}`, the same shape)."""

    img_size: int = 256
    style_dim: int = 64
    num_domains: int = 2
    max_conv_dim: int = 512
    dim_in: int | None = None

    def setup(self):
        for index, layer in stargan_v2.trunk_layers(self.img_size, self.max_conv_dim, self.dim_in):
            setattr(self, f"shared_{index}", layer)
        for d in range(self.num_domains):
            setattr(self, f"unshared_{d}", nn.Dense(self.style_dim))
        for i in (0, 2, 4):
            setattr(self, f"transform1_{i}", nn.Dense(self.style_dim))
            for d in range(self.num_domains):
                setattr(self, f"transform2_{d}_{i}", nn.Dense(self.style_dim))

    def _trunk(self):
        return [getattr(self, f"shared_{i}") for i in stargan_v2.trunk_indices(self.img_size)]

    def _mlp(self, prefix, x):
        x = nn.relu(getattr(self, f"{prefix}_0")(x))
        x = nn.relu(getattr(self, f"{prefix}_2")(x))
        return getattr(self, f"{prefix}_4")(x)

    def styles(self, x):
        """Every domain head's style: [N, num_domains, style_dim]."""
        h = stargan_v2.run_trunk(self._trunk(), x)
        return jnp.stack([getattr(self, f"unshared_{d}")(h) for d in range(self.num_domains)], 1)

    def style(self, x, y):
        return stargan_v2.select_domain(self.styles(x), y)

    def decompose(self, s):
        """(s1, s2): the attribute-irrelevant part and the attribute part of style s."""
        s1 = self._mlp("transform1", s)
        return s1, s - s1

    def transform_all(self, s2):
        """Every domain's transformer applied to s2: [N, num_domains, style_dim]."""
        return jnp.stack([self._mlp(f"transform2_{d}", s2) for d in range(self.num_domains)], 1)

    def transform(self, s2, y_trg):
        return stargan_v2.select_domain(self.transform_all(s2), y_trg)

    def __call__(self, x, y_src, y_trg):
        """The official forward: (s, s1, s2, s3)."""
        s = self.style(x, y_src)
        s1, s2 = self.decompose(s)
        return s, s1, s2, self.transform(s2, y_trg)


class L2MGAN(nn.Module):
    """Generator + L2M style encoder (+ the FAN when w_hpf > 0): the inference model of an
    official `*_nets_ema.ckpt` or of a stylejax training run."""

    img_size: int = 256
    style_dim: int = 64
    num_domains: int = 2
    max_conv_dim: int = 512
    w_hpf: float = 1.0
    dim_in: int | None = None
    # Our mapping network (StarGAN v2's) for latent-guided edits; the official model has none.
    latent_dim: int = 16
    mapping_hidden_dim: int | None = None

    def setup(self):
        self.generator = stargan_v2.Generator(
            self.img_size, self.style_dim, self.max_conv_dim, self.w_hpf, self.dim_in
        )
        self.style_encoder = StyleEncoder(
            self.img_size, self.style_dim, self.num_domains, self.max_conv_dim, self.dim_in
        )
        if self.w_hpf > 0:
            self.fan = FAN()
        if self.mapping_hidden_dim is not None:
            self.mapping = stargan_v2.MappingNetwork(
                self.style_dim, self.num_domains, self.mapping_hidden_dim
            )

    def latent_style(self, z, y):
        """A random style of domain y from the mapping network (trained models only)."""
        if self.mapping_hidden_dim is None:
            raise ValueError("this model has no mapping network (official L2M-GAN has none)")
        return self.mapping(z, y)

    def masks(self, x):
        """The high-pass masks (None when w_hpf = 0)."""
        return self.fan.masks(x) if self.w_hpf > 0 else None

    def generate(self, x, s, masks=None):
        return self.generator(x, s, masks)

    def encode(self, x, y_src, y_trg):
        return self.style_encoder(x, y_src, y_trg)

    def reference_style(self, x, s_ref, y_src):
        """Reference-guided edit style: x's attribute-irrelevant part plus the attribute
        part of the reference style s_ref (from another image's encoder head or the
        mapping network)."""
        s1, _ = self.style_encoder.decompose(self.style_encoder.style(x, y_src))
        _, s2_ref = self.style_encoder.decompose(s_ref)
        return s1 + s2_ref

    def __call__(self, x, y_src, y_trg, alpha=1.0):
        """x edited from domain y_src to y_trg at strength alpha (scalar or per sample)."""
        _, s1, s2, s3 = self.style_encoder(x, y_src, y_trg)
        return self.generator(x, edit_style(s1, s2, s3, alpha), self.masks(x))

    def sweep(self, x, y_src, y_trg, alphas):
        """[N, len(alphas), H, W, 3]: each image edited at every strength (one encoder and
        FAN pass, one batched generator call)."""
        _, s1, s2, s3 = self.style_encoder(x, y_src, y_trg)
        masks = self.masks(x)
        k, n = len(alphas), x.shape[0]
        styles = jnp.concatenate([edit_style(s1, s2, s3, a) for a in alphas])
        tiled = None if masks is None else tuple(jnp.tile(m, (k, 1, 1, 1)) for m in masks)
        out = self.generator(jnp.tile(x, (k, 1, 1, 1)), styles, tiled)
        return jnp.swapaxes(out.reshape(k, n, *out.shape[1:]), 0, 1)

    def reference_edit(self, x, y_src, x_ref, y_ref):
        """x with the attribute part of reference images x_ref (of domains y_ref)."""
        s_ref = self.style_encoder.style(x_ref, y_ref)
        return self.generator(x, self.reference_style(x, s_ref, y_src), self.masks(x))


def domain_index(attributes, names) -> np.ndarray | jax.Array:
    """Multi-attribute domains: attribute k contributes bit k, so ⟨Smiling, Eyeglasses⟩ gives
    domains 0 (neither), 1 (Smiling), 2 (Eyeglasses), 3 (both)."""
    index = 0
    for bit, name in enumerate(names):
        index = index + (jnp.asarray(attributes[name]).astype(jnp.int32) << bit)
    return index


def domain_names(names) -> list[str]:
    """Readable names of the 2**len(names) domains, in domain_index order."""
    out = []
    for index in range(2 ** len(names)):
        on = [n for bit, n in enumerate(names) if index >> bit & 1]
        out.append("+".join(on) if on else "no " + "/".join(names))
    return out
