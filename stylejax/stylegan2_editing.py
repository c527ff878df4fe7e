"""Latent editing of a StyleGAN2 generator: directions from files, GANSpace PCA of W, SeFa
closed-form factorisation, and InterFaceGAN-style directions fitted from labels.

G, variables = stylejax.model_format.load_pretrained("stylejax/pretrained/synthetic64")
dirs, strengths = sefa(G, variables)                  # [K, w_dim] unit, by importance
pca = ganspace_pca(G, variables, num_samples=20000)   # mean, components, stds
edited = apply_direction(ws, dirs[0], [-3, 0, 3], layers=range(0, 4))  # [3, N, num_ws, w_dim]
boundary = fit_direction(w_codes, labels)             # unit normal of a linear classifier

Directions live in W (shape [w_dim]) or W+ ([num_ws, w_dim]); an edit adds
strength × direction to the chosen W+ entries (all by default), as InterFaceGAN, GANSpace
and SeFa do. Strengths of PCA directions are in units of the component's standard deviation
when the direction is scaled by `pca.stds[k]` (`pca.direction(k)` does that).
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from flax import traverse_util

from stylejax import stylegan2_generate
from stylejax.convert.readers import load_checkpoint
from stylejax.models import stylegan2 as sg

# ---------------------------------------------------------------------------------------------
# Directions from files.


def load_direction(path, component: int | None = None) -> np.ndarray:
    """A direction [w_dim] or [num_ws, w_dim] from .npy / .npz / torch .pt files.

    Accepts a plain array ([w_dim], [1, w_dim] as InterFaceGAN's e4e files, [num_ws, w_dim]);
    a stack of directions [K, w_dim] with `component`; rosinality's closed-form factor file
    ({'eigvec': [w_dim, K]}: columns); GANSpace dictionaries ({'comp': [K, …], 'std': [K]}:
    the component scaled by its standard deviation).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"direction file {path} does not exist")
    if path.suffix in (".npy", ".npz"):
        try:
            obj = np.load(path)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"{path}: cannot read as .npy/.npz ({e})") from None
        if isinstance(obj, np.lib.npyio.NpzFile):
            obj = {k: obj[k] for k in obj.files}
    else:
        obj = load_checkpoint(path)
    what = (
        "an array [w_dim], [1, w_dim] or [num_ws, w_dim]; a stack [K, w_dim] with a component "
        "index; {'eigvec': [w_dim, K]} (rosinality SeFa) or {'comp', 'std'} (GANSpace)"
    )
    if isinstance(obj, dict):
        if "eigvec" in obj:
            obj = np.asarray(obj["eigvec"]).T
        elif "comp" in obj:
            comps = np.asarray(obj["comp"]).reshape(len(obj["comp"]), -1)
            stds = np.asarray(obj.get("std", np.ones(len(comps)))).reshape(-1)
            obj = comps * stds[:, None]
        elif len(obj) == 1:
            obj = next(iter(obj.values()))
        elif "direction" in obj:
            obj = obj["direction"]
        else:
            raise ValueError(f"{path}: expected {what}; found a dictionary with keys {list(obj)}")
    if not isinstance(obj, np.ndarray) or obj.dtype.kind not in "fiu":
        raise ValueError(f"{path}: expected {what}; found {type(obj).__name__}")
    d = np.asarray(obj, np.float32)
    if d.ndim == 2 and d.shape[0] == 1:
        d = d[0]
    if component is not None:
        if d.ndim != 2 or not 0 <= component < d.shape[0]:
            raise ValueError(
                f"{path}: component {component} requested from directions of shape {d.shape}"
            )
        d = d[component]
    if d.ndim not in (1, 2):
        raise ValueError(f"{path}: expected {what}; found shape {d.shape}")
    return d


def check_direction(direction, G) -> np.ndarray:
    """The direction as [w_dim] or [num_ws, w_dim] for this generator, or a clear error."""
    d = np.asarray(direction, np.float32)
    if d.shape not in ((G.w_dim,), (G.num_ws, G.w_dim)):
        raise ValueError(
            f"direction of shape {d.shape} does not fit this generator: expected [{G.w_dim}] "
            f"or [{G.num_ws}, {G.w_dim}] (a stack of directions needs a component index)"
        )
    return d


# ---------------------------------------------------------------------------------------------
# Applying directions.


def apply_direction(ws, direction, strengths: Sequence[float], layers=None) -> np.ndarray:
    """W+ codes [N, num_ws, w_dim] → edited codes [S, N, num_ws, w_dim], one per strength:
    ws + strength · direction on the W+ entries in `layers` (all when None)."""
    ws = np.asarray(ws, np.float32)
    d = np.asarray(direction, np.float32)
    d = np.broadcast_to(d, ws.shape[1:]).copy()
    if layers is not None:
        layers = sorted({int(i) for i in layers})
        if not layers or layers[0] < 0 or layers[-1] >= ws.shape[1]:
            raise ValueError(f"edit layers must lie in 0…{ws.shape[1] - 1}, got {layers}")
        mask = np.zeros((ws.shape[1], 1), np.float32)
        mask[layers] = 1
        d = d * mask
    s = np.asarray(strengths, np.float32).reshape(-1, 1, 1, 1)
    return ws[None] + s * d[None, None]


def strength_sweep(
    G,
    variables,
    ws,
    direction,
    strengths: Sequence[float],
    layers=None,
    noise_mode: str = "const",
    batch_size: int = 16,
    progress=None,
) -> np.ndarray:
    """Images [N, S, R, R, C] of each code edited at each strength (a strip per code)."""
    edited = apply_direction(ws, check_direction(direction, G), strengths, layers)
    s, n = edited.shape[:2]
    flat = edited.transpose(1, 0, 2, 3).reshape(n * s, *edited.shape[2:])
    imgs = stylegan2_generate.synthesize(
        G, variables, flat, noise_mode, batch_size=batch_size, progress=progress
    )
    return imgs.reshape(n, s, *imgs.shape[1:])


# ---------------------------------------------------------------------------------------------
# GANSpace: PCA of W.


@dataclasses.dataclass
class PCA:
    mean: np.ndarray  # [w_dim]
    components: np.ndarray  # [K, w_dim], orthonormal rows, by decreasing variance
    stds: np.ndarray  # [K] standard deviation of W along each component

    def direction(self, k: int) -> np.ndarray:
        """Component k scaled by its standard deviation (strength 1 = one σ)."""
        return self.components[k] * self.stds[k]


def ganspace_pca(
    G, variables, num_samples: int = 20000, num_components: int = 64, seed: int = 0, c=None
) -> PCA:
    """GANSpace (Härkönen et al. 2020): principal axes of mapped codes w = f(z), z ~ N(0, I)."""
    z = np.random.RandomState(seed).randn(num_samples, G.z_dim).astype(np.float32)
    labels = None if c is None else np.repeat(np.asarray(c)[:1], num_samples, 0)
    w = stylegan2_generate.map_to_ws(G, variables, z, labels, batch_size=1024)[:, 0].astype(
        np.float64
    )
    mean = w.mean(0)
    # SVD of the centred samples: rows of vt are the principal axes.
    _, s, vt = np.linalg.svd(w - mean, full_matrices=False)
    k = min(num_components, vt.shape[0])
    stds = s[:k] / np.sqrt(num_samples - 1)
    return PCA(mean.astype(np.float32), vt[:k].astype(np.float32), stds.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# SeFa: closed-form factorisation of the modulation weights.


def affine_layers(G, include_torgb: bool = False) -> list[tuple[str, int]]:
    """('b8/conv0', 1), … : the synthesis layers with a style affine and the W+ entry each
    reads (conv layer j reads entry j; a block's torgb reads the entry after its last conv)."""
    out, w_idx = [], 0
    for res in sg.resolutions(G.img_resolution):
        convs = ["conv1"] if res == 4 else ["conv0", "conv1"]
        for name in convs:
            out.append((f"b{res}/{name}", w_idx))
            w_idx += 1
        if include_torgb and (G.architecture == "skip" or res == G.img_resolution):
            out.append((f"b{res}/torgb", w_idx))
    return out


def sefa(
    G, variables, layers: Sequence[int] | None = None, include_torgb: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """SeFa (Shen & Zhou 2021): the unit directions n maximising ‖A n‖, where A stacks the
    style-affine weights (one row per modulated input channel, each row normalised) of the
    conv layers reading the W+ entries in `layers` (all conv layers by default, as
    rosinality's closed_form_factorization). Returns (directions [K, w_dim], eigenvalues
    [K] of AᵀA), by decreasing eigenvalue; the directions are orthonormal."""
    params = traverse_util.flatten_dict(variables["params"]["synthesis"], sep="/")
    chosen = [
        (name, idx)
        for name, idx in affine_layers(G, include_torgb)
        if layers is None or idx in set(layers)
    ]
    if not chosen:
        raise ValueError(f"no style affine reads the W+ entries {list(layers)}")
    rows = [np.asarray(params[f"{name}/affine/weight"], np.float64).T for name, _ in chosen]
    a = np.concatenate(rows)  # [Σ in_channels, w_dim]
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    return vt.astype(np.float32), (s**2).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# InterFaceGAN-style directions from labels.


@dataclasses.dataclass
class Boundary:
    direction: np.ndarray  # unit normal of the separating hyperplane, [w_dim] or [num_ws, w_dim]
    offset: float  # the hyperplane is direction · w + offset = 0
    accuracy: float  # training accuracy of the classifier


def labels_from_scores(scores, fraction: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """InterFaceGAN's selection for continuous attribute scores: the top `fraction` become
    positives and the bottom `fraction` negatives. Returns (indices, binary labels)."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    k = max(1, round(len(scores) * fraction))
    if 2 * k > len(scores):
        raise ValueError(f"fraction {fraction} of {len(scores)} scores overlaps (need ≤ 0.5)")
    order = np.argsort(scores)
    idx = np.concatenate([order[-k:], order[:k]])
    return idx, np.concatenate([np.ones(k), np.zeros(k)])


def _checked(latents, labels) -> tuple[np.ndarray, np.ndarray]:
    """(latents, labels) as float64, with their agreement and both classes checked."""
    x = np.asarray(latents, np.float64)
    y = np.asarray(labels).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} latents but {len(y)} labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1 (use labels_from_scores for continuous scores)")
    y = y.astype(np.float64)
    if y.min() == y.max():
        raise ValueError("labels must contain both classes (0 and 1)")
    return x, y


def mean_difference(latents, labels) -> Boundary:
    """The direction from the mean code of label 0 to that of label 1 (unit length), with
    the hyperplane through the midpoint of the two means. Where the codes' covariance is
    not isotropic (W is not), this is not the best separating normal (fit_direction's) but
    the average change between the classes: on the renderer-taught synthetic64 it is 0.88
    from the true smile axis in cosine, the logistic normal 0.48."""
    x, y = _checked(latents, labels)
    shape = x.shape[1:]
    x = x.reshape(len(x), -1)
    mean0, mean1 = x[y < 0.5].mean(0), x[y > 0.5].mean(0)
    direction = (mean1 - mean0) / np.linalg.norm(mean1 - mean0)
    offset = -float(direction @ (mean0 + mean1)) / 2
    accuracy = float(np.mean(((x @ direction + offset) > 0) == (y > 0.5)))
    return Boundary(direction.reshape(shape).astype(np.float32), offset, accuracy)


def fit_direction(latents, labels, l2: float = 1e-3, max_iter: int = 50) -> Boundary:
    """A linear classifier on latent codes (L2-regularised logistic regression solved by
    Newton's method, in float64); its unit normal is the editing direction, pointing towards
    label 1 (InterFaceGAN fits a linear SVM for the same purpose). latents: W [N, w_dim] or
    W+ [N, num_ws, w_dim]; labels: [N] of 0/1 (or booleans)."""
    x, y = _checked(latents, labels)
    shape = x.shape[1:]
    x = x.reshape(len(x), -1)
    # Centre and scale for a well-conditioned Newton solve; undone below.
    mu, sd = x.mean(0), x.std(0) + 1e-12
    xb = np.concatenate([(x - mu) / sd, np.ones((len(x), 1))], axis=1)
    beta = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], l2 * len(x))
    reg[-1] = 0  # no penalty on the bias
    for _ in range(max_iter):
        p = 1 / (1 + np.exp(-np.clip(xb @ beta, -30, 30)))
        grad = xb.T @ (p - y) + reg * beta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    weight = beta[:-1] / sd
    bias = beta[-1] - np.sum(weight * mu)
    norm = np.linalg.norm(weight)
    accuracy = float(np.mean(((x @ weight + bias) > 0) == (y > 0.5)))
    return Boundary((weight / norm).reshape(shape).astype(np.float32), float(bias / norm), accuracy)


def project_out(direction, other) -> np.ndarray:
    """InterFaceGAN's conditional editing: `direction` with its component along `other`
    removed (so the edit leaves the other attribute's score unchanged), renormalised."""
    d = np.asarray(direction, np.float64)
    o = np.asarray(other, np.float64)
    o = o / np.linalg.norm(o)
    d = d - np.sum(d * o) * o
    return (d / np.linalg.norm(d)).astype(np.float32)


def sample_w(G, variables, num_samples: int, seed: int = 0, truncation_psi: float = 1.0):
    """(z [N, z_dim], W [N, w_dim]) for labelling samples before `fit_direction`."""
    z = np.random.RandomState(seed).randn(num_samples, G.z_dim).astype(np.float32)
    ws = stylegan2_generate.map_to_ws(
        G, variables, z, truncation_psi=truncation_psi, batch_size=1024
    )
    return z, ws[:, 0]


def classified_samples(G, variables, clf, n: int, seed: int = 0):
    """InterFaceGAN's labelled samples: (W [n, w_dim] of sample_w, the attribute
    classifier's labels [n] of the images G(z): its logit 0 > 0)."""
    z, w = sample_w(G, variables, n, seed)
    labels = []
    for i in range(0, n, 100):
        images = stylegan2_generate.generate(G, variables, z[i : i + 100], batch_size=100)
        labels.append(np.asarray(clf.logits(images))[:, 0] > 0)
    return w, np.concatenate(labels)
