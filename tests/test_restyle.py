"""ReStyle and e4e import and models: parity with the restyle_psp_s32, restyle_e4e_s32 and
e4e_s32 fixtures (every step's codes and images; e4e at the final stage and at stage 4),
format detection, converter errors, and the progressive-stage rules."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, fixture_file, load_tool, nchw

from stylejax.convert import convert
from stylejax.convert import restyle as restyle_convert
from stylejax.convert.readers import load_checkpoint
from stylejax.model_format import CheckpointError, load_pretrained
from stylejax.models import e4e, restyle
from stylejax.models import stylegan2 as sg
from stylejax.nn import torch_ops

# The fixtures README: float32 floors reach 3.5e-6 relative by step 4; max-abs 2e-5 at step 0
# and for e4e, 2e-4 at ReStyle's step 4 (the loop amplifies rounding).
REL = 1e-5


def _restyle_fixture(name, tmp_path_factory):
    src = fixture_file(f"{name}.pt")
    ref = dict(np.load(fixture_file(f"{name}_ref.npz")))
    out = tmp_path_factory.mktemp(name) / "converted"
    meta = convert(src, out)
    model, variables = load_pretrained(out)
    run = jax.jit(restyle.run_iterations, static_argnums=(0, 3))
    images, codes = run(model, variables, ref["x"].transpose(0, 2, 3, 1), 5)
    avg = jax.jit(lambda v: model.apply(v, method=restyle.ReStyle.average_image))(variables)
    return {
        "out": out,
        "meta": meta,
        "model": model,
        "variables": variables,
        "ref": ref,
        "images": np.asarray(images),
        "codes": np.asarray(codes),
        "avg": np.asarray(avg),
    }


@pytest.fixture(scope="module")
def restyle_psp(tmp_path_factory):
    return _restyle_fixture("restyle_psp_s32", tmp_path_factory)


@pytest.fixture(scope="module")
def restyle_e4e(tmp_path_factory):
    return _restyle_fixture("restyle_e4e_s32", tmp_path_factory)


def _check_every_step(result):
    ref = result["ref"]
    for k in range(5):
        max_abs = 2e-5 if k == 0 else 2e-4
        assert_close(result["codes"][k], ref["latents"][k], REL, max_abs, f"latents step {k}")
        img = nchw(result["images"][k])
        assert_close(img, ref["images"][k], REL, max_abs, f"images step {k}")
    assert_close(nchw(result["avg"]), ref["avg_img"], REL, 2e-5, "average image")


def test_restyle_psp_every_step_matches_the_reference(restyle_psp):
    _check_every_step(restyle_psp)


def test_restyle_e4e_every_step_matches_the_reference(restyle_e4e):
    _check_every_step(restyle_e4e)


@pytest.mark.parametrize("which", ["restyle_psp", "restyle_e4e"])
def test_restyle_config_and_latent_avg_rows(which, request):
    result = request.getfixturevalue(which)
    meta = result["meta"]
    config = meta["networks"]["restyle"]["config"]
    assert meta["family"] == "restyle"
    want = "BackboneEncoder" if which == "restyle_psp" else "ProgressiveBackboneEncoder"
    assert config["encoder_type"] == want
    assert config["input_nc"] == 6 and config["n_iters"] == 5
    assert config["encoder"] == {
        "num_layers": 50,
        "mode": "ir_se",
        "base_width": 16,
        "n_styles": 8,
        "style_dim": 64,
    }
    assert isinstance(result["model"].encoder, restyle.build_encoder(want).__class__)
    summary = load_tool("convert_weights").summarize(result["out"], meta)
    assert f"restyle: {want}" in summary and "32 px decoder" in summary
    # The fixture's latent_avg rows differ on purpose: all of them must survive.
    latent_avg = np.asarray(result["variables"]["buffers"]["latent_avg"])
    np.testing.assert_array_equal(latent_avg, result["ref"]["latent_avg"])
    assert np.abs(latent_avg[1] - latent_avg[0]).max() > 0


def test_restyle_step_feeds_back_an_exact_pixel_copy(restyle_psp):
    """face_pool from 32 px to the 256 px encoder input repeats each pixel 8×8; the
    fixture's enc_in_img records what the official loop fed back."""
    ref = restyle_psp["ref"]
    x = jnp.zeros((2, 256, 256, 3))
    pooled = torch_ops.adaptive_avg_pool2d(ref["images"][1].transpose(0, 2, 3, 1), x.shape[1:3])
    np.testing.assert_array_equal(nchw(pooled), ref["enc_in_img"][2])
    np.testing.assert_array_equal(
        np.repeat(np.repeat(ref["avg_img"], 8, 2), 8, 3)[0], ref["avg_image"]
    )


# --------------------------------------------------------------------------- e4e


@pytest.fixture(scope="module")
def e4e_s32(tmp_path_factory):
    src = fixture_file("e4e_s32.pt")
    ref = dict(np.load(fixture_file("e4e_s32_ref.npz")))
    out = tmp_path_factory.mktemp("e4e") / "converted"
    meta = convert(src, out)
    model, variables = load_pretrained(out)
    # The stage is traced: one compiled program serves the final stage (any stage ≥ 7) and 4.
    run = jax.jit(lambda v, x, stage: model.apply(v, x, stage=stage, return_latents=True))
    x = ref["x"].transpose(0, 2, 3, 1)
    results = {stage: run(variables, x, jnp.int32(stage)) for stage in (7, 4)}
    return {"meta": meta, "model": model, "variables": variables, "ref": ref, "out": results}


@pytest.mark.parametrize("stage, suffix", [(7, ""), (4, "_stage4")])
def test_e4e_matches_the_reference_at_the_final_stage_and_stage_4(e4e_s32, stage, suffix):
    ref = e4e_s32["ref"]
    img, codes = e4e_s32["out"][stage]
    assert_close(codes, ref["codes" + suffix], REL, 2e-5, f"codes at stage {stage}")
    assert_close(nchw(img), ref["img" + suffix], REL, 2e-5, f"images at stage {stage}")


def test_e4e_config(e4e_s32):
    meta = e4e_s32["meta"]
    assert meta["family"] == "e4e"
    config = meta["networks"]["e4e"]["config"]
    assert config["encoder_type"] == "Encoder4Editing" and config["input_nc"] == 3
    assert config["start_from_latent_avg"] is True
    assert config["decoder"]["img_resolution"] == config["opts"]["stylegan_size"] == 32
    assert isinstance(e4e_s32["model"], e4e.E4E)


def test_e4e_stage_4_leaves_rows_5_to_7_at_w0(e4e_s32):
    _, codes = e4e_s32["out"][4]
    base = np.asarray(codes) - e4e_s32["ref"]["latent_avg"]
    np.testing.assert_allclose(
        base[:, 5:], np.broadcast_to(base[:, :1], base[:, 5:].shape), atol=1e-6
    )
    assert np.abs(base[:, 4] - base[:, 0]).max() > 1e-3


# --------------------------------------------------------------------------- progressive rules


def test_progressive_codes_and_delta_norms():
    rng = np.random.default_rng(0)
    styles = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    final = np.asarray(e4e.progressive_codes(styles))
    np.testing.assert_allclose(final[:, 0], styles[:, 0])
    np.testing.assert_allclose(final[:, 1:], styles[:, :1] + styles[:, 1:], rtol=1e-6)
    # Any stage ≥ n − 1 is the final stage; stage 0 trains w0 alone.
    np.testing.assert_array_equal(np.asarray(e4e.progressive_codes(styles, jnp.int32(4))), final)
    w0_only = np.asarray(e4e.progressive_codes(styles, 0))
    np.testing.assert_array_equal(w0_only, np.broadcast_to(styles[:, :1], styles.shape))
    norms = np.asarray(e4e.delta_norms(final, stage=2))
    want = np.linalg.norm(final[:, 1:] - final[:, :1], axis=-1)
    np.testing.assert_allclose(norms[:, :2], want[:, :2], rtol=1e-5)
    np.testing.assert_array_equal(norms[:, 2:], 0)
    l1 = np.asarray(e4e.delta_norms(final, p=1.0))
    np.testing.assert_allclose(l1, np.abs(final[:, 1:] - final[:, :1]).sum(-1), rtol=1e-5)


def test_a_non_progressive_encoder_refuses_a_stage():
    model = restyle.ReStyle(
        restyle.BackboneEncoder(n_styles=6, style_dim=8, base_width=16),
        sg.Generator(z_dim=8, w_dim=8, img_resolution=16, channels=(8, 8, 8)),
    )
    x = jnp.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError, match="BackboneEncoder has no progressive stage"):
        jax.eval_shape(lambda r: model.init(r, x, 1, stage=3), jax.random.PRNGKey(0))


# --------------------------------------------------------------------------- converter


@pytest.fixture(scope="module")
def restyle_checkpoint():
    return load_checkpoint(fixture_file("restyle_psp_s32.pt"))


def _edited(ckpt, **top):
    return {**ckpt, **top}


def test_detect_format_tells_the_families_apart(restyle_checkpoint):
    assert restyle_convert.detect_format(restyle_checkpoint) == "restyle"
    assert restyle_convert.detect_format(load_checkpoint(fixture_file("e4e_s32.pt"))) == "e4e"
    assert restyle_convert.detect_format(load_checkpoint(fixture_file("psp_s32.pt"))) == "unknown"
    assert restyle_convert.detect_format({"g_ema": {}}) == "unknown"


def test_restyle_converter_errors_name_the_problem(restyle_checkpoint):
    ckpt = restyle_checkpoint
    opts = {**ckpt["opts"], "encoder_type": "ResNetBackboneEncoder"}
    with pytest.raises(CheckpointError, match="r.pt: .*ResNet-34 trunks are not supported"):
        restyle_convert.read_restyle("r.pt", _edited(ckpt, opts=opts))
    opts = {**ckpt["opts"], "encoder_type": "GradualStyleEncoder"}
    with pytest.raises(CheckpointError, match="reads feature pyramid.*but the tensors lack one"):
        restyle_convert.read_restyle("r.pt", _edited(ckpt, opts=opts))
    with pytest.raises(CheckpointError, match="always stores 'latent_avg'"):
        restyle_convert.read_restyle("r.pt", _edited(ckpt, latent_avg=None))
    opts = {**ckpt["opts"], "output_size": 64}
    with pytest.raises(CheckpointError, match="output_size=64 but .* 32 px generator"):
        restyle_convert.read_restyle("r.pt", _edited(ckpt, opts=opts))
    state = {k: v for k, v in ckpt["state_dict"].items() if k != "encoder.styles.7.linear.bias"}
    with pytest.raises(CheckpointError, match=r"missing 1 tensors.*styles_7/linear/bias"):
        restyle_convert.read_restyle("r.pt", _edited(ckpt, state_dict=state))
    sd = dict(ckpt["state_dict"])
    sd["encoder.input_layer.0.weight"] = sd["encoder.input_layer.0.weight"][:, :3]
    with pytest.raises(CheckpointError, match="6 channels.*has 3"):
        restyle_convert.read_restyle("r.pt", _edited(ckpt, state_dict=sd))


def test_training_state_in_restyle_e4e_and_e4e_files_is_ignored(restyle_checkpoint):
    extra = {
        "global_step": 10,
        "best_val_loss": 0.5,
        "optimizer": {"state": {}},
        "discriminator_state_dict": {"mlp.0.weight": np.zeros((4, 4), np.float32)},
    }
    config, variables = restyle_convert.read_restyle("r.pt", _edited(restyle_checkpoint, **extra))
    assert config["family"] == "restyle" and "discriminator" not in json.dumps(config)
    assert set(variables) == {"params", "batch_stats", "buffers"}


def test_e4e_converter_errors_name_the_problem():
    ckpt = load_checkpoint(fixture_file("e4e_s32.pt"))
    opts = {**ckpt["opts"], "encoder_type": "SingleStyleCodeEncoder"}
    with pytest.raises(CheckpointError, match="e.pt: .*'SingleStyleCodeEncoder'.*not supported"):
        restyle_convert.read_e4e("e.pt", _edited(ckpt, opts=opts))
    opts = {**ckpt["opts"], "stylegan_size": 1024}
    with pytest.raises(CheckpointError, match="stylegan_size=1024 but .* 32 px generator"):
        restyle_convert.read_e4e("e.pt", _edited(ckpt, opts=opts))
    with pytest.raises(CheckpointError, match="start_from_latent_avg=True but the file has no"):
        restyle_convert.read_e4e("e.pt", _edited(ckpt, latent_avg=None))
