"""stylejax.stylegan2_generate on the shipped 64 px generator: seeds, truncation, style-mixing cells
against direct generator calls, interpolation paths, latent files."""

from pathlib import Path

import jax
import numpy as np
import pytest

import stylejax
from stylejax import stylegan2_generate as gen
from stylejax.model_format import load_pretrained

# The small adversarial generator the package ships (z/w 64, 32 channels): these tests check
# the tools, with numbers measured on it.
SHIPPED = Path(stylejax.__file__).parent / "pretrained" / "synthetic64_gan"


@pytest.fixture(scope="module")
def model():
    return load_pretrained(SHIPPED)


def test_parse_range_and_errors():
    assert gen.parse_range("0-3,7, 10-11") == [0, 1, 2, 3, 7, 10, 11]
    with pytest.raises(ValueError, match="expected integers and ranges like '0-3,7', got 'a-b'"):
        gen.parse_range("a-b")
    with pytest.raises(ValueError, match="at least one integer"):
        gen.parse_range(",")


def test_seeds_give_the_official_z():
    z = gen.z_from_seeds([0, 7], 5)
    np.testing.assert_array_equal(z[1], np.random.RandomState(7).randn(5).astype(np.float32))
    assert z.shape == (2, 5) and not np.allclose(z[0], z[1])


def test_truncation_and_cutoff(model):
    G, variables = model
    z = gen.z_from_seeds(range(3), G.z_dim)
    w_avg = np.asarray(variables["buffers"]["mapping"]["w_avg"])
    full = gen.map_to_ws(G, variables, z)
    zero = gen.map_to_ws(G, variables, z, truncation_psi=0.0)
    np.testing.assert_allclose(zero, np.broadcast_to(w_avg, zero.shape), atol=1e-6)
    cut = gen.map_to_ws(G, variables, z, truncation_psi=0.5, truncation_cutoff=4)
    np.testing.assert_allclose(cut[:, :4], w_avg + 0.5 * (full[:, :4] - w_avg), atol=1e-5)
    np.testing.assert_allclose(cut[:, 4:], full[:, 4:], atol=1e-6)
    # W inputs truncate the same way as z inputs.
    via_w = gen.to_ws(G, variables, full[:, 0], "w", truncation_psi=0.5, truncation_cutoff=4)
    np.testing.assert_allclose(via_w, cut, atol=1e-5)


def test_class_labels_errors(model):
    G, _ = model
    assert gen.class_labels(G, None, 3) is None
    with pytest.raises(ValueError, match="unconditional"):
        gen.class_labels(G, 2, 3)


def test_style_mixing_cells_equal_direct_calls(model):
    G, variables = model
    rows, cols, layers = [3, 4], [10, 11], [0, 1, 2, 3]
    tiles = gen.style_mixing_grid(G, variables, rows, cols, layers, truncation_psi=0.8)
    assert tiles.shape == (3, 3, 64, 64, 3)
    np.testing.assert_array_equal(tiles[0, 0], 1.0)  # blank corner
    ws = gen.map_to_ws(G, variables, gen.z_from_seeds(rows + cols, G.z_dim), truncation_psi=0.8)
    spliced = []
    for r in range(2):
        for c in range(2):
            w = ws[r].copy()
            w[layers] = ws[2 + c][layers]
            spliced.append(w)
    direct = jax.jit(lambda v, w: G.apply(v, w, input_space="w+", noise_mode="const"))(
        variables, np.stack(spliced)
    )
    np.testing.assert_allclose(tiles[1:, 1:].reshape(4, 64, 64, 3), direct, atol=2e-5)
    # The headers are the unmixed images, and mixing changed the cells.
    plain = gen.synthesize(G, variables, ws)
    np.testing.assert_allclose(tiles[1:, 0], plain[:2], atol=2e-5)
    np.testing.assert_allclose(tiles[0, 1:], plain[2:], atol=2e-5)
    assert np.abs(tiles[1, 1] - tiles[1, 0]).mean() > 0.01
    with pytest.raises(ValueError, match=r"layers must lie in 0…9"):
        gen.mix_ws(ws[:1], ws[1:2], [12])


def test_interpolation_paths(model):
    G, variables = model
    z = gen.z_from_seeds([1, 2, 3], G.z_dim)
    keys = gen.map_to_ws(G, variables, z)
    frames = gen.interpolation_ws(G, variables, z, steps=4, space="w")
    assert frames.shape == (9, G.num_ws, G.w_dim)
    np.testing.assert_allclose(frames[[0, 4, 8]], keys, atol=1e-5)
    np.testing.assert_allclose(frames[2], (keys[0] + keys[1]) / 2, atol=1e-5)  # lerp
    zf = gen.interpolation_ws(G, variables, z, steps=4, space="z")
    np.testing.assert_allclose(zf[[0, 4, 8]], keys, atol=1e-5)
    with pytest.raises(ValueError, match="'w' \\(lerp\\) or 'z' \\(slerp\\)"):
        gen.interpolation_ws(G, variables, z, space="x")
    with pytest.raises(ValueError, match="at least two keyframes"):
        gen.interpolation_ws(G, variables, z[:1])


def test_slerp_keeps_the_norm_and_the_plane():
    a, b = np.array([3.0, 0, 0]), np.array([0, 3.0, 0])
    mid = gen.slerp(a, b, 0.5)
    np.testing.assert_allclose(mid, [3 / np.sqrt(2), 3 / np.sqrt(2), 0], atol=1e-6)
    t = np.linspace(0, 1, 5)[:, None]
    np.testing.assert_allclose(np.linalg.norm(gen.slerp(a, b, t), axis=1), 3.0, atol=1e-5)
    np.testing.assert_allclose(gen.slerp(a, 2 * a, 0.5), 1.5 * a, atol=1e-6)  # parallel: lerp


def test_generate_batches_and_latent_files(model, tmp_path):
    G, variables = model
    # Batches of 4 (the last padded) reuse the style-mixing test's compiled program.
    z = gen.z_from_seeds([5, 6, 7, 8, 9], G.z_dim)
    const = gen.generate(G, variables, z, batch_size=4)
    assert const.shape == (5, 64, 64, 3) and np.isfinite(const).all()
    np.testing.assert_allclose(
        gen.generate(G, variables, z[1:], batch_size=4), const[1:], atol=2e-5
    )

    ws = gen.map_to_ws(G, variables, z)
    gen.save_npy(tmp_path / "ws.npy", ws)
    loaded, space = gen.load_latents(tmp_path / "ws.npy", G)
    assert space == "w+" and loaded.shape == ws.shape
    np.savez(tmp_path / "z.npz", z=z)
    assert gen.load_latents(tmp_path / "z.npz", G)[1] == "z"
    np.save(tmp_path / "bad.npy", np.zeros((2, 7)))
    with pytest.raises(ValueError, match=r"bad.npy: expected z \[N, 64\] or W\+ \[N, 10, 64\]"):
        gen.load_latents(tmp_path / "bad.npy", G)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="junk.npy: cannot read as .npy/.npz"):
        gen.load_latents(tmp_path / "junk.npy", G)
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        gen.synthesize(G, variables, ws, noise_mode="off")
