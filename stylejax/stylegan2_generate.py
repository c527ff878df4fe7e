"""Images from a StyleGAN2 generator: seeds or latent files, style-mixing grids and
interpolation strips.

G, variables = stylejax.model_format.load_pretrained("stylejax/pretrained/synthetic64")
z = z_from_seeds([0, 1, 2], G.z_dim)                     # the seeds → z of stylegan2-ada
imgs = generate(G, variables, z, truncation_psi=0.7)    # [3, 64, 64, 3] in [-1, 1]
tiles = style_mixing_grid(G, variables, [0, 1], [5, 6, 7], layers=range(0, 4))
frames = interpolate(G, variables, z, steps=8, space="w")

Images are NHWC floats in [-1, 1] (`stylejax.images` turns them into PNG files and grids).
Every function batches its work through one jitted program per generator and batch size,
padding the last batch, so a long list of seeds compiles once.
"""

import functools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np

from stylejax.models import stylegan2 as sg

SPACES = ("z", "w", "w+")
# The 64 px synthetic-faces generator shipped with the package: the tools' default network.
SHIPPED = Path(__file__).resolve().parent / "pretrained" / "synthetic64"


def load_generator(path=SHIPPED, which: str | None = None):
    """(G, variables) of a converted or exported StyleGAN2 generator directory, or a clear
    error when the directory holds another kind of network."""
    from stylejax.model_format import CheckpointError, load_pretrained

    G, variables = load_pretrained(path, which)
    if not isinstance(G, sg.Generator):
        raise CheckpointError(
            f"{path}: holds a {type(G).__name__}, not a StyleGAN2 generator "
            "(pick one with --which, e.g. g_ema)"
        )
    return G, variables


def parse_range(text: str) -> list[int]:
    """'0-3,7,10-11' → [0, 1, 2, 3, 7, 10, 11] (inclusive ranges, as the StyleGAN tools)."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(part)])
        except ValueError:
            raise ValueError(f"expected integers and ranges like '0-3,7', got {text!r}") from None
    if not out:
        raise ValueError(f"expected at least one integer in {text!r}")
    return out


def z_from_seeds(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """One z per seed, drawn like stylegan2-ada's generate.py (RandomState(seed).randn), so a
    seed names the same latent as in the official tools."""
    return np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)


def class_labels(G, class_idx: int | None, n: int) -> np.ndarray | None:
    """One-hot labels [n, c_dim] for a conditional generator, None for an unconditional one."""
    if G.c_dim == 0:
        if class_idx is not None:
            raise ValueError("this generator is unconditional (c_dim=0): drop the class label")
        return None
    if class_idx is None or not 0 <= class_idx < G.c_dim:
        raise ValueError(
            f"this generator is conditional with {G.c_dim} classes: pass a class label "
            f"in 0…{G.c_dim - 1} (got {class_idx})"
        )
    c = np.zeros((n, G.c_dim), np.float32)
    c[:, class_idx] = 1
    return c


def save_npy(path, array) -> Path:
    """Writes one array as .npy atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(array))
    tmp.replace(path)
    return path


def save_npz(path, arrays: dict) -> Path:
    """Writes named arrays as .npz atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    tmp.replace(path)
    return path


def load_latents(path, G) -> tuple[np.ndarray, str]:
    """Reads latents from .npy or .npz (key z, w or ws, or a single array) and says which space
    they are in from their shape: [N, z_dim] → 'z' (also [N, w_dim] with key 'w'),
    [N, num_ws, w_dim] → 'w+'."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latent file {path} does not exist")
    try:
        data = np.load(path)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: cannot read as .npy/.npz ({type(e).__name__}: {e})") from None
    key = None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = [k for k in ("z", "w", "ws") if k in data.files]
        if not keys and len(data.files) != 1:
            raise ValueError(f"{path}: expected an array named z, w or ws; found {data.files}")
        key = keys[0] if keys else data.files[0]
        data = data[key]
    x = np.asarray(data, np.float32)
    if x.ndim == 3 and x.shape[1:] == (G.num_ws, G.w_dim):
        return x, "w+"
    if x.ndim == 2 and key == "w" and x.shape[1] == G.w_dim:
        return x, "w"
    if x.ndim == 2 and x.shape[1] == G.z_dim:
        return x, "z"
    raise ValueError(
        f"{path}: expected z [N, {G.z_dim}] or W+ [N, {G.num_ws}, {G.w_dim}] latents "
        f"(or an .npz array 'w' [N, {G.w_dim}]), found shape {x.shape}"
    )


@functools.partial(jax.jit, static_argnames=("G", "truncation_cutoff"))
def _map(G, variables, z, c, truncation_psi, truncation_cutoff):
    ws = G.apply(variables, z, c, method=G.map)
    w_avg = variables["buffers"]["mapping"]["w_avg"]
    return sg.truncate(ws, w_avg, truncation_psi, truncation_cutoff)


@functools.partial(jax.jit, static_argnames=("G", "noise_mode"))
def _synthesize(G, variables, ws, noise_mode, key):
    return G.apply(variables, ws, noise_mode, method=G.synthesize, rngs={"noise": key})


class Progress:
    """A one-line text progress bar with rate and ETA on stderr (no dependency). The clock
    starts at the first update, so compilation before it does not distort the rate."""

    def __init__(self, total: int, desc: str = "", unit: str = "it", stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.start = self.first = None
        self.last_draw = 0.0

    def __call__(self, done: int, total: int | None = None, extra: str = ""):
        total = total or self.total
        now = time.time()
        if self.start is None:
            self.start, self.first = now, done
        if done < total and now - self.last_draw < 0.2:
            return  # redraw at most five times a second
        self.last_draw = now
        elapsed = now - self.start
        rate = (done - self.first) / elapsed if elapsed > 0 else 0.0
        eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
        filled = int(30 * done / max(total, 1))
        self.stream.write(
            f"\r{self.desc} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {self.unit} "
            f"({rate:.1f}/s, ETA {eta}){extra and ' ' + extra}"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _batched(fn: Callable, arrays, batch_size: int, progress=None):
    """fn over equal-length arrays in fixed-size batches (the last padded), concatenated;
    progress(done, total) after each batch."""
    n = len(arrays[0])
    out = []
    for i, start in enumerate(range(0, n, batch_size)):
        parts = [a[start : start + batch_size] for a in arrays]
        m = len(parts[0])
        parts = [np.concatenate([p, np.repeat(p[-1:], batch_size - m, 0)]) for p in parts]
        out.append(np.asarray(fn(i, *parts))[:m])
        if progress is not None:
            progress(start + m, n)
    return np.concatenate(out) if out else np.zeros((0,))


def map_to_ws(
    G,
    variables,
    z,
    c=None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """z [N, z_dim] → W+ [N, num_ws, w_dim], truncated towards w_avg by ψ (on the first
    `truncation_cutoff` layers only when given)."""
    z = np.asarray(z, np.float32)
    c = np.zeros((len(z), 0), np.float32) if c is None else np.asarray(c, np.float32)

    def run(_, z, c):
        return _map(G, variables, z, c if G.c_dim else None, truncation_psi, truncation_cutoff)

    return _batched(run, [z, c], min(batch_size, len(z)))


def synthesize(
    G,
    variables,
    ws,
    noise_mode: str = "const",
    seed: int = 0,
    batch_size: int = 16,
    progress=None,
) -> np.ndarray:
    """W+ [N, num_ws, w_dim] → images [N, R, R, C] in [-1, 1]. noise_mode 'const' uses the
    generator's stored noise maps, 'random' fresh noise from `seed`, 'none' no noise;
    progress(done, total) is called after each batch."""
    if noise_mode not in sg.NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {sg.NOISE_MODES}, got {noise_mode!r}")
    ws = np.asarray(ws, np.float32)
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(f"expected W+ [N, {G.num_ws}, {G.w_dim}], got shape {ws.shape}")
    key = jax.random.PRNGKey(seed)

    def run(i, ws):
        return _synthesize(G, variables, ws, noise_mode, jax.random.fold_in(key, i))

    return _batched(run, [ws], min(batch_size, len(ws)), progress)


def to_ws(
    G,
    variables,
    latents,
    input_space: str = "z",
    c=None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
) -> np.ndarray:
    """z, W [N, w_dim] or W+ latents → W+, with truncation applied in every space."""
    latents = np.asarray(latents, np.float32)
    if input_space == "z":
        return map_to_ws(G, variables, latents, c, truncation_psi, truncation_cutoff)
    if input_space == "w":
        latents = np.repeat(latents[:, None], G.num_ws, axis=1)
    elif input_space != "w+":
        raise ValueError(f"input_space must be one of {SPACES}, got {input_space!r}")
    if latents.ndim != 3 or latents.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(f"expected W+ [N, {G.num_ws}, {G.w_dim}], got shape {latents.shape}")
    if truncation_psi == 1:
        return latents
    w_avg = variables["buffers"]["mapping"]["w_avg"]
    return np.asarray(sg.truncate(latents, w_avg, truncation_psi, truncation_cutoff))


def generate(
    G,
    variables,
    latents,
    input_space: str = "z",
    c=None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    seed: int = 0,
    batch_size: int = 16,
    progress=None,
) -> np.ndarray:
    """Images [N, R, R, C] in [-1, 1] from z, W or W+ latents (see `to_ws`, `synthesize`)."""
    ws = to_ws(G, variables, latents, input_space, c, truncation_psi, truncation_cutoff)
    return synthesize(G, variables, ws, noise_mode, seed, batch_size, progress)


def mix_ws(row_ws, col_ws, layers: Sequence[int]) -> np.ndarray:
    """Style-mixing codes [R, C, num_ws, w_dim]: cell (r, c) is row r's W+ with the entries
    listed in `layers` taken from column c (as in the StyleGAN papers' figures)."""
    row_ws, col_ws = np.asarray(row_ws), np.asarray(col_ws)
    num_ws = row_ws.shape[1]
    layers = sorted({int(i) for i in layers})
    if not layers or layers[0] < 0 or layers[-1] >= num_ws:
        raise ValueError(f"style-mixing layers must lie in 0…{num_ws - 1}, got {layers}")
    mixed = np.repeat(row_ws[:, None], len(col_ws), axis=1)
    mixed[:, :, layers] = col_ws[None, :, layers]
    return mixed


def style_mixing_grid(
    G,
    variables,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    layers: Sequence[int] = range(7),
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    c=None,
    batch_size: int = 16,
) -> np.ndarray:
    """Tiles [R + 1, C + 1, H, W, C]: the top row holds the column seeds' images, the left
    column the row seeds' images (the corner is white), and cell (r, c) the row image with
    the `layers` of W+ taken from the column image. Default layers 0–6 transfer the coarse
    and middle styles (pose, face shape) of the columns."""
    all_seeds = list(row_seeds) + list(col_seeds)
    labels = None if c is None else np.repeat(np.asarray(c)[:1], len(all_seeds), 0)
    ws = map_to_ws(G, variables, z_from_seeds(all_seeds, G.z_dim), labels, truncation_psi)
    row_ws, col_ws = ws[: len(row_seeds)], ws[len(row_seeds) :]
    mixed = mix_ws(row_ws, col_ws, layers)
    flat = np.concatenate([row_ws, col_ws, mixed.reshape(-1, *ws.shape[1:])])
    imgs = synthesize(G, variables, flat, noise_mode, batch_size=batch_size)
    rows, cols = len(row_seeds), len(col_seeds)
    tiles = np.ones((rows + 1, cols + 1) + imgs.shape[1:], np.float32)
    tiles[1:, 0] = imgs[:rows]
    tiles[0, 1:] = imgs[rows : rows + cols]
    tiles[1:, 1:] = imgs[rows + cols :].reshape(rows, cols, *imgs.shape[1:])
    return tiles


def lerp(a, b, t):
    return a + (b - a) * t


def slerp(a, b, t, eps: float = 1e-7):
    """Spherical interpolation between vectors a and b (last axis) at fraction t; falls back
    to lerp for (nearly) parallel vectors."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a_n = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b_n = b / np.linalg.norm(b, axis=-1, keepdims=True)
    omega = np.arccos(np.clip(np.sum(a_n * b_n, axis=-1, keepdims=True), -1, 1))
    so = np.sin(omega)
    safe = np.where(so < eps, 1.0, so)
    out = np.where(
        so < eps,
        lerp(a, b, t),
        np.sin((1 - t) * omega) / safe * a + np.sin(t * omega) / safe * b,
    )
    return out.astype(np.float32)


def interpolation_ws(
    G,
    variables,
    z,
    steps: int = 8,
    space: str = "w",
    c=None,
    truncation_psi: float = 1.0,
) -> np.ndarray:
    """W+ frames through the keyframe latents z [K, z_dim]: `steps` frames per segment plus
    the last keyframe. space 'w' lerps the mapped (and truncated) codes, as the StyleGAN
    videos do; 'z' slerps the latents (the natural path for a Gaussian prior) and maps each
    frame."""
    z = np.asarray(z, np.float32)
    if len(z) < 2:
        raise ValueError(f"interpolation needs at least two keyframes, got {len(z)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = np.arange(steps, dtype=np.float32)[:, None] / steps
    if space == "w":
        keys = map_to_ws(G, variables, z, c, truncation_psi)
        frames = [lerp(keys[i], keys[i + 1], t[:, :, None]) for i in range(len(keys) - 1)]
        return np.concatenate(frames + [keys[-1:]]).astype(np.float32)
    if space == "z":
        frames = [slerp(z[i], z[i + 1], t) for i in range(len(z) - 1)]
        zs = np.concatenate(frames + [z[-1:]])
        labels = None if c is None else np.repeat(np.asarray(c)[:1], len(zs), 0)
        return map_to_ws(G, variables, zs, labels, truncation_psi)
    raise ValueError(f"interpolation space must be 'w' (lerp) or 'z' (slerp), got {space!r}")


def interpolate(
    G,
    variables,
    z,
    steps: int = 8,
    space: str = "w",
    c=None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> np.ndarray:
    """Interpolation frames [F, R, R, C] (see `interpolation_ws`)."""
    ws = interpolation_ws(G, variables, z, steps, space, c, truncation_psi)
    return synthesize(G, variables, ws, noise_mode, batch_size=batch_size)
