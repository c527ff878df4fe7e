"""Optimisation-based projection of images into a StyleGAN2 generator's W or W+ space and
its noise maps, following the StyleGAN2 paper (Karras et al. 2020, appendix D) and the
defaults of stylegan2-ada-pytorch's projector:

- the latent starts at w_avg (the mean of 10,000 mapped z) and the noise maps at N(0, 1);
- each step adds Gaussian noise to w with std σ_w · 0.05 · max(0, 1 − t/0.75)², where σ_w is
  the RMS distance of the sampled w from w_avg (explores early, settles late);
- loss = LPIPS-VGG distance(G(w), target) + 1e5 · noise regularisation, the latter summing
  the squared lag-1 autocorrelations (horizontal and vertical) of every noise map and of its
  2×2-average-pooled pyramid down to 8×8, so the maps cannot carry image content;
- Adam (β 0.9, 0.999) with a learning-rate ramp: cosine ramp-down over the last 25 % of the
  steps and linear ramp-up over the first 5 %, peak 0.1;
- after every step each noise map is re-normalised to zero mean and unit variance.

All steps run in one jitted `lax.fori_loop`; a batch of images is projected at once, each
image with its own latent and noise maps (the generator is vmapped over the images), and the
images never interact. Images larger than 256 px are area-downsampled to 256 before the
distance, as in the official projector.

LPIPS-VGG weights are not downloadable offline: pass a converted LPIPS network
(`load_pretrained(dir)` of `tools/convert_weights.py vgg.pth DIR --lpips-backbone
vgg16-397923af.pth`). Without one, the distance is the pixel mean squared error and a
warning says so; MSE projections are blurrier on real photographs but exact on images the
generator can produce.
"""

import dataclasses
import functools
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from stylejax import stylegan2_generate
from stylejax.models import lpips as lpips_lib

log = logging.getLogger(__name__)

DISTANCES = ("lpips", "mse")
LPIPS_MAX_RES = 256  # the official projector compares images at 256 px at most


@dataclasses.dataclass(frozen=True)
class ProjectionConfig:
    """Hyper-parameters; the defaults are the StyleGAN2 projector's."""

    num_steps: int = 1000
    space: str = "w"  # "w": one code for every layer; "w+": one code per layer
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    optimize_noise: bool = True
    w_avg_samples: int = 10000
    num_snapshots: int = 8  # images kept for the progress strip (evenly spaced steps)

    def __post_init__(self):
        if self.space not in ("w", "w+"):
            raise ValueError(f"projection space must be 'w' or 'w+', got {self.space!r}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not 1 <= self.num_snapshots <= self.num_steps:
            raise ValueError(f"num_snapshots must be in 1…num_steps, got {self.num_snapshots}")


@dataclasses.dataclass
class ProjectionResult:
    ws: np.ndarray  # [N, num_ws, w_dim] the projected W+ codes (W: all rows equal)
    noise: dict  # {'b8/conv0': [N, 8, 8], …} the optimised noise maps
    images: np.ndarray  # [N, R, R, C] G(ws) with those noise maps, in [-1, 1]
    snapshots: np.ndarray  # [S, N, R, R, C] images along the optimisation
    snapshot_steps: np.ndarray  # [S] the step after which each snapshot was taken
    distances: np.ndarray  # [num_steps, N] the distance at every step
    distance: str  # "lpips" or "mse"


def learning_rate(step, config: ProjectionConfig):
    """The StyleGAN2 projector's ramp: linear up over the first 5 %, cosine down over the
    last 25 % of the steps."""
    t = step / config.num_steps
    ramp = jnp.minimum(1.0, (1.0 - t) / config.lr_rampdown_length)
    ramp = 0.5 - 0.5 * jnp.cos(ramp * jnp.pi)
    ramp = ramp * jnp.minimum(1.0, t / config.lr_rampup_length)
    return config.initial_learning_rate * ramp


def w_noise_scale(step, w_std, config: ProjectionConfig):
    t = step / config.num_steps
    return (
        w_std
        * config.initial_noise_factor
        * jnp.maximum(0.0, 1.0 - t / config.noise_ramp_length) ** 2
    )


def noise_regularization(noise: dict):
    """Σ over maps and their pyramids (down to 8×8) of the squared lag-1 autocorrelations
    along H and W, per image: noise maps [N, H, W] → [N]."""
    total = 0.0
    for v in noise.values():
        while True:
            total = total + jnp.mean(v * jnp.roll(v, 1, axis=2), axis=(1, 2)) ** 2
            total = total + jnp.mean(v * jnp.roll(v, 1, axis=1), axis=(1, 2)) ** 2
            if v.shape[1] <= 8:
                break
            n, h, w = v.shape
            v = v.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return total


def normalize_noise(noise: dict) -> dict:
    """Each map [N, H, W] to zero mean and unit variance per image."""
    out = {}
    for name, v in noise.items():
        v = v - jnp.mean(v, axis=(1, 2), keepdims=True)
        out[name] = v * jax.lax.rsqrt(jnp.mean(v * v, axis=(1, 2), keepdims=True))
    return out


def noise_names(variables) -> list[str]:
    """'b8/conv0', … : the synthesis layers that hold a stored noise map."""
    flat = traverse_util.flatten_dict(variables["buffers"]["synthesis"], sep="/")
    return sorted(k[: -len("/noise_const")] for k in flat if k.endswith("/noise_const"))


def with_noise(variables, noise: dict):
    """The generator variables with the stored noise maps replaced by `noise` (one image)."""
    flat = traverse_util.flatten_dict(variables["buffers"]["synthesis"], sep="/")
    flat.update({f"{name}/noise_const": v for name, v in noise.items()})
    buffers = dict(variables["buffers"], synthesis=traverse_util.unflatten_dict(flat, sep="/"))
    return dict(variables, buffers=buffers)


def area_downsample(images, size: int):
    """[N, H, W, C] → [N, size, size, C] by averaging factor×factor blocks (H = factor·size)."""
    n, h, w, c = images.shape
    if h <= size:
        return images
    if h % size or w != h:
        raise ValueError(f"cannot area-downsample {h}x{w} images to {size} px")
    f = h // size
    return images.reshape(n, size, f, size, f, c).mean(axis=(2, 4))


def lpips_features(lpips_module, lpips_variables, images):
    """Unit-normalised backbone features at the LPIPS taps (the images' half of the LPIPS
    formula), so the target's features are computed once per projection."""
    x = (images - jnp.asarray(lpips_lib.SHIFT)) / jnp.asarray(lpips_lib.SCALE)
    feats = lpips_lib.Features(lpips_module.net).apply(
        {"params": lpips_variables["params"]["net"]}, x
    )
    return [lpips_lib.unit_normalize(f) for f in feats]


def lpips_from_features(lpips_variables, feats0, feats1):
    """LPIPS distances [N] from two feature lists (the learned 1×1 heads, spatial means)."""
    total = 0.0
    for k, (f0, f1) in enumerate(zip(feats0, feats1)):
        head = lpips_variables["params"][f"lin{k}"]["kernel"][0, 0, :, 0]  # [C]
        total = total + jnp.mean(jnp.square(f0 - f1) @ head, axis=(1, 2))
    return total


def sample_w_stats(G, variables, num_samples: int, seed: int = 123, c=None):
    """w_avg [w_dim] and the scalar σ_w = sqrt(mean ‖w − w_avg‖²) from mapped samples
    (seed 123 as the official projector)."""
    z = np.random.RandomState(seed).randn(num_samples, G.z_dim).astype(np.float32)
    if c is not None:
        c = np.repeat(np.asarray(c, np.float32)[:1], num_samples, 0)
    w = stylegan2_generate.map_to_ws(G, variables, z, c, batch_size=2000)[:, 0].astype(np.float64)
    w_avg = w.mean(0)
    w_std = math.sqrt(np.sum((w - w_avg) ** 2) / num_samples)
    return w_avg.astype(np.float32), w_std


@functools.partial(jax.jit, static_argnames=("G", "lpips_module", "config", "progress"))
def _project(G, variables, targets, w_avg, w_std, key, config, lpips_module, lpips_vars, progress):
    n = targets.shape[0]
    names = noise_names(variables)
    stored = traverse_util.flatten_dict(variables["buffers"]["synthesis"], sep="/")
    init_key, loop_key = jax.random.split(key)
    keys = jax.random.split(init_key, len(names))
    noise = {}
    for name, k in zip(names, keys):
        shape = (n,) + stored[f"{name}/noise_const"].shape
        # Optimised maps start as fresh N(0, 1); frozen ones are the generator's own.
        noise[name] = (
            jax.random.normal(k, shape)
            if config.optimize_noise
            else jnp.broadcast_to(stored[f"{name}/noise_const"], shape)
        )
    k = 1 if config.space == "w" else G.num_ws
    params = {"w": jnp.broadcast_to(w_avg, (n, k, G.w_dim)), "noise": noise}
    tx = optax.adam(lambda count: learning_rate(count, config), b1=0.9, b2=0.999, eps=1e-8)

    if lpips_module is None:

        def distance(images):
            return jnp.mean(jnp.square(images - targets), axis=(1, 2, 3))

    else:
        target_feats = lpips_features(lpips_module, lpips_vars, area_downsample(targets, 256))

        def distance(images):
            feats = lpips_features(lpips_module, lpips_vars, area_downsample(images, 256))
            return lpips_from_features(lpips_vars, feats, target_feats)

    def synthesize(ws, noise):
        def one(ws_i, noise_i):
            v = with_noise(variables, noise_i)
            return G.apply(v, ws_i[None], "const", method=G.synthesize)[0]

        return jax.vmap(one)(ws, noise)

    def loss_fn(params, step, key):
        w = params["w"] + jax.random.normal(key, params["w"].shape) * w_noise_scale(
            step, w_std, config
        )
        ws = jnp.broadcast_to(w, (n, G.num_ws, G.w_dim))
        noise = params["noise"]
        reg = 0.0
        if config.optimize_noise:
            reg = config.regularize_noise_weight * noise_regularization(noise)
        else:
            noise = jax.lax.stop_gradient(noise)
        images = synthesize(ws, noise)
        dist = distance(images)
        return jnp.sum(dist + reg), (dist, images)

    every = config.num_steps / config.num_snapshots
    snap_steps = np.floor(np.arange(1, config.num_snapshots + 1) * every).astype(np.int32) - 1

    def body(step, carry):
        # Step num_steps is one extra pass that only renders the final images (its learning
        # rate and w-noise are zero, and its update is discarded), so the loop's own
        # generator pass serves for them instead of a second compiled one.
        params, opt_state, dists, snaps, _ = carry
        grads, (dist, images) = jax.grad(loss_fn, has_aux=True)(
            params, step, jax.random.fold_in(loop_key, step)
        )
        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        if config.optimize_noise:
            new_params = {"w": new_params["w"], "noise": normalize_noise(new_params["noise"])}
        last = step == config.num_steps
        params, opt_state = jax.tree_util.tree_map(
            lambda old, new: jnp.where(last, old, new),
            (params, opt_state),
            (new_params, new_opt_state),
        )
        dists = dists.at[step].set(dist, mode="drop")
        slot = jnp.searchsorted(jnp.asarray(snap_steps), step)
        snaps = jax.lax.cond(
            jnp.any(jnp.asarray(snap_steps) == step),
            lambda s: s.at[slot].set(images),
            lambda s: s,
            snaps,
        )
        if progress is not None:
            jax.debug.callback(_report(progress, config.num_steps), step, dist)
        return params, opt_state, dists, snaps, images

    dists = jnp.zeros((config.num_steps, n))
    snaps = jnp.zeros((config.num_snapshots,) + targets.shape)
    carry = (params, tx.init(params), dists, snaps, jnp.zeros(targets.shape))
    params, _, dists, snaps, images = jax.lax.fori_loop(0, config.num_steps + 1, body, carry)
    ws = jnp.broadcast_to(params["w"], (n, G.num_ws, G.w_dim))
    return ws, params["noise"], images, snaps, dists, snap_steps


def _report(progress, num_steps):
    """The progress callback for the optimisation steps only (not the final render)."""

    def report(step, dist):
        if step < num_steps:
            progress(step, dist)

    return report


def project(
    G,
    variables,
    targets,
    config: ProjectionConfig = ProjectionConfig(),
    lpips=None,
    seed: int = 0,
    c=None,
    progress=None,
) -> ProjectionResult:
    """Projects target images [N, R, R, C] in [-1, 1] (R = the generator's resolution).

    lpips: (module, variables) of a converted LPIPS network (VGG as in the paper), or None
    for the pixel-MSE fallback (logged). progress: a hashable callable (step, distances [N])
    called from inside the loop after every step (step counts from 0).
    """
    targets = jnp.asarray(targets, jnp.float32)
    expected = (G.img_resolution, G.img_resolution, G.img_channels)
    if targets.ndim != 4 or targets.shape[1:] != expected:
        raise ValueError(
            f"projection targets must be [N, {expected[0]}, {expected[1]}, {expected[2]}] "
            f"images in [-1, 1] (the generator's resolution), got shape {targets.shape}"
        )
    if lpips is None:
        log.warning(
            "projection: no LPIPS network given, so the distance is the pixel mean squared "
            "error instead of the paper's LPIPS-VGG (convert the lpips package's vgg.pth with "
            "tools/convert_weights.py --lpips-backbone vgg16-397923af.pth and pass it)"
        )
        lpips_module, lpips_vars = None, None
    else:
        lpips_module, lpips_vars = lpips
    w_avg, w_std = sample_w_stats(G, variables, config.w_avg_samples, c=c)
    # The unfused modulated conv computes the same function; its gradients run about 4×
    # faster on CPUs than the grouped convolution's.
    G = G.clone(fused_modconv=False)
    ws, noise, images, snaps, dists, snap_steps = _project(
        G,
        variables,
        targets,
        jnp.asarray(w_avg),
        w_std,
        jax.random.PRNGKey(seed),
        config,
        lpips_module,
        lpips_vars,
        progress,
    )
    return ProjectionResult(
        ws=np.asarray(ws),
        noise={k: np.asarray(v) for k, v in noise.items()},
        images=np.asarray(images),
        snapshots=np.asarray(snaps),
        snapshot_steps=np.asarray(snap_steps) + 1,
        distances=np.asarray(dists),
        distance="mse" if lpips is None else "lpips",
    )


def synthesize_with_noise(G, variables, ws, noise: dict) -> np.ndarray:
    """Re-creates projected images from saved W+ codes [N, num_ws, w_dim] and noise maps."""

    def one(ws_i, noise_i):
        return G.apply(with_noise(variables, noise_i), ws_i[None], "const", method=G.synthesize)[0]

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(ws), noise))
