"""SEAN: parity with the official code (../shared/fixtures/sean_s64_*), the weight import's
errors, and the properties of SEAN normalisation and region pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, fixture_file, nchw

from stylejax import model_format
from stylejax.convert import convert
from stylejax.convert import sean as convert_sean
from stylejax.model_format import CheckpointError, load_pretrained
from stylejax.models import sean


def nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(fixture_file("sean_s64_ref.npz")))


@pytest.fixture(scope="module")
def generator():
    kind, config, variables = convert_sean.read_sean(str(fixture_file("sean_s64_G.pth")))
    assert kind == "sean_generator"
    return model_format.build("sean_generator", config), variables


@pytest.fixture(scope="module")
def encoded(generator, ref):
    G, variables = generator
    apply = jax.jit(lambda v, x, s: G.apply(v, x, s, method=lambda m, x, s: m.Zencoder(x, s)))
    return apply(variables, nhwc(ref["x"]), nhwc(ref["label"]))


def test_converted_config(generator):
    G, variables = generator
    assert (G.label_nc, G.ngf, G.style_length, G.zencoder_ngf) == (8, 6, 32, 32)
    # All 19 per-region layers are kept although label_nc is 8.
    ace = variables["params"]["head_0"]["ace_0"]
    assert sorted(k for k in ace if k.startswith("fc_mu")) == sorted(f"fc_mu{j}" for j in range(19))
    assert "fc_mu0" not in variables["params"]["up_3"]["ace_0"]  # up_3: SPADE branch only
    assert set(variables) == {"params", "batch_stats", "spectral"}


def test_style_codes_and_encoder_features(encoded, ref):
    codes, present, feat = encoded
    assert_close(codes, ref["style_codes"], 1e-5, 1e-5, "style_codes")
    assert_close(nchw(feat), ref["zenc_feat"], 1e-5, 5e-5, "zenc_feat")
    # Class 6 is absent from image 1: flagged, and its row is zero.
    assert np.asarray(present).sum() == 15 and not present[1, 6]
    assert np.all(np.asarray(codes)[1, 6] == 0)


def test_reconstruction_blocks_and_region_swap(generator, encoded, ref):
    """One batch of eval-mode runs (batch norm uses running statistics, so the samples are
    independent): recorded noise, zero noise, and the swapped style matrix of image 0."""
    G, variables = generator
    codes = np.asarray(encoded[0])
    noise = {k[6:]: nhwc(v) for k, v in ref.items() if k.startswith("noise_")}
    label = nhwc(ref["label"])
    batch_codes = np.concatenate([codes, codes, ref["style_swapped"]])
    batch_label = np.concatenate([label, label, label[:1]])
    batch_noise = {k: np.concatenate([v, np.zeros_like(v), v[:1]]) for k, v in noise.items()}
    run = jax.jit(lambda v, s, c, n: G.apply(v, s, style_codes=c, noise=n, return_features=True))
    out, features = run(variables, batch_label, batch_codes, batch_noise)
    out = nchw(out)
    assert_close(out[:2], ref["fake"], 1e-5, 1e-5, "fake")
    assert_close(out[2:4], ref["fake_zero_noise"], 1e-5, 1e-5, "fake_zero_noise")
    assert_close(out[4:], ref["fake_swap"], 1e-5, 1e-5, "fake_swap (class 7 from image 1)")
    assert_close(out[:1], ref["fake_ui_own"], 1e-5, 1e-5, "fake_ui_own")
    for name in ("fc",) + sean.BLOCKS:
        assert_close(nchw(features[name])[:2], ref[f"g_{name}"], 1e-5, 1e-5, f"g_{name}")
    # The noise matters (24 % in the fixture), so the rules above were really tested.
    assert np.linalg.norm(out[:2] - out[2:4]) > 0.1 * np.linalg.norm(out[:2])


def test_discriminator_features_and_logits(ref):
    kind, config, variables = convert_sean.read_sean(str(fixture_file("sean_s64_D.pth")))
    assert kind == "sean_discriminator"
    assert config == {"label_nc": 8, "ndf": 16, "n_layers": 3, "num_D": 2}
    D = model_format.build("sean_discriminator", config)
    outs = jax.jit(D.apply)(variables, nhwc(ref["d_in"]))
    for i in range(2):
        for j in range(4):
            assert_close(nchw(outs[i][j]), ref[f"d{i}_{j}"], 1e-5, 5e-5, f"d{i}_{j}")


def test_convert_and_load_pretrained(tmp_path, generator):
    meta = convert(fixture_file("sean_s64_G.pth"), tmp_path / "g")
    assert meta["family"] == "sean" and list(meta["networks"]) == ["g"]
    G, variables = load_pretrained(tmp_path / "g")
    assert G == generator[0]
    jax.tree_util.tree_map(np.testing.assert_array_equal, variables, generator[1])
    meta = convert(fixture_file("sean_s64_D.pth"), tmp_path / "d")
    D, _ = load_pretrained(tmp_path / "d")
    assert isinstance(D, sean.MultiscaleDiscriminator) and D.num_D == 2


def test_spectral_norm_is_baked_into_the_converted_kernels(generator):
    """kernel = weight_orig / σ with torch's eval-mode σ = u·(W v); the model's own σ of the
    baked kernel (from the same u, v) is then 1."""
    from stylejax.convert import readers

    sd = readers.load_checkpoint(str(fixture_file("sean_s64_G.pth")))
    _, variables = generator
    keys = [k for k in sd if k.endswith(".weight_orig")]
    assert len(keys) >= 3
    for key in keys:
        prefix = key[: -len(".weight_orig")]
        w = np.asarray(sd[key], np.float64)  # OIHW
        u, v = (np.asarray(sd[f"{prefix}.weight_{n}"], np.float64) for n in "uv")
        sigma = u @ (w.reshape(len(w), -1) @ v)
        node = variables["params"]
        for name in prefix.split("."):
            node = node[name] if name != "0" else node
        kernel = np.asarray(node["kernel"], np.float64)
        np.testing.assert_allclose(kernel, (w / sigma).transpose(2, 3, 1, 0), rtol=1e-6, atol=1e-9)
        baked = kernel.transpose(3, 2, 0, 1).reshape(len(w), -1)
        assert u @ (baked @ v) == pytest.approx(1.0, abs=1e-6), key


def test_region_transfer_scores(generator, ref):
    """A region moved from an image to itself changes nothing (same noise for the edit and
    G(A)); from another image it changes the output; a region absent from every pair is an
    error."""
    from stylejax.train import sean as train_sean

    G, variables = generator
    x = nhwc(ref["x"])
    labels = np.argmax(nhwc(ref["label"]), axis=-1)
    counts = np.bincount(labels.reshape(-1), minlength=G.label_nc)
    region = int(np.argmax(counts))
    rng = jax.random.PRNGKey(0)
    same = train_sean.region_transfer_scores(G, variables, labels, x, labels, x, region, rng)
    assert same["pairs"] == len(x)
    assert same["colour_gap_after"] == pytest.approx(same["colour_gap_before"], rel=1e-5)
    assert same["psnr_outside"] > 100  # identical outputs (the MSE floor gives 126 dB)
    flipped = labels[::-1], x[::-1]
    other = train_sean.region_transfer_scores(G, variables, labels, x, *flipped, region, rng)
    assert other["psnr_outside"] < 100  # another image's codes do change the output
    rare = int(np.argmin(counts))
    without = np.where(labels == rare, region, labels)  # the rarest class painted over
    with pytest.raises(ValueError, match=f"region {rare} is in no pair"):
        train_sean.region_transfer_scores(G, variables, without, x, labels, x, rare, rng)


def test_converter_errors_name_the_file():
    from stylejax.convert import readers

    sd = dict(readers.load_checkpoint(fixture_file("sean_s64_G.pth")))
    del sd["up_1.conv_0.weight_u"]
    with pytest.raises(CheckpointError, match=r"bad\.pth.*missing 1 tensors.*up_1/conv_0/u"):
        convert_sean.read_sean("bad.pth", sd)
    with pytest.raises(CheckpointError, match=r"other\.pt: not a SEAN checkpoint"):
        convert_sean.read_sean("other.pt", {"conv.weight": np.zeros((1, 1, 1, 1))})


# ---------------------------------------------------------------------------------------
# Properties on a small random model.


def random_variables(module, *args, seed=0, **kwargs):
    """Variables of `module` filled with N(0, 0.5²) draws: shapes from eval_shape, so no
    init program is compiled (XLA takes seconds per random initialiser on a CPU)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda r: module.init(r, *args, **kwargs), jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.normal(size=s.shape).astype(np.float32) * 0.5), shapes
    )


@pytest.fixture(scope="module")
def small_ace():
    ace = sean.ACE(features=4, style_length=6, spade_hidden=5)
    segmap = sean.one_hot(jnp.zeros((1, 8, 8), jnp.int32), 3)
    variables = random_variables(ace, jnp.zeros((1, 8, 8, 4)), segmap, jnp.zeros((1, 3, 6)), 0.0)
    stats = variables["batch_stats"]["param_free_norm"]
    stats["running_var"] = jnp.abs(stats["running_var"]) + 0.5
    return ace, variables


def _conv_same_constant_interior(value, kernel, bias):
    """A 3×3 conv of a constant map, away from the border: Σ_taps W·value + b."""
    return np.einsum("hwio,i->o", np.asarray(kernel), value) + np.asarray(bias)


def test_one_region_mask_is_adain_with_the_transformed_code(small_ace):
    ace, variables = small_ace
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 8, 8, 4)).astype(np.float32)
    codes = rng.normal(size=(1, 3, 6)).astype(np.float32)
    segmap = sean.one_hot(jnp.full((1, 8, 8), 2, jnp.int32), 3)  # one region: class 2
    out = np.asarray(ace.apply(variables, x, segmap, codes, 0.0))
    p, s = variables["params"], variables["batch_stats"]["param_free_norm"]
    mu = np.maximum(codes[0, 2] @ np.asarray(p["fc_mu2"]["kernel"]) + p["fc_mu2"]["bias"], 0)
    # The SPADE branch of a constant one-hot map is constant too (two convs deep).
    hidden = np.maximum(
        _conv_same_constant_interior(
            np.eye(3)[2], p["Spade"]["mlp_shared"]["kernel"], p["Spade"]["mlp_shared"]["bias"]
        ),
        0,
    )

    def blend(name, spade_name, raw):
        a = 1 / (1 + np.exp(-float(p[raw][0])))
        style = _conv_same_constant_interior(mu, p[name]["kernel"], p[name]["bias"])
        spade = _conv_same_constant_interior(
            hidden, p["Spade"][spade_name]["kernel"], p["Spade"][spade_name]["bias"]
        )
        return a * style + (1 - a) * spade

    gamma = blend("conv_gamma", "mlp_gamma", "blending_gamma")
    beta = blend("conv_beta", "mlp_beta", "blending_beta")
    normalized = (x - np.asarray(s["running_mean"])) / np.sqrt(np.asarray(s["running_var"]) + 1e-5)
    want = normalized * (1 + gamma) + beta
    # Two pixels from the border the zero padding of the two stacked convs is out of reach.
    assert_close(out[:, 2:-2, 2:-2], want[:, 2:-2, 2:-2], 1e-5, 1e-5, "ACE vs AdaIN")


def test_unused_region_code_has_no_effect(small_ace):
    ace, variables = small_ace
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    labels = rng.integers(0, 2, size=(2, 8, 8))  # classes 0 and 1 only
    segmap = sean.one_hot(labels, 3)
    codes = rng.normal(size=(2, 3, 6)).astype(np.float32)
    other = codes.copy()
    other[:, 2] = rng.normal(size=(2, 6)) * 10
    changed = codes.copy()
    changed[:, 1] += 1.0
    run = jax.jit(lambda c: ace.apply(variables, x, segmap, c, 0.0))
    np.testing.assert_array_equal(run(codes), run(other))
    assert np.abs(np.asarray(run(codes) - run(changed))).max() > 1e-3  # a used one does


def test_region_means_match_a_direct_computation():
    rng = np.random.default_rng(2)
    feat = rng.normal(size=(2, 8, 8, 5)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 16, 16))
    labels[1, ::2, ::2] = np.where(labels[1, ::2, ::2] == 3, 0, labels[1, ::2, ::2])
    codes, present = sean.region_means(jnp.asarray(feat), sean.one_hot(labels, 4))
    small = labels[:, ::2, ::2]  # legacy nearest 16 → 8 takes the even pixels
    for n in range(2):
        for j in range(4):
            mask = small[n] == j
            want = feat[n][mask].mean(axis=0) if mask.any() else np.zeros(5)
            assert bool(present[n, j]) == mask.any()
            np.testing.assert_allclose(codes[n, j], want, rtol=1e-6, atol=1e-6)
    assert not present[1, 3]


def test_spectral_norm_power_iteration_finds_the_top_singular_value():
    conv = sean.SpectralConv(6, 3, use_bias=False)
    x = jnp.ones((1, 5, 5, 4))
    variables = random_variables(conv, x, seed=3)

    @jax.jit
    def iterate(variables):
        def step(_, spectral):
            v = {**variables, "spectral": spectral}
            return conv.apply(v, x, train=True, mutable=["spectral"])[1]["spectral"]

        spectral = jax.lax.fori_loop(0, 60, step, variables["spectral"])
        return spectral, conv.apply({**variables, "spectral": spectral}, x)

    spectral, out = iterate(variables)
    kernel = np.asarray(variables["params"]["kernel"])
    w_mat = kernel.transpose(3, 2, 0, 1).reshape(6, -1)
    u, v = np.asarray(spectral["u"]), np.asarray(spectral["v"])
    np.testing.assert_allclose(u @ w_mat @ v, np.linalg.svd(w_mat)[1][0], rtol=1e-4)
    # Eval uses the stored vectors: the output is the conv with kernel / σ.
    want = jax.lax.conv_general_dilated(
        x,
        kernel / (u @ w_mat @ v),
        (1, 1),
        ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    assert_close(out, want, 1e-5, 1e-5, "spectral conv")


def test_region_editing_on_style_matrices(encoded, ref):
    codes, present, _ = (np.asarray(x) for x in encoded)
    swapped = sean.transfer_regions(codes[:1], codes[1:], [int(ref["swap_class"])])
    assert_close(swapped, ref["style_swapped"], 1e-6, 1e-6, "class-7 swap (official UI path)")
    # Class 6 is absent from image 1: with its flags, image 0 keeps its own class-6 style.
    kept = np.asarray(sean.transfer_regions(codes[:1], codes[1:], [6, 7], present[1:]))
    np.testing.assert_array_equal(kept[0, 6], codes[0, 6])
    np.testing.assert_array_equal(kept[0, 7], codes[1, 7])
    half = np.asarray(sean.interpolate_regions(codes[:1], codes[1:], 0.5, [2]))
    np.testing.assert_allclose(half[0, 2], (codes[0, 2] + codes[1, 2]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(np.delete(half[0], 2, 0), np.delete(codes[0], 2, 0))
    painted = np.asarray(sean.paint(ref["label_idx"], ref["label_idx"] == 3, 5))
    assert not (painted == 3).any() and (painted == 5).sum() > (ref["label_idx"] == 5).sum()
    with pytest.raises(ValueError, match="region 8 is not a class"):
        sean.transfer_regions(codes, codes, [8])


def test_per_block_crossover_routes_codes(generator, encoded, ref):
    G, variables = generator
    codes = np.asarray(encoded[0])
    other = codes[::-1]  # each image gets the other's styles
    noise = {k[6:]: nhwc(v) for k, v in ref.items() if k.startswith("noise_")}
    run = jax.jit(lambda v, s, c, n: G.apply(v, s, style_codes=c, noise=n))
    label = nhwc(ref["label"])
    all_b = nchw(run(variables, label, sean.crossover(other, codes, sean.STYLED_BLOCKS), noise))
    none_b = nchw(run(variables, label, sean.crossover(codes, other, []), noise))
    head_b = nchw(run(variables, label, sean.crossover(codes, other, ["head_0"]), noise))
    assert_close(all_b, ref["fake"], 1e-5, 1e-5, "crossover with every block from b")
    assert_close(none_b, ref["fake"], 1e-5, 1e-5, "crossover with no block from b")
    assert 1e-4 < np.abs(head_b - ref["fake"]).max()
    with pytest.raises(ValueError, match="unknown blocks"):
        sean.crossover(codes, other, ["up_3"])
