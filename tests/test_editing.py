"""stylejax.stylegan2_editing: SeFa and GANSpace directions are orthonormal and extremal, fitted
directions separate labelled codes, direction files in every accepted layout."""

from pathlib import Path

import numpy as np
import pytest
from flax import traverse_util
from torch_writers import save_torch_zip

import stylejax
from stylejax import stylegan2_editing
from stylejax import stylegan2_generate as gen
from stylejax.model_format import CheckpointError, load_pretrained

# The small adversarial generator the package ships (z/w 64, 32 channels): these tests check
# the tools, with numbers measured on it.
SHIPPED = Path(stylejax.__file__).parent / "pretrained" / "synthetic64_gan"


@pytest.fixture(scope="module")
def model():
    return load_pretrained(SHIPPED)


def _orthonormal(d, atol=1e-5):
    np.testing.assert_allclose(d @ d.T, np.eye(len(d)), atol=atol)


def test_affine_layers_follow_the_ws_layout(model):
    G, _ = model
    layers = stylegan2_editing.affine_layers(G, include_torgb=True)
    assert layers[:4] == [("b4/conv1", 0), ("b4/torgb", 1), ("b8/conv0", 1), ("b8/conv1", 2)]
    convs = [idx for name, idx in layers if "conv" in name]
    assert convs == list(range(G.num_ws - 1))  # conv layer j reads W+ entry j
    assert layers[-1] == ("b64/torgb", G.num_ws - 1)


def test_sefa_directions_are_orthonormal_eigenvectors(model):
    G, variables = model
    dirs, eig = stylegan2_editing.sefa(G, variables)
    assert dirs.shape == (G.w_dim, G.w_dim)
    _orthonormal(dirs)
    assert np.all(np.diff(eig) <= 1e-4)  # by decreasing importance
    # Rebuild A (row-normalised conv affines) independently and check the eigen-equations.
    flat = traverse_util.flatten_dict(variables["params"]["synthesis"], sep="/")
    rows = [
        np.asarray(v, np.float64).T
        for k, v in flat.items()
        if k.endswith("affine/weight") and "torgb" not in k
    ]
    a = np.concatenate(rows)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    ata = a.T @ a
    np.testing.assert_allclose(ata @ dirs[0], eig[0] * dirs[0], rtol=1e-4, atol=1e-4)
    rand = np.random.default_rng(0).normal(size=(200, G.w_dim))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    assert np.max(np.sum((rand @ a.T) ** 2, axis=1)) < np.sum((a @ dirs[0]) ** 2)  # the top one
    # One 32-channel layer: A has rank 32, so half the eigenvalues vanish.
    _, eig0 = stylegan2_editing.sefa(G, variables, layers=[0])
    assert eig0[31] > 1e-3 and np.all(eig0[32:] < 1e-6)
    with pytest.raises(ValueError, match="no style affine reads the W\\+ entries \\[42\\]"):
        stylegan2_editing.sefa(G, variables, layers=[42])


def test_ganspace_pca_components(model):
    G, variables = model
    pca = stylegan2_editing.ganspace_pca(G, variables, num_samples=4000, num_components=8, seed=0)
    assert pca.components.shape == (8, G.w_dim)
    _orthonormal(pca.components)
    assert np.all(np.diff(pca.stds) <= 0)
    # Fresh samples have about the stated spread along each component.
    _, w = stylegan2_editing.sample_w(G, variables, 4000, seed=1)
    coords = (w - pca.mean) @ pca.components.T
    np.testing.assert_allclose(coords.std(0), pca.stds, rtol=0.1)
    np.testing.assert_allclose(np.linalg.norm(pca.direction(2)), pca.stds[2], rtol=1e-5)


def test_fit_direction_separates_labels():
    rng = np.random.default_rng(0)
    u = rng.normal(size=16)
    u /= np.linalg.norm(u)
    x = rng.normal(size=(400, 16)) * 2 + 1
    score = x @ u - 0.5 + 0.2 * rng.normal(size=400)
    b = stylegan2_editing.fit_direction(x, score > 0)
    assert b.accuracy > 0.95
    assert np.dot(b.direction, u) > 0.95 and abs(np.linalg.norm(b.direction) - 1) < 1e-5
    # The hyperplane offset matches: points on the plane score ~0.
    assert abs(b.offset - (-0.5)) < 0.15
    # W+ codes give a [num_ws, w_dim] direction.
    bp = stylegan2_editing.fit_direction(np.repeat(x[:, None], 3, axis=1), score > 0)
    assert bp.direction.shape == (3, 16) and bp.accuracy > 0.95
    idx, labels = stylegan2_editing.labels_from_scores(score, fraction=0.1)
    assert len(idx) == 80 and labels.sum() == 40 and score[idx[:40]].min() > score[idx[40:]].max()
    with pytest.raises(ValueError, match="both classes"):
        stylegan2_editing.fit_direction(x, np.ones(400))
    with pytest.raises(ValueError, match="labels must be 0/1"):
        stylegan2_editing.fit_direction(x, score)


def test_mean_difference_goes_from_one_class_mean_to_the_other():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2, 8))
    labels = rng.random(300) < 0.4
    x[labels] += 1.5  # class 1 sits 1.5 further along every coordinate
    b = stylegan2_editing.mean_difference(x, labels)
    diff = x[labels].mean(0) - x[~labels].mean(0)
    np.testing.assert_allclose(b.direction, diff / np.linalg.norm(diff), rtol=1e-5)
    midpoint = (x[labels].mean(0) + x[~labels].mean(0)) / 2
    assert abs(np.sum(midpoint * b.direction) + b.offset) < 1e-6  # the plane halves them
    side = (x.reshape(300, -1) @ b.direction.reshape(-1) + b.offset) > 0
    assert b.accuracy == pytest.approx(np.mean(side == labels)) and b.accuracy > 0.95
    with pytest.raises(ValueError, match="both classes"):
        stylegan2_editing.mean_difference(x, np.zeros(300))


def test_apply_direction_and_sweep(model):
    G, variables = model
    ws = gen.map_to_ws(G, variables, gen.z_from_seeds([1, 2, 3, 4], G.z_dim))
    d = np.arange(G.w_dim, dtype=np.float32) / G.w_dim
    edited = stylegan2_editing.apply_direction(ws, d, [-1, 0, 2], layers=[0, 1, 2])
    assert edited.shape == (3, 4, G.num_ws, G.w_dim)
    np.testing.assert_allclose(edited[2, :, :3], ws[:, :3] + 2 * d, atol=1e-6)
    np.testing.assert_array_equal(edited[2, :, 3:], ws[:, 3:])
    np.testing.assert_array_equal(edited[1], ws)
    # Strength 0 is the unedited image (one batch of 4, the shape test_generate compiles).
    imgs = stylegan2_editing.strength_sweep(G, variables, ws[:2], d, [0.0, 3.0])
    assert imgs.shape == (2, 2, 64, 64, 3)
    np.testing.assert_allclose(imgs[:, 0], gen.synthesize(G, variables, ws[:2]), atol=2e-5)
    assert np.abs(imgs[:, 1] - imgs[:, 0]).mean() > 0.01
    with pytest.raises(ValueError, match=r"does not fit this generator: expected \[64\]"):
        stylegan2_editing.strength_sweep(G, variables, ws, np.zeros(5), [1.0])


def test_load_direction_layouts(tmp_path):
    rng = np.random.default_rng(0)
    d = rng.normal(size=(1, 8)).astype(np.float32)
    np.save(tmp_path / "d.npy", d)
    np.testing.assert_array_equal(stylegan2_editing.load_direction(tmp_path / "d.npy"), d[0])
    save_torch_zip(tmp_path / "age.pt", d)  # InterFaceGAN tensor as e4e ships it
    np.testing.assert_array_equal(stylegan2_editing.load_direction(tmp_path / "age.pt"), d[0])
    eigvec = rng.normal(size=(8, 5)).astype(np.float32)
    save_torch_zip(tmp_path / "factor.pt", {"ckpt": "g.pt", "eigvec": eigvec})
    np.testing.assert_array_equal(
        stylegan2_editing.load_direction(tmp_path / "factor.pt", component=2), eigvec[:, 2]
    )
    comp, std = (
        rng.normal(size=(4, 1, 8)).astype(np.float32),
        np.array([3.0, 2, 1, 0.5], np.float32),
    )
    save_torch_zip(tmp_path / "pca.pt", {"comp": comp, "std": std, "mean": np.zeros((1, 8))})
    np.testing.assert_allclose(
        stylegan2_editing.load_direction(tmp_path / "pca.pt", component=1),
        comp[1, 0] * 2,
        rtol=1e-6,
    )
    with pytest.raises(
        ValueError, match=r"component 9 requested from directions of shape \(5, 8\)"
    ):
        stylegan2_editing.load_direction(tmp_path / "factor.pt", component=9)
    save_torch_zip(tmp_path / "odd.pt", {"a": d, "b": d})
    with pytest.raises(
        ValueError, match=r"odd.pt: expected .*found a dictionary with keys \['a', 'b'\]"
    ):
        stylegan2_editing.load_direction(tmp_path / "odd.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt is not a torch/pickle checkpoint"):
        stylegan2_editing.load_direction(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="direction file .*missing.npy does not exist"):
        stylegan2_editing.load_direction(tmp_path / "missing.npy")


def test_project_out_removes_the_other_attribute():
    a, b = np.array([1.0, 1.0, 0]), np.array([1.0, 0, 0])
    d = stylegan2_editing.project_out(a, b)
    np.testing.assert_allclose(d, [0, 1, 0], atol=1e-7)
