"""Image-quality metrics.

Distribution distances between image sets: `frechet_distance` is the FID formula for any
features. `pixel_features` is a stated proxy for when no Inception weights are available:
16×16 area-downsampled pixels. Numbers from it are not FID and are only comparable with each
other.

`feature_stats`, `frechet_distance_from_stats` (FID from cached statistics),
`kernel_inception_distance` (KID) and `precision_recall` work on any features, in practice
the FID Inception's (`stylejax.models.inception`).

Per-sample comparisons of two image batches (jittable): `psnr`, `ssim`, `identity_similarity`
(ArcFace cosine), `lpips_distance`.
"""

import functools
import math
import time
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.models import irse
from stylejax.nn import torch_ops


def _sqrtm_psd(m):
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition
    (float64; tiny negative eigenvalues from rounding are clipped to 0)."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) of [N, D] features in float64; Σ with the N − 1 denominator, as the FID tools."""
    f = np.asarray(feats, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feature_stats needs [N >= 2, D] features, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½), in float64.

    tr((Σa^½ Σb Σa^½)^½) equals the tr((Σa Σb)^½) of pytorch-fid and the TF FID code (the two
    matrices have the same eigenvalues), but the symmetric form needs only eigendecompositions
    of PSD matrices: no complex parts to drop and no ε added when Σ is singular (N < D)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape:
        raise ValueError(
            f"statistics of different feature sizes: μ {mu_a.shape} vs {mu_b.shape}, "
            f"Σ {cov_a.shape} vs {cov_b.shape}"
        )
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    return float(
        np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(cross)
    )


def frechet_distance(feats_a, feats_b) -> float:
    """The Fréchet distance of Gaussians fitted to two [N, D] feature sets (FID when the
    features are the FID Inception's pool3)."""
    return frechet_distance_from_stats(*feature_stats(feats_a), *feature_stats(feats_b))


def kernel_inception_distance(
    real, fake, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0
) -> float:
    """KID: the unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / D + 1)³,
    averaged over `num_subsets` random subsets of min(N_real, N_fake, max_subset_size)
    samples drawn without replacement from each set (the stylegan2-ada protocol: 100
    subsets of 1000). float64; `seed` fixes the subsets."""
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"KID needs [N, D] features of one D, got {real.shape}, {fake.shape}")
    d = real.shape[1]
    m = min(real.shape[0], fake.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {m}")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(fake.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        within = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        between = (x @ y.T / d + 1) ** 3
        # Off-diagonal means of the within-set kernels minus twice the cross-set mean.
        total += (within.sum() - np.trace(within)) / (m * (m - 1)) - 2 * between.mean()
    return float(total / num_subsets)


@jax.jit
def _pairwise_distances(rows, cols):
    """Euclidean distances [R, C] via ‖a‖² + ‖b‖² − 2ab, matmul at full float32 precision."""
    sq = (
        jnp.sum(rows * rows, 1)[:, None]
        + jnp.sum(cols * cols, 1)[None, :]
        - 2 * jnp.matmul(rows, cols.T, precision=jax.lax.Precision.HIGHEST)
    )
    return jnp.sqrt(jnp.maximum(sq, 0))


@functools.partial(jax.jit, static_argnums=2)
def _kth_neighbour_radius(rows, manifold, k: int):
    """Distance from each row to its k-th nearest manifold point, the row itself (distance
    0) not counted."""
    return -jax.lax.top_k(-_pairwise_distances(rows, manifold), k + 1)[0][:, k]


@jax.jit
def _inside_manifold(probes, manifold, radii):
    """Whether each probe lies within some manifold point's k-NN ball."""
    return jnp.any(_pairwise_distances(probes, manifold) <= radii[None, :], axis=1)


def precision_recall(real, fake, k: int = 3, row_batch: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): precision is the share of
    fake samples inside the real manifold (the union of balls reaching each real sample's
    k-th nearest real neighbour), recall the share of real samples inside the fake manifold.
    k = 3 as in the paper and stylegan2-ada's pr50k3. Distances in float32, rows in blocks of
    `row_batch` so 50k × 50k never lives in memory at once."""
    real = jnp.asarray(real, jnp.float32)
    fake = jnp.asarray(fake, jnp.float32)
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")

    def blocks(x):
        return [x[i : i + row_batch] for i in range(0, x.shape[0], row_batch)]

    def share_inside(manifold, probes):
        radii = jnp.concatenate([_kth_neighbour_radius(b, manifold, k) for b in blocks(manifold)])
        inside = jnp.concatenate([_inside_manifold(b, manifold, radii) for b in blocks(probes)])
        return float(np.mean(np.asarray(inside)))

    return share_inside(real, fake), share_inside(fake, real)


def pixel_features(images, size: int = 16) -> np.ndarray:
    """[N, H, W, C] images in [-1, 1] → [N, size·size·C] area-downsampled pixels."""
    x = np.asarray(images, np.float32)
    n, h, w, c = x.shape
    if h % size or w % size:
        raise ValueError(f"image size {h}x{w} must be a multiple of {size}")
    x = x.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))
    return x.reshape(n, -1)


PYRAMID = (1, 2, 4, 8)  # pyramid_l1's scales (average-pool factors)


def pyramid_l1(x, y, weight=None):
    """Σ over PYRAMID of the weighted mean |x - y| after average pooling (weight [N, H, W, 1],
    pooled alike; None: uniform): the fine scale keeps edges sharp, the coarse ones give a
    strong signal for where a shape is."""
    if weight is None:
        weight = jnp.ones(x.shape[:3] + (1,), x.dtype)
    total, prev = 0.0, 1
    for f in PYRAMID:
        if f > 1:
            x, y, weight = (torch_ops.avg_pool2d(a, f // prev) for a in (x, y, weight))
        total, prev = total + jnp.mean(weight * jnp.abs(x - y)) / jnp.mean(weight), f
    return total


# ---------------------------------------------------------------------------------------------
# Per-sample image comparisons (jittable; NHWC batches in [-1, 1] unless data_range says).


def psnr(x, y, data_range: float = 2.0):
    """Peak signal-to-noise ratio in dB per sample: 10·log10(R² / MSE) over H, W, C."""
    mse = jnp.mean((jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32)) ** 2, (1, 2, 3))
    return 10.0 * jnp.log10(data_range**2 / mse)


class MaskedPSNR:
    """PSNR over the pixels inside a mask, pooled over batches (numpy): `add(name, x, y,
    mask)` for NHWC images and [N, H, W] masks, then `result()` {name: dB}."""

    def __init__(self, data_range: float = 2.0):
        self.data_range = data_range
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, x, y, mask):
        m = np.broadcast_to(np.asarray(mask, bool)[..., None], np.shape(x))
        error = np.square(np.asarray(x, np.float64) - np.asarray(y, np.float64))
        total = self.sums.setdefault(name, [0.0, 0])
        total[0] += float(np.sum(error[m]))
        total[1] += int(np.sum(m))

    def result(self) -> dict[str, float]:
        out = {}
        for name, (squared, count) in self.sums.items():
            mse = squared / max(count, 1)
            out[name] = float(10 * np.log10(self.data_range**2 / mse)) if mse > 0 else math.inf
        return out


SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5·σ + 0.5): scipy's gaussian_filter truncation, as skimage uses it
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_window() -> np.ndarray:
    taps = np.exp(-0.5 * (np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1) / SSIM_SIGMA) ** 2)
    return taps / taps.sum()


def _valid_blur(x):
    """Separable 11-tap Gaussian over H and W of [N, H, W, C], keeping only the positions whose
    window lies inside the image. skimage filters with reflected borders and then crops
    (win − 1)/2 = 5 pixels per side before averaging; the kept pixels never see the reflected
    border, so this 'valid' filter gives the same numbers without padding."""
    taps = jnp.asarray(_gaussian_window(), x.dtype)
    h, w = x.shape[1:3]
    k = len(taps)
    x = sum(taps[i] * x[:, i : h - k + 1 + i] for i in range(k))
    return sum(taps[i] * x[:, :, i : w - k + 1 + i] for i in range(k))


def ssim(x, y, data_range: float = 2.0):
    """Mean structural similarity per sample, equal to
    `skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=-1)`: 11×11 Gaussian
    window (σ = 1.5), K1 = 0.01, K2 = 0.03, averaged over the image minus a 5-pixel border and
    then over channels. Images must be at least 11×11."""
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two NHWC batches of one shape, got {x.shape} and {y.shape}")
    if min(x.shape[1:3]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"ssim needs images of at least 11×11 pixels, got {x.shape[1:3]}")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _valid_blur(x), _valid_blur(y)
    var_x = _valid_blur(x * x) - mu_x * mu_x
    var_y = _valid_blur(y * y) - mu_y * mu_y
    cov = _valid_blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    return jnp.mean(s, axis=(1, 2, 3))


def identity_similarity(arcface_module, arcface_vars, x, y):
    """Cosine similarity [N] of ArcFace embeddings of two face batches (NHWC in [-1, 1], any
    size: pSp's crop and pooling to 112×112 via `irse.id_crop_and_pool` come first)."""
    ex = arcface_module.apply(arcface_vars, irse.id_crop_and_pool(x))
    ey = arcface_module.apply(arcface_vars, irse.id_crop_and_pool(y))
    return jnp.sum(ex * ey, -1) / (jnp.linalg.norm(ex, axis=-1) * jnp.linalg.norm(ey, axis=-1))


def lpips_distance(lpips_module, lpips_vars, x, y):
    """LPIPS distance [N] between two NHWC batches in [-1, 1] (an `lpips.LPIPS` module)."""
    return lpips_module.apply(lpips_vars, x, y)


# ---------------------------------------------------------------------------------------------
# Data-parallel evaluation over a mesh: every device gets its slice of each batch, the
# networks are replicated, and every process receives all processes' results.


def data_mesh(devices=None) -> Mesh:
    """One data-parallel axis over every device of every process (or `devices`)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


class DataParallel:
    """`fn(constants, *arrays)` jitted with `constants` (network variables, keys) replicated
    and `arrays` (sharing a leading batch axis) split over the mesh's first axis.

    Call it with this process's numpy arrays of at most batch_size / process_count rows: they
    are padded (with their last row) to that fixed size, so one program serves every call,
    and the padding is dropped from the result. Returns numpy: the results for all
    processes' rows, in process order (each process gets them all). The results do not
    depend on the number of devices (tests/test_metrics_fid.py checks 8 against 1)."""

    def __init__(self, fn: Callable, batch_size: int, mesh: Mesh | None = None):
        self.mesh = data_mesh() if mesh is None else mesh
        if batch_size % self.mesh.devices.size:
            raise ValueError(
                f"batch size {batch_size} must be a multiple of the {self.mesh.devices.size} "
                f"devices of the mesh"
            )
        self.local_batch = batch_size // jax.process_count()
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = NamedSharding(self.mesh, P(self.mesh.axis_names[0]))
        self._fn = jax.jit(
            lambda constants, arrays: fn(constants, *arrays),
            in_shardings=(self.replicated, self.sharded),
            out_shardings=self.sharded,
        )

    def put(self, constants):
        """Replicates `constants` on the mesh once (a call with them then copies nothing)."""
        return jax.device_put(constants, self.replicated)

    def __call__(self, constants, *arrays):
        n = arrays[0].shape[0]
        if not 0 < n <= self.local_batch or any(a.shape[0] != n for a in arrays):
            raise ValueError(
                f"expected 1 to {self.local_batch} rows per process in every array, got "
                f"{[a.shape[0] for a in arrays]}"
            )
        pad = self.local_batch - n
        batch = tuple(
            jax.make_array_from_process_local_data(
                self.sharded,
                np.pad(np.asarray(a), [(0, pad)] + [(0, 0)] * (a.ndim - 1), mode="edge"),
            )
            for a in arrays
        )
        out = self._fn(self.put(constants), batch)
        if jax.process_count() > 1:
            out = multihost_utils.process_allgather(out, tiled=True)
        counts = [n]
        if jax.process_count() > 1:
            counts = np.asarray(multihost_utils.process_allgather(np.int32(n))).reshape(-1)

        def unpad(x):
            x = np.asarray(x).reshape((-1, self.local_batch) + x.shape[1:])
            return np.concatenate([part[:c] for part, c in zip(x, counts)])

        return jax.tree_util.tree_map(unpad, out)


class Progress:
    """Logs 'what: done/total (rate/s, ETA)' at most every `every_s` seconds, and at the end."""

    def __init__(self, what: str, total: int, every_s: float = 10.0):
        self.what, self.total, self.every_s = what, total, every_s
        self.done = 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int):
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            logging.info(
                "%s: %d/%d (%.1f/s, ETA %dm%02ds)",
                self.what,
                self.done,
                self.total,
                rate,
                eta // 60,
                eta % 60,
            )


def collect(parallel: DataParallel, constants, batches: Iterable, total: int, what: str):
    """Runs `parallel` over this process's batches (tuples of arrays, or one array each)
    until `total` rows over all processes are done; returns their concatenated results."""
    progress = Progress(what, total)
    constants = parallel.put(constants)
    parts, done = [], 0
    for batch in batches:
        batch = batch if isinstance(batch, tuple) else (batch,)
        out = parallel(constants, *batch)
        parts.append(out)
        done += len(jax.tree_util.tree_leaves(out)[0])
        progress.update(len(jax.tree_util.tree_leaves(out)[0]))
        if done >= total:
            break
    if done < total:
        logging.warning("%s: the source ran out after %d of %d", what, done, total)
    joined = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *parts)
    return jax.tree_util.tree_map(lambda x: x[:total], joined)


# ---------------------------------------------------------------------------------------------
# Perceptual path length (StyleGAN paper; the StyleGAN2 metric's settings by default)


def slerp(a, b, t):
    """Spherical interpolation of the directions of a and b ([N, D]), t [N, 1]."""
    a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
    b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
    d = jnp.sum(a * b, axis=-1, keepdims=True)
    p = t * jnp.arccos(jnp.clip(d, -1, 1))
    c = b - d * a
    c = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
    out = a * jnp.cos(p) + c * jnp.sin(p)
    return out / jnp.linalg.norm(out, axis=-1, keepdims=True)


def ppl_crop(images, crop: bool = True):
    """The StyleGAN2 PPL image preparation: with `crop`, rows 3/8–7/8 and columns 2/8–6/8
    of a square face image (the face region); then area-downsampling by an integer factor
    while the result is larger than 256 (StyleGAN's code; 1024 px → 512 crop → 256)."""
    if crop:
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"the PPL face crop needs square images, got {images.shape[1:3]}")
        c = images.shape[1] // 8
        images = images[:, 3 * c : 7 * c, 2 * c : 6 * c]
    factor = images.shape[1] // 256
    if factor > 1:
        n, h, w, ch = images.shape
        images = images.reshape(n, h // factor, factor, w // factor, factor, ch).mean((2, 4))
    return images


def path_length_samples(
    G, lpips_module, constants, z0, z1, t, *, epsilon=1e-4, space="w", crop=True
):
    """[N] samples of LPIPS(G(p(t)), G(p(t + ε))) / ε² for paths p from z0 to z1: a lerp of
    the mapped w in W space, a slerp of z in Z space. `constants` = (g_vars, lpips_vars,
    noise_key): each pair of images shares its noise, and no truncation is applied."""
    g_vars, lpips_vars, noise_key = constants
    t = t[:, None]
    if space == "w":
        w0, w1 = jnp.split(G.apply(g_vars, jnp.concatenate([z0, z1]), method=G.map), 2)
        ws_a = w0 + (w1 - w0) * t[..., None]
        ws_b = w0 + (w1 - w0) * (t + epsilon)[..., None]
    elif space == "z":
        ws_a = G.apply(g_vars, slerp(z0, z1, t), method=G.map)
        ws_b = G.apply(g_vars, slerp(z0, z1, t + epsilon), method=G.map)
    else:
        raise ValueError(f"PPL space must be 'w' or 'z', got {space!r}")

    def synth(ws):
        img = G.apply(g_vars, ws, "random", method=G.synthesize, rngs={"noise": noise_key})
        return ppl_crop(img, crop)

    return lpips_module.apply(lpips_vars, synth(ws_a), synth(ws_b)) / epsilon**2


def perceptual_path_length(samples) -> float:
    """The mean of the samples between their 1st ('lower') and 99th ('higher') percentiles,
    as the StyleGAN code drops outliers."""
    d = np.asarray(samples, np.float64)
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())
