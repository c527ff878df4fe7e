"""Stored FIR filters: a checkpoint trained with another blur kernel converts with that
kernel (the models' resample_taps), or is refused with the filter named; never silently
replaced by [1, 3, 3, 1]."""

import jax
import numpy as np
import pytest
import torch_writers
from conftest import assert_close, fixture_file

from stylejax.convert import convert_stylegan2, psp, readers
from stylejax.convert.stylegan2 import resample_taps
from stylejax.model_format import CheckpointError, load_pretrained

TAPS = [1, 2, 2, 1]


def fir(taps, gain=1.0):
    """The 2-D filter rosinality's make_kernel and ada's setup_filter store, times `gain`."""
    t = np.asarray(taps, np.float32)
    k = t[None, :] * t[:, None]
    return (k / k.sum() * gain).astype(np.float32)


def with_filters(sd, suffix, value):
    replaced = {k: (value if k.endswith(suffix) else v) for k, v in sd.items()}
    assert any(k.endswith(suffix) for k in sd), f"no {suffix} in the fixture"
    return replaced


def assert_same_params(got, want):
    """Equal variables (to 1e-6: TF's mod_bias is stored without ada's +1)."""
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves(want), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def check_converted_with_taps(out, default_out, ref):
    """The file's networks are the default-filter networks run with TAPS: same parameters,
    outputs of the model built with TAPS, and visibly different from [1, 3, 3, 1]."""
    for which in ("g_ema", "d"):
        module, v = load_pretrained(out, which)
        default, v0 = load_pretrained(default_out, which)
        # Tuples, as config.json's lists are built into hashable modules.
        assert module.resample_taps == tuple(TAPS) and default.resample_taps == (1, 3, 3, 1)
        assert_same_params(v, v0)
        with_taps = default.clone(resample_taps=tuple(TAPS))
        if which == "g_ema":
            args, kwargs = (ref["ws"],), dict(input_space="w+", noise_mode="const")
        else:
            args, kwargs = (ref["d_in"].transpose(0, 2, 3, 1),), {}
        if "c" in ref:
            args += (ref["c"],)
        got = np.asarray(module.apply(v, *args, **kwargs))
        assert_close(got, with_taps.apply(v0, *args, **kwargs), what=which)
        before = np.asarray(default.apply(v0, *args, **kwargs))
        assert np.linalg.norm(got - before) > 1e-2 * np.linalg.norm(before), which


@pytest.fixture(scope="module")
def ada_state():
    return readers.load_checkpoint(fixture_file("ada_s32_state.pt"))


def save_ada(path, state, g_filter=None, d_filter=None):
    g, d = state["G_ema"], state["D"]
    g = g if g_filter is None else with_filters(g, "resample_filter", g_filter)
    d = d if d_filter is None else with_filters(d, "resample_filter", d_filter)
    torch_writers.save_ada_pickle(path, g, d, state["G_init_kwargs"], state["D_init_kwargs"])


def test_rosinality_kernel_converts_exactly(tmp_path):
    ckpt = readers.load_checkpoint(fixture_file("rosinality_s32.pt"))
    # Generator kernels carry the up-sampling gain 4 (rosinality's Blur and Upsample).
    blurred = dict(ckpt)
    for net, gain in (("g_ema", 4), ("g", 4), ("d", 1)):
        blurred[net] = with_filters(ckpt[net], ".kernel", fir(TAPS, gain))
    torch_writers.save_torch_zip(tmp_path / "blur.pt", blurred)
    meta = convert_stylegan2(tmp_path / "blur.pt", tmp_path / "out", which="all")
    assert [meta["networks"][n]["config"]["resample_taps"] for n in ("g_ema", "g", "d")] == [
        TAPS
    ] * 3
    default = convert_stylegan2(fixture_file("rosinality_s32.pt"), tmp_path / "default", "all")
    assert default["networks"]["g_ema"]["config"]["resample_taps"] == [1, 3, 3, 1]
    ref = dict(np.load(fixture_file("rosinality_s32_ref.npz")))
    G, v = load_pretrained(tmp_path / "default")
    check_converted_with_taps(
        tmp_path / "out",
        tmp_path / "default",
        {"ws": np.asarray(G.apply(v, ref["z"], method=G.map)), **ref},
    )


def test_ada_and_tf_filters_convert_exactly(tmp_path, ada_state):
    save_ada(tmp_path / "default.pkl", ada_state)
    save_ada(tmp_path / "blur.pkl", ada_state, fir(TAPS), fir(TAPS))
    meta = convert_stylegan2(tmp_path / "blur.pkl", tmp_path / "out", which="all")
    assert meta["networks"]["d"]["config"]["resample_taps"] == TAPS
    convert_stylegan2(tmp_path / "default.pkl", tmp_path / "default", which="all")
    ref = dict(np.load(fixture_file("ada_s32_ref.npz")))
    check_converted_with_taps(tmp_path / "out", tmp_path / "default", ref)

    # TF builds its filters from the resample_kernel kwarg, stored when it was not the default.
    import test_convert_stylegan2 as tf_rules

    g_tf = tf_rules.ada_to_tf_generator(ada_state["G_ema"])
    d_tf = tf_rules.ada_to_tf_discriminator(ada_state["D"])
    g_kw = {"latent_size": 64, "dlatent_size": 64, "resample_kernel": TAPS}
    torch_writers.save_tf_pickle(
        tmp_path / "tf.pkl", g_tf, d_tf, g_tf, g_kw, {"resample_kernel": TAPS}
    )
    convert_stylegan2(tmp_path / "tf.pkl", tmp_path / "tf", which="all")
    check_converted_with_taps(tmp_path / "tf", tmp_path / "default", ref)


def test_unrepresentable_filters_are_refused_with_the_filter_named(tmp_path, ada_state):
    ckpt = readers.load_checkpoint(fixture_file("rosinality_s32.pt"))
    odd = fir([1, 3, 3, 1], 4)
    odd[0, :2] += [0.05, -0.05]  # same sum, no longer an outer product
    g = dict(ckpt["g_ema"], **{"convs.2.conv.blur.kernel": odd})
    torch_writers.save_torch_zip(tmp_path / "odd.pt", dict(ckpt, g_ema=g))
    with pytest.raises(
        CheckpointError,
        match=r"odd\.pt: the generator's FIR filter g_ema\.convs\.2\.conv\.blur\.kernel = "
        r"\[\[0\.1125, 0\.1375.*is not separable",
    ):
        convert_stylegan2(tmp_path / "odd.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()

    # One ada layer trained with another filter than the rest.
    d = dict(ada_state["D"], **{"b16.conv1.resample_filter": fir([1, 2, 1])})
    save_ada(tmp_path / "mixed.pkl", dict(ada_state, D=d))
    with pytest.raises(
        CheckpointError,
        match=r"mixed\.pkl: the discriminator's FIR filters differ between layers "
        r"\(D\.b32\.resample_filter = \[\[0\.015625.*D\.b16\.conv1\.resample_filter = "
        r"\[\[0\.0625, 0\.125, 0\.0625\]",
    ):
        convert_stylegan2(tmp_path / "mixed.pkl", tmp_path / "out", which="d")


def test_resample_taps_reads_every_stored_form():
    f8 = np.array([1, 3, 5, 7, 7, 5, 3, 1], np.float32)
    assert resample_taps({"f": f8 / f8.sum()}, 1, "x.pkl", "generator") == [1, 3, 5, 7, 7, 5, 3, 1]
    assert resample_taps({"k": fir([1, 2, 1], 4)}, 4, "x.pt", "generator") == [1, 2, 1]
    assert resample_taps({}, 1, "x.pkl", "generator") == [1, 3, 3, 1]
    gauss = np.exp(-0.5 * np.linspace(-1.5, 1.5, 4) ** 2)
    np.testing.assert_allclose(
        resample_taps({"k": fir(gauss)}, 1, "x.pkl", "generator"), gauss / gauss.sum(), rtol=1e-6
    )
    with pytest.raises(CheckpointError, match=r"x\.pt: the generator's FIR filter k = .* sum 4"):
        resample_taps({"k": fir([1, 3, 3, 1])}, 4, "x.pt", "generator")  # gain 1, not 4


def test_psp_family_decoder_kernels_are_read():
    """pSp / ReStyle / e4e decoders are rosinality generators with their kernels."""
    obj = readers.load_checkpoint(fixture_file("psp_s32.pt"))
    _, _, dec = psp.split_checkpoint(obj, "psp.pt", "pSp")
    blurred = with_filters(dec, ".kernel", fir(TAPS, 4))
    config, _, _ = psp.read_decoder(blurred, obj["latent_avg"], True, "psp.pt")
    assert config["resample_taps"] == TAPS
    with pytest.raises(CheckpointError, match=r"decoder's FIR filter decoder\.convs\.0\.conv"):
        psp.read_decoder(with_filters(dec, ".kernel", fir(TAPS)), None, False, "psp.pt")
