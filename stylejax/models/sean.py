"""SEAN (Zhu et al. 2020): semantic region-adaptive normalisation, one style code per region.

Module names mirror the official ZPdesu/SEAN state dicts (`Zencoder/model_{i}`, `fc`,
`head_0/ace_0/fc_mu{j}`, `up_0/conv_s`, `discriminator_0/model1` …) so that
`stylejax/convert/sean.py` is a rename table. NHWC; images in [-1, 1]; label maps are
one-hot float [N, H, W, label_nc] (`one_hot`).

Rules of the official code kept on purpose (see docs/sean.md):
- every label-map resize is torch's legacy nearest (source index floor(dst·in/out));
- the ACE adds one noise value per pixel (shared by all channels, scaled per channel by
  `noise_var`) *before* its parameter-free batch norm, and draws it in eval mode too;
- the normalisation is batch norm whatever the config says; under `jax.jit` with the batch
  sharded over devices its statistics are over the global batch (synchronised BN);
- there are always 19 per-region style transforms (`fc_mu0` … `fc_mu18`), whatever label_nc;
- block convs are spectrally normalised with σ = u·(W v) from the stored u and v; a train-mode
  call first does one power iteration (as torch does) and stores the new u and v;
- the discriminator's 4×4 convs pad by 2, so maps go 64 → 33 → 17 → 9 → 10.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from stylejax.nn import torch_ops
from stylejax.nn.conv import Conv, conv_general_dilated

NUM_STYLE_LAYERS = 19  # official ACE modules always hold fc_mu0 … fc_mu18
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
SN_EPS = 1e-12
BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
STYLED_BLOCKS = BLOCKS[:-1]  # up_3 uses the SPADE branch only


def xavier(gain: float = 0.02):
    """torch's xavier_normal_(gain): std = gain·√(2 / (fan_in + fan_out)); SPADE's init."""
    return nn.initializers.variance_scaling(gain**2, "fan_avg", "normal")


# torch's default conv init (kaiming_uniform, a=√5): U(±1/√fan_in). SPADE's xavier init
# does not reach spectrally normalised convs, so they keep it.
torch_default_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def one_hot(labels, label_nc: int, dtype=jnp.float32):
    """Class indices [N, H, W] → one-hot maps [N, H, W, label_nc]."""
    return jax.nn.one_hot(labels, label_nc, dtype=dtype)


def conv(features: int, kernel: int, pad: int | None = None, stride: int = 1, name=None):
    """A torch-style conv: explicit symmetric zero padding (kernel // 2 unless given)."""
    pad = kernel // 2 if pad is None else pad
    return Conv(
        features,
        (kernel, kernel),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        kernel_init=xavier(),
        name=name,
    )


def reflect_pad(x, pad: int = 1):
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class ParamFreeBatchNorm(nn.Module):
    """SyncBatchNorm(affine=False): batch statistics over N, H, W in training (running stats
    updated with momentum 0.1 and the unbiased variance), running statistics otherwise."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        mean_var = self.variable("batch_stats", "running_mean", jnp.zeros, (c,), jnp.float32)
        var_var = self.variable("batch_stats", "running_var", jnp.ones, (c,), jnp.float32)
        if train:
            # On a batch sharded over devices these means are global: XLA inserts the
            # cross-device reductions, which is what torch's SyncBatchNorm does by hand.
            mean = jnp.mean(x, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
            if not self.is_initializing():
                n = x.shape[0] * x.shape[1] * x.shape[2]
                unbiased = var * (n / max(n - 1, 1))
                mean_var.value = (1 - BN_MOMENTUM) * mean_var.value + BN_MOMENTUM * mean
                var_var.value = (1 - BN_MOMENTUM) * var_var.value + BN_MOMENTUM * unbiased
        else:
            mean, var = mean_var.value, var_var.value
        return (x - mean) * lax.rsqrt(var + BN_EPS)


def _l2_normalize(v):
    return v / jnp.maximum(jnp.linalg.norm(v), SN_EPS)


class SpectralConv(nn.Module):
    """torch.nn.utils.spectral_norm(Conv2d): kernel / σ with σ = u·(W v), W the kernel as an
    [out, in·kh·kw] matrix (torch's OIHW flattening). `u` and `v` live in the 'spectral'
    collection; a train-mode call does one power iteration first and stores them."""

    features: int
    kernel_size: int
    stride: int = 1
    pad: int | None = None
    use_bias: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        k, in_ch = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", torch_default_init, (k, k, in_ch, self.features))
        w_mat = jnp.transpose(kernel, (3, 2, 0, 1)).reshape(self.features, -1)
        u = self.variable(
            "spectral",
            "u",
            lambda: _l2_normalize(jax.random.normal(self.make_rng("params"), (self.features,))),
        )
        v = self.variable(
            "spectral",
            "v",
            lambda: _l2_normalize(jax.random.normal(self.make_rng("params"), (w_mat.shape[1],))),
        )
        u_vec, v_vec = u.value, v.value
        if train:
            w_stop = lax.stop_gradient(w_mat)
            v_vec = _l2_normalize(w_stop.T @ u_vec)
            u_vec = _l2_normalize(w_stop @ v_vec)
            if not self.is_initializing():
                u.value, v.value = u_vec, v_vec
        sigma = jnp.dot(u_vec, w_mat @ v_vec)
        pad = k // 2 if self.pad is None else self.pad
        y = conv_general_dilated(
            x,
            (kernel / sigma).astype(x.dtype),
            (self.stride, self.stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class Zencoder(nn.Module):
    """The per-region style encoder: reflect-pad conv, two stride-2 convs, one transposed
    conv back up (128 → 256 channels), reflect-pad conv + tanh, all with instance norm and
    LeakyReLU 0.2 between; then the mean of the map inside each region (mask resized with
    the legacy nearest rule). Returns (codes [N, L, S], present [N, L] bool, feature map)."""

    style_length: int = 512
    ngf: int = 32
    n_downsampling: int = 2

    @nn.compact
    def __call__(self, image, segmap):
        x = conv(self.ngf, 3, pad=0, name="model_1")(reflect_pad(image))
        x = nn.leaky_relu(torch_ops.instance_norm(x), 0.2)
        index = 4
        for i in range(self.n_downsampling):
            x = conv(self.ngf * 2 ** (i + 1), 3, pad=1, stride=2, name=f"model_{index}")(x)
            x = nn.leaky_relu(torch_ops.instance_norm(x), 0.2)
            index += 3
        x = ConvTranspose2x(256, name=f"model_{index}")(x)
        x = nn.leaky_relu(torch_ops.instance_norm(x), 0.2)
        x = conv(self.style_length, 3, pad=0, name=f"model_{index + 4}")(reflect_pad(x))
        feat = jnp.tanh(x)
        codes, present = region_means(feat, segmap)
        return codes, present, feat


def region_means(feat, segmap):
    """Mean of feat [N, h, w, S] inside each region of segmap [N, H, W, L] (resized to h×w
    with the legacy nearest rule) → ([N, L, S], present [N, L]); absent regions get 0."""
    mask = torch_ops.resize_nearest(segmap, feat.shape[1:3]).astype(feat.dtype)
    area = jnp.sum(mask, axis=(1, 2))  # [N, L]
    sums = jnp.einsum("nhwl,nhws->nls", mask, feat, precision=lax.Precision.HIGHEST)
    present = area > 0
    codes = jnp.where(present[..., None], sums / jnp.maximum(area, 1)[..., None], 0.0)
    return codes, present


class ConvTranspose2x(nn.Module):
    """ConvTranspose2d(k3, s2, p1, output_padding 1) as a dilated correlation; `kernel` is
    HWIO and already spatially flipped (the converter flips torch's [in, out, kh, kw])."""

    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", xavier(), (3, 3, x.shape[-1], self.features))
        y = conv_general_dilated(
            x,
            kernel.astype(x.dtype),
            (1, 1),
            ((1, 2), (1, 2)),
            lhs_dilation=(2, 2),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.param("bias", nn.initializers.zeros, (self.features,))


class SPADE(nn.Module):
    """The mask-only branch: shared 3×3 conv + ReLU (128 hidden), then γ and β convs."""

    features: int
    hidden: int = 128

    @nn.compact
    def __call__(self, segmap):
        actv = nn.relu(conv(self.hidden, 3, name="mlp_shared")(segmap))
        return conv(self.features, 3, name="mlp_gamma")(actv), conv(
            self.features, 3, name="mlp_beta"
        )(actv)


class ACE(nn.Module):
    """SEAN normalisation. out = BN(x + n·noise_var)·(1 + γ) + β with
    γ = σ(b_γ)·conv_gamma(style map) + (1 − σ(b_γ))·γ_spade (β likewise); the style map holds
    ReLU(fc_mu_j(s_j)) on the pixels of region j. `use_rgb=False` keeps the SPADE branch only.

    noise: [N, H, W, 1] to add, or None to draw it (rng 'noise'), or 0 for none."""

    features: int
    use_rgb: bool = True
    style_length: int = 512
    spade_hidden: int = 128

    @nn.compact
    def __call__(self, x, segmap, style_codes=None, noise=None, train: bool = False):
        noise_var = self.param("noise_var", nn.initializers.zeros, (self.features,))
        if noise is None:
            noise = jax.random.normal(self.make_rng("noise"), x.shape[:3] + (1,), x.dtype)
        normalized = ParamFreeBatchNorm(name="param_free_norm")(x + noise * noise_var, train)
        segmap = torch_ops.resize_nearest(segmap, x.shape[1:3]).astype(x.dtype)
        gamma, beta = SPADE(self.features, self.spade_hidden, name="Spade")(segmap)
        blend_g = self.param("blending_gamma", nn.initializers.zeros, (1,))
        blend_b = self.param("blending_beta", nn.initializers.zeros, (1,))
        if self.use_rgb:
            style_map = self.style_map(segmap, style_codes)
            a_g, a_b = jax.nn.sigmoid(blend_g), jax.nn.sigmoid(blend_b)
            gamma = a_g * conv(self.features, 3, name="conv_gamma")(style_map) + (1 - a_g) * gamma
            beta = a_b * conv(self.features, 3, name="conv_beta")(style_map) + (1 - a_b) * beta
        return normalized * (1 + gamma) + beta

    def style_map(self, segmap, style_codes):
        """Σ_j mask_j ⊗ ReLU(fc_mu_j(s_j)) → [N, H, W, S] (the official masked_scatter_;
        the same for one-hot masks)."""
        label_nc = segmap.shape[-1]
        if label_nc > NUM_STYLE_LAYERS:
            raise ValueError(
                f"SEAN has {NUM_STYLE_LAYERS} per-region style layers; got a label map "
                f"with {label_nc} classes"
            )
        if style_codes is None or style_codes.shape[1] != label_nc:
            raise ValueError(
                f"style codes must be [N, {label_nc}, {self.style_length}] for a "
                f"{label_nc}-class label map, got "
                f"{None if style_codes is None else style_codes.shape}"
            )
        # All 19 layers exist (as in the official files); the first label_nc are applied
        # together as one batched matmul.
        weights = [FcMu(self.style_length, name=f"fc_mu{j}")() for j in range(NUM_STYLE_LAYERS)]
        kernels = jnp.stack([k for k, _ in weights[:label_nc]])  # [L, S, S]
        biases = jnp.stack([b for _, b in weights[:label_nc]])  # [L, S]
        mu = nn.relu(
            jnp.einsum("nls,lst->nlt", style_codes, kernels, precision=lax.Precision.HIGHEST)
            + biases
        )
        return jnp.einsum("nhwl,nls->nhws", segmap, mu, precision=lax.Precision.HIGHEST)


class FcMu(nn.Module):
    """A Linear(S, S)'s parameters (kernel [in, out], bias), applied by the ACE in a batch."""

    features: int

    @nn.compact
    def __call__(self):
        kernel = self.param("kernel", xavier(), (self.features, self.features))
        return kernel, self.param("bias", nn.initializers.zeros, (self.features,))


class ResBlock(nn.Module):
    """SPADEResnetBlock with ACE norms: conv_1(lrelu(ace_1(conv_0(lrelu(ace_0(x)))))) plus
    the shortcut conv_s(ace_s(x)) (no activation, no bias) when the width changes."""

    fin: int
    fout: int
    use_rgb: bool = True
    style_length: int = 512
    spade_hidden: int = 128

    @nn.compact
    def __call__(self, x, segmap, style_codes, noises=None, train: bool = False):
        noises = noises or {}
        fmiddle = min(self.fin, self.fout)
        ace = lambda c, name: ACE(c, self.use_rgb, self.style_length, self.spade_hidden, name=name)
        if self.fin != self.fout:
            x_s = ace(self.fin, "ace_s")(x, segmap, style_codes, noises.get("s"), train)
            x_s = SpectralConv(self.fout, 1, use_bias=False, name="conv_s")(x_s, train)
        else:
            x_s = x
        dx = ace(self.fin, "ace_0")(x, segmap, style_codes, noises.get("0"), train)
        dx = SpectralConv(fmiddle, 3, name="conv_0")(nn.leaky_relu(dx, 0.2), train)
        dx = ace(fmiddle, "ace_1")(dx, segmap, style_codes, noises.get("1"), train)
        dx = SpectralConv(self.fout, 3, name="conv_1")(nn.leaky_relu(dx, 0.2), train)
        return x_s + dx


def block_channels(ngf: int) -> dict[str, tuple[int, int]]:
    """(fin, fout) of each block: 16·ngf down to ngf."""
    widths = (16, 16, 16, 16, 8, 4, 2, 1)
    return {name: (widths[i] * ngf, widths[i + 1] * ngf) for i, name in enumerate(BLOCKS)}


def ace_names(block: str) -> tuple[str, ...]:
    """The official ACE_Name of each ACE a block calls, in call order (s, 0, 1)."""
    prefix = ("s",) if block.startswith("up_") else ()
    return tuple(f"{block}_ACE_{k}" for k in prefix + ("0", "1"))


class Generator(nn.Module):
    """SPADEGenerator with the SEAN Zencoder and ACE blocks.

    Five nearest 2× up-samplings ('normal'; six for 'more'), so the head runs at the label
    map's size / 32 (the official crop_size // 32). Call with a one-hot label map and a style image (codes from the
    Zencoder) or with `style_codes` [N, L, S] — or a dict {block: [N, L, S]} for a per-block
    style crossover. `noise` maps official ACE names ('up_0_ACE_s', …) to [N, H, W, 1]
    arrays; the others are drawn from rng 'noise' (noise_mode='random', the official
    behaviour) or left out (noise_mode='zero').
    """

    label_nc: int
    ngf: int = 64
    num_upsampling_layers: str = "normal"
    style_length: int = 512
    zencoder_ngf: int = 32
    spade_hidden: int = 128

    def setup(self):
        if self.num_upsampling_layers not in ("normal", "more"):
            raise ValueError(
                f"num_upsampling_layers must be 'normal' or 'more', got "
                f"{self.num_upsampling_layers!r} ('most' is broken in the official code)"
            )
        if self.label_nc > NUM_STYLE_LAYERS:
            raise ValueError(f"label_nc={self.label_nc} exceeds SEAN's {NUM_STYLE_LAYERS}")
        self.Zencoder = Zencoder(self.style_length, self.zencoder_ngf)
        self.fc = conv(16 * self.ngf, 3)
        for name, (fin, fout) in block_channels(self.ngf).items():
            block = ResBlock(
                fin, fout, name != "up_3", self.style_length, self.spade_hidden, name=name
            )
            setattr(self, name, block)
        self.conv_img = conv(3, 3)

    @property
    def num_up(self) -> int:
        return 5 if self.num_upsampling_layers == "normal" else 6

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """The head's resolution: the label map's size / 2**num_up (crop_size // 32)."""
        factor = 2**self.num_up
        if height % factor or width % factor:
            raise ValueError(
                f"label map {height}×{width}: SEAN ({self.num_upsampling_layers}) needs sizes "
                f"divisible by {factor}"
            )
        return height // factor, width // factor

    def encode(self, image, segmap):
        """Style codes [N, L, S] and presence flags [N, L] of each region of `image`."""
        codes, present, _ = self.Zencoder(image, segmap)
        return codes, present

    def __call__(
        self,
        segmap,
        image=None,
        style_codes=None,
        noise=None,
        noise_mode: str = "random",
        train: bool = False,
        return_features: bool = False,
    ):
        if noise_mode not in ("random", "zero"):
            raise ValueError(f"noise_mode must be 'random' or 'zero', got {noise_mode!r}")
        if segmap.shape[-1] != self.label_nc:
            raise ValueError(
                f"label map has {segmap.shape[-1]} channels; this generator expects "
                f"one-hot maps with label_nc={self.label_nc}"
            )
        if style_codes is None:
            if image is None:
                raise ValueError("give a style image or style_codes")
            style_codes, _ = self.encode(image, segmap)
        features = {}
        x = self.fc(torch_ops.resize_nearest(segmap, self.latent_size(*segmap.shape[1:3])))
        features["fc"] = x
        for name in BLOCKS:
            if name != "head_0" and (name != "G_middle_1" or self.num_upsampling_layers == "more"):
                x = torch_ops.resize_nearest(x, (2 * x.shape[1], 2 * x.shape[2]))
            codes = style_codes.get(name) if isinstance(style_codes, dict) else style_codes
            x = getattr(self, name)(
                x, segmap, codes, self._block_noise(name, x, noise, noise_mode), train
            )
            features[name] = x
        x = jnp.tanh(self.conv_img(nn.leaky_relu(x, 0.2)))
        return (x, features) if return_features else x

    def _block_noise(self, block, x, noise, noise_mode):
        out = {}
        for ace_name in ace_names(block):
            key = ace_name[-1]
            if noise is not None and ace_name in noise:
                out[key] = noise[ace_name]
            elif noise_mode == "zero":
                out[key] = jnp.zeros(x.shape[:3] + (1,), x.dtype)
        return out


class NLayerDiscriminator(nn.Module):
    """PatchGAN: 4×4 stride-2 conv + LeakyReLU, (n_layers − 1) spectral-norm stride-2 convs
    with instance norm + LeakyReLU, a 4×4 stride-1 conv to logits; every conv pads 2.
    Returns [model0 out, …, logits] (the first n_layers are the feature-matching features)."""

    ndf: int = 64
    n_layers: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.leaky_relu(conv(self.ndf, 4, pad=2, stride=2, name="model0")(x), 0.2)
        outs = [x]
        nf = self.ndf
        for n in range(1, self.n_layers):
            nf = min(nf * 2, 512)
            x = SpectralConv(nf, 4, 2, pad=2, use_bias=False, name=f"model{n}")(x, train)
            x = nn.leaky_relu(torch_ops.instance_norm(x), 0.2)
            outs.append(x)
        outs.append(conv(1, 4, pad=2, name=f"model{self.n_layers}")(x))
        return outs


class MultiscaleDiscriminator(nn.Module):
    """num_D PatchGANs on the input and its 2×, 4× … average-pooled copies. Input: the label
    map concatenated with the image (label first). Returns one feature list per scale."""

    ndf: int = 64
    n_layers: int = 3
    num_D: int = 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        results = []
        for i in range(self.num_D):
            results.append(
                NLayerDiscriminator(self.ndf, self.n_layers, name=f"discriminator_{i}")(x, train)
            )
            x = torch_ops.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False)
        return results


def init_generator(G: Generator, rng, size: int = 64, batch: int = 1):
    """Initial variables {'params', 'batch_stats', 'spectral'} of G for size×size maps."""
    segmap = jnp.zeros((batch, size, size, G.label_nc)).at[..., 0].set(1.0)
    image = jnp.zeros((batch, size, size, 3))
    return init_variables(G, rng, segmap, image)


def init_discriminator(D: MultiscaleDiscriminator, rng, label_nc: int, size: int = 64):
    return init_variables(D, rng, jnp.zeros((1, size, size, label_nc + 3)))


def init_variables(module, rng, *args):
    """The variables `module.init` would make, drawn from one random stream: a JAX key, or
    a numpy Generator to build them on the host without compiling anything.

    Same distributions as the modules' initialisers (xavier(0.02) kernels, torch's default
    for spectrally normalised ones, zero biases, noise strengths and blending logits, unit
    u and v, BN mean 0 / var 1), but XLA compiles one draw instead of one threefry per
    parameter: flax's per-parameter keys took minutes to compile for the generator's
    ~700 parameters on a CPU.
    """
    abstract = jax.eval_shape(
        lambda r: module.init({"params": r, "noise": r}, *args), jax.random.PRNGKey(0)
    )
    spectral = {path[1:-1] for path, _ in _flat_paths(abstract.get("spectral", {}), ("spectral",))}
    paths = _flat_paths(abstract)
    sizes = [int(np.prod(leaf.shape)) for _, leaf in paths]
    if isinstance(rng, np.random.Generator):
        xp, draws = np, rng.standard_normal(sum(sizes), np.float32)
    else:
        xp, draws = jnp, jax.random.normal(rng, (sum(sizes),))
    leaves, offset = {}, 0
    for (path, leaf), size in zip(paths, sizes):
        z = draws[offset : offset + size].reshape(leaf.shape)
        offset += size
        leaves[path] = _initial_value(xp, path, leaf.shape, z, path[1:-1] in spectral)
    return _unflatten(leaves)


def _flat_paths(tree, prefix=()):
    if not isinstance(tree, dict):
        return [(prefix, tree)]
    return [item for k in sorted(tree) for item in _flat_paths(tree[k], prefix + (k,))]


def _unflatten(leaves: dict) -> dict:
    out: dict = {}
    for path, value in leaves.items():
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _initial_value(xp, path, shape, z, spectrally_normalised: bool):
    collection, name = path[0], path[-1]
    if collection == "spectral":  # u, v: random unit vectors
        return z / xp.maximum(xp.linalg.norm(z), SN_EPS)
    if collection == "batch_stats":
        return xp.ones(shape, xp.float32) if name == "running_var" else xp.zeros(shape, xp.float32)
    if name != "kernel":  # biases, noise_var, blending_gamma / blending_beta
        return xp.zeros(shape, xp.float32)
    receptive = int(np.prod(shape[:-2]))
    fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
    if spectrally_normalised:  # U(±1/√fan_in) has variance 1/(3·fan_in)
        return z * np.float32(np.sqrt(1 / (3 * fan_in)))
    return z * np.float32(0.02 * np.sqrt(2 / (fan_in + fan_out)))


# ---------------------------------------------------------------------------------------
# Editing: per-region style control on style matrices [N, L, S] (see docs/sean.md).


def _region_mask(num_regions: int, regions) -> jnp.ndarray:
    mask = np.zeros(num_regions, bool)
    for r in regions:
        if not 0 <= r < num_regions:
            raise ValueError(f"region {r} is not a class of this {num_regions}-class model")
        mask[r] = True
    return jnp.asarray(mask)[None, :, None]


def transfer_regions(codes, donor_codes, regions, donor_present=None):
    """`codes` with the rows of `regions` taken from `donor_codes` (the style of those
    regions in the donor image). With `donor_present` [N, L], a region the donor image
    lacks keeps its own style instead of the donor's zero row."""
    take = _region_mask(codes.shape[1], regions)
    if donor_present is not None:
        take = take & donor_present[..., None]
    return jnp.where(take, donor_codes, codes)


def interpolate_regions(codes_a, codes_b, t, regions=None):
    """(1 − t)·a + t·b on the rows of `regions` (all rows when None); a's rows elsewhere."""
    mixed = codes_a + t * (codes_b - codes_a)
    if regions is None:
        return mixed
    return jnp.where(_region_mask(codes_a.shape[1], regions), mixed, codes_a)


def paint(labels, where, label: int):
    """Edits a class map [N, H, W]: the pixels where `where` is true become `label`."""
    return jnp.where(where, label, labels)


def crossover(codes_a, codes_b, blocks_from_b) -> dict:
    """Per-ResBlk style codes for Generator(style_codes=…): the blocks named in
    `blocks_from_b` (e.g. the coarse 'head_0', 'G_middle_0') use b's codes, the others a's."""
    unknown = set(blocks_from_b) - set(STYLED_BLOCKS)
    if unknown:
        raise ValueError(f"unknown blocks {sorted(unknown)}; styled blocks are {STYLED_BLOCKS}")
    return {name: codes_b if name in blocks_from_b else codes_a for name in STYLED_BLOCKS}
