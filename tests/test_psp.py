"""pSp import and models: parity with the psp_s32 fixture, the ArcFace ID network on a
random checkpoint in the official key layout, BatchNorm semantics, converter errors, and
the IntoW / IntoW+ ablations."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, fixture_file, load_tool, nchw
from test_torch_ops import adaptive_avg_pool_ref
from torch_writers import save_torch_legacy, save_torch_zip

from stylejax import model_format
from stylejax.convert import convert
from stylejax.convert import psp as psp_convert
from stylejax.convert.readers import load_checkpoint
from stylejax.model_format import CheckpointError, load_pretrained
from stylejax.models import irse
from stylejax.models import psp as psp_models
from stylejax.models import stylegan2 as sg

# --------------------------------------------------------------------------- fixture parity


@pytest.fixture(scope="module")
def psp_s32(tmp_path_factory):
    src = fixture_file("psp_s32.pt")
    ref = dict(np.load(fixture_file("psp_s32_ref.npz")))
    out = tmp_path_factory.mktemp("psp") / "psp_s32"
    meta = convert(src, out)
    model, variables = load_pretrained(out)
    run = jax.jit(lambda v, x: model.apply(v, x, return_latents=True))
    img, codes = run(variables, ref["x"].transpose(0, 2, 3, 1))
    return {
        "out": out,
        "meta": meta,
        "model": model,
        "variables": variables,
        "run": run,
        "ref": ref,
        "img": np.asarray(img),
        "codes": np.asarray(codes),
    }


def test_psp_codes_and_images_match_the_reference(psp_s32):
    ref = psp_s32["ref"]
    assert_close(psp_s32["codes"], ref["codes"], rel=1e-5, max_abs=1e-3, what="codes")
    assert_close(nchw(psp_s32["img"]), ref["img"], rel=1e-5, max_abs=1e-3, what="images")


def test_psp_config_and_latent_avg(psp_s32):
    meta = json.loads((psp_s32["out"] / "config.json").read_text())
    assert meta["family"] == "psp" and meta == psp_s32["meta"]
    config = meta["networks"]["psp"]["config"]
    assert config["encoder_type"] == "GradualStyleEncoder"
    assert config["encoder"] == {
        "num_layers": 50,
        "mode": "ir_se",
        "base_width": 16,
        "n_styles": 8,
        "style_dim": 64,
    }
    assert config["input_nc"] == 3 and config["start_from_latent_avg"] is True
    assert config["decoder"]["img_resolution"] == 32 and config["decoder"]["w_dim"] == 64
    buffers = psp_s32["variables"]["buffers"]
    np.testing.assert_array_equal(buffers["latent_avg"], psp_s32["ref"]["latent_avg"])
    # The decoder's truncation centre is pSp's latent average.
    np.testing.assert_array_equal(buffers["decoder"]["mapping"]["w_avg"], buffers["latent_avg"][0])
    # The stored noise buffers travelled with the decoder (parity depends on them).
    noise = buffers["decoder"]["synthesis"]["b32"]["conv1"]["noise_const"]
    assert noise.shape == (32, 32) and np.abs(noise).max() > 0


def test_convert_weights_tool_detects_psp_and_checks_parity(tmp_path, capsys):
    tool = load_tool("convert_weights")
    src, ref = fixture_file("psp_s32.pt"), fixture_file("psp_s32_ref.npz")
    tool.main([str(src), str(tmp_path / "o"), "--ref", str(ref)])
    printed = capsys.readouterr().out
    assert "converted psp checkpoint" in printed and "GradualStyleEncoder" in printed
    assert "codes: relative error" in printed and "parity check passed" in printed


def test_encoder_is_in_eval_mode_by_default(psp_s32):
    """Running statistics, not batch statistics: a sample's codes don't depend on the rest of
    the batch, and applying without train=True leaves batch_stats untouched."""
    x = psp_s32["ref"]["x"].transpose(0, 2, 3, 1)
    other = np.flip(x[1:], axis=1)  # same shape, different second sample: no recompilation
    _, codes = psp_s32["run"](psp_s32["variables"], np.concatenate([x[:1], other]))
    np.testing.assert_allclose(np.asarray(codes)[0], psp_s32["codes"][0], rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- BatchNorm


def test_batch_norm_eval_uses_running_stats_and_train_updates_them_like_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(4, 5, 5, 6)).astype(np.float32)
    stats = {"mean": rng.normal(size=6), "var": rng.uniform(0.5, 2.0, size=6)}
    affine = {"scale": rng.normal(size=6), "bias": rng.normal(size=6)}
    variables = jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float32), {"params": affine, "batch_stats": stats}
    )
    eval_out = irse.batch_norm(False, "bn").apply(variables, x)
    want = (x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * affine["scale"] + affine["bias"]
    np.testing.assert_allclose(np.asarray(eval_out), want, rtol=1e-5, atol=1e-5)

    train_out, updated = irse.batch_norm(True, "bn").apply(variables, x, mutable=["batch_stats"])
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    want = (x - mean) / np.sqrt(var + 1e-5) * affine["scale"] + affine["bias"]
    np.testing.assert_allclose(np.asarray(train_out), want, rtol=1e-4, atol=1e-4)
    # PyTorch momentum 0.1: running = 0.9 · running + 0.1 · batch.
    np.testing.assert_allclose(
        updated["batch_stats"]["mean"], 0.9 * stats["mean"] + 0.1 * mean, rtol=1e-5, atol=1e-5
    )


# --------------------------------------------------------------------------- ArcFace


def official_irse_state_dict(rng, width=16, in_nc=3, head="arcface", out_dim=512, n_styles=8):
    """Random tensors under the TreB1eN / pSp key names and PyTorch shapes (FORMATS §3.3,
    §3.4, §5.1), written from the reference's layout rather than from our converter's table.
    head: 'arcface' (output_layer), 'into_w' or 'into_w_plus' (the pSp ablation heads)."""
    sd = {}

    def bn(prefix, c):
        sd[f"{prefix}.weight"] = rng.normal(1.0, 0.1, c)
        sd[f"{prefix}.bias"] = rng.normal(0.0, 0.1, c)
        sd[f"{prefix}.running_mean"] = rng.normal(0.0, 0.1, c)
        sd[f"{prefix}.running_var"] = rng.uniform(0.5, 1.5, c)
        sd[f"{prefix}.num_batches_tracked"] = np.array(7, np.int64)

    def conv(key, out_c, in_c, k):
        sd[key] = rng.normal(0.0, (in_c * k * k) ** -0.5, (out_c, in_c, k, k))

    conv("input_layer.0.weight", width, in_nc, 3)
    bn("input_layer.1", width)
    sd["input_layer.2.weight"] = rng.uniform(0.1, 0.4, width)
    for i, (in_c, depth, _) in enumerate(irse.unit_specs(50, width)):
        unit = f"body.{i}"
        if in_c != depth:
            conv(f"{unit}.shortcut_layer.0.weight", depth, in_c, 1)
            bn(f"{unit}.shortcut_layer.1", depth)
        bn(f"{unit}.res_layer.0", in_c)
        conv(f"{unit}.res_layer.1.weight", depth, in_c, 3)
        sd[f"{unit}.res_layer.2.weight"] = rng.uniform(0.1, 0.4, depth)
        conv(f"{unit}.res_layer.3.weight", depth, depth, 3)
        bn(f"{unit}.res_layer.4", depth)
        conv(f"{unit}.res_layer.5.fc1.weight", depth // 16, depth, 1)
        conv(f"{unit}.res_layer.5.fc2.weight", depth, depth // 16, 1)
    c = width * 8
    if head in ("arcface", "into_w_plus"):
        layer = "output_layer" if head == "arcface" else "output_layer_2"
        bn(f"{layer}.0", c)
        sd[f"{layer}.3.weight"] = rng.normal(0.0, (c * 49) ** -0.5, (out_dim, c * 49))
        sd[f"{layer}.3.bias"] = rng.normal(0.0, 0.1, out_dim)
    if head == "arcface":
        bn("output_layer.4", out_dim)
    elif head == "into_w":  # ROS EqualLinear: raw N(0, 1) weights, scaled at run time
        sd["linear.weight"] = rng.normal(0.0, 1.0, (out_dim, c))
        sd["linear.bias"] = rng.normal(0.0, 0.1, out_dim)
    elif head == "into_w_plus":
        sd["linear.weight"] = rng.normal(0.0, 1.0, (out_dim * n_styles, out_dim))
        sd["linear.bias"] = rng.normal(0.0, 0.1, out_dim * n_styles)
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in sd.items()}


def torch_bn(sd, prefix, x):
    """Eval-mode BatchNorm in float64 on an NCHW map or an [N, C] batch (channels axis 1)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    p = {
        k: sd[f"{prefix}.{k}"].astype(np.float64).reshape(shape)
        for k in ("weight", "bias", "running_mean", "running_var")
    }
    return (x - p["running_mean"]) / np.sqrt(p["running_var"] + 1e-5) * p["weight"] + p["bias"]


@pytest.fixture(scope="module")
def arcface(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("arcface")
    sd = official_irse_state_dict(np.random.default_rng(1))
    src = tmp / "model_ir_se50.pth"
    save_torch_zip(src, sd)
    meta = convert(src, tmp / "converted")
    model, variables = load_pretrained(tmp / "converted")
    faces = np.random.default_rng(2).uniform(-1, 1, (2, 256, 256, 3)).astype(np.float32)

    @jax.jit
    def embed(variables, faces):
        return model.apply(
            variables,
            irse.id_crop_and_pool(faces),
            capture_intermediates=lambda m, _: m.name == "body_23",
            mutable=["intermediates"],
        )

    emb, state = embed(variables, faces)
    body = state["intermediates"]["body_23"]["__call__"][0]
    return sd, meta, model, np.asarray(emb), np.asarray(body)


def test_arcface_config_is_read_from_the_checkpoint(arcface):
    _, meta, model, _, _ = arcface
    assert meta["family"] == "arcface"
    config = meta["networks"]["arcface"]["config"]
    assert config == {
        "num_layers": 50,
        "mode": "ir_se",
        "base_width": 16,
        "input_nc": 3,
        "input_size": 112,
        "embedding_dim": 512,
    }
    assert isinstance(model, irse.Backbone)


def test_arcface_embedding_is_unit_norm_and_matches_torch_output_layer(arcface):
    """The output layer recomputed in numpy in PyTorch's NCHW order with the file's own
    tensors: BN2d → flatten(C, H, W) → Linear → BN1d → divide by the L2 norm."""
    sd, _, _, emb, body = arcface
    assert emb.shape == (2, 512) and body.shape == (2, 7, 7, 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)

    x = torch_bn(sd, "output_layer.0", body.astype(np.float64).transpose(0, 3, 1, 2))
    x = x.reshape(2, -1) @ sd["output_layer.3.weight"].T.astype(np.float64)
    x = torch_bn(sd, "output_layer.4", x + sd["output_layer.3.bias"])
    want = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert_close(emb, want, rel=1e-5, max_abs=1e-5, what="embedding")
    # An NHWC flatten against torch's kernel would give something else entirely.
    wrong = body.reshape(2, -1) @ sd["output_layer.3.weight"].T
    assert np.abs(np.corrcoef(wrong.ravel(), x.ravel())[0, 1]) < 0.5


def test_id_crop_and_pool_crops_rows_35_to_223_and_columns_32_to_220():
    rows, cols = np.meshgrid(np.arange(256.0), np.arange(256.0), indexing="ij")
    faces = np.stack([rows, cols], -1)[None].astype(np.float32)
    pooled = np.asarray(irse.id_crop_and_pool(faces))
    assert pooled.shape == (1, 112, 112, 2)
    np.testing.assert_allclose(pooled[0, 0, 0], [35.5, 32.5])  # window rows 35–36, cols 32–33
    np.testing.assert_allclose(pooled[0, -1, -1], [221.5, 218.5])  # rows 221–222, cols 218–219
    with pytest.raises(ValueError, match="id_crop_and_pool"):
        irse.Backbone(base_width=16).init(jax.random.PRNGKey(0), jnp.zeros((1, 256, 256, 3)))


# --------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def psp_checkpoint():
    return load_checkpoint(fixture_file("psp_s32.pt"))


def _edited(ckpt, drop=(), replace=None, **top):
    state = {k: v for k, v in ckpt["state_dict"].items() if k not in drop}
    state.update(replace or {})
    return {**ckpt, "state_dict": state, **top}


def test_a_stylegan2_file_is_not_a_psp_checkpoint():
    src = fixture_file("rosinality_s32.pt")
    with pytest.raises(CheckpointError) as e:
        psp_convert.read_psp(str(src))
    message = str(e.value)
    assert str(src) in message and "encoder.*" in message and "found a dict with keys" in message
    with pytest.raises(CheckpointError, match="not an IR-SE ArcFace state dict"):
        psp_convert.read_arcface(str(src))


def test_missing_misshaped_and_unexpected_tensors_are_named(psp_checkpoint):
    name = "psp.pt"
    bad = _edited(psp_checkpoint, drop=["encoder.body.5.res_layer.4.running_var"])
    with pytest.raises(CheckpointError, match=r"missing 1 tensors.*body_5/res_layer/bn2/var"):
        psp_convert.read_psp(name, bad)
    bad = _edited(psp_checkpoint, replace={"encoder.latlayer2.weight": np.zeros((128, 16, 1, 1))})
    with pytest.raises(CheckpointError, match=r"latlayer2/kernel: file gives \(1, 1, 16, 128\)"):
        psp_convert.read_psp(name, bad)
    bad = _edited(psp_checkpoint, replace={"encoder.extra.weight": np.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected 1 tensors.*extra"):
        psp_convert.read_psp(name, bad)


def test_arcface_from_a_legacy_torch_stream(tmp_path):
    sd = official_irse_state_dict(np.random.default_rng(4), width=16, out_dim=64)
    save_torch_legacy(tmp_path / "legacy.pth", sd)
    config, variables = psp_convert.read_arcface(str(tmp_path / "legacy.pth"))
    assert config["embedding_dim"] == 64 and config["input_size"] == 112
    assert variables["batch_stats"]["output_layer"]["bn1d"]["var"].shape == (64,)


def test_inconsistent_opts_and_latent_avg_are_refused(psp_checkpoint):
    opts = {**psp_checkpoint["opts"], "encoder_type": "BackboneEncoderUsingLastLayerIntoW"}
    with pytest.raises(CheckpointError, match="opts say encoder_type"):
        psp_convert.read_psp("psp.pt", _edited(psp_checkpoint, opts=opts))
    opts = {**psp_checkpoint["opts"], "encoder_type": "Encoder4Editing"}
    with pytest.raises(CheckpointError, match="e4e files are read by stylejax.convert.restyle"):
        psp_convert.read_psp("psp.pt", _edited(psp_checkpoint, opts=opts))
    with pytest.raises(
        CheckpointError, match=r"latent_avg has shape \(3, 64\); expected \[8, 64\]"
    ):
        psp_convert.read_psp("psp.pt", _edited(psp_checkpoint, latent_avg=np.zeros((3, 64))))
    with pytest.raises(CheckpointError, match="has no 'latent_avg'"):
        psp_convert.read_psp("psp.pt", _edited(psp_checkpoint, latent_avg=None))


# --------------------------------------------------------------------------- ablations


def random_variables(shapes, seed=0):
    """Variables for the shapes of `init`, filled on the host: compiling the init of a
    50-layer trunk takes longer on the CPU than the whole test should."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):
            return np.ones(leaf.shape, np.float32)
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 100
        return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


SMALL_DECODER = {
    "z_dim": 32,
    "w_dim": 32,
    "img_resolution": 16,
    "channels": (32, 32, 32),
    "mapping_layers": 2,
}


@pytest.mark.parametrize(
    "encoder_type, input_nc",
    [
        ("BackboneEncoderUsingLastLayerIntoW", 1),
        ("BackboneEncoderUsingLastLayerIntoWPlus", 19),
        ("GradualStyleEncoder", 3),
    ],
)
def test_encoders_build_and_give_codes_of_the_right_shape(encoder_type, input_nc):
    decoder = sg.Generator(**SMALL_DECODER)
    encoder = psp_models.build_encoder(
        encoder_type, n_styles=decoder.num_ws, style_dim=32, base_width=16
    )
    model = psp_models.PSP(encoder, decoder)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 64, input_nc))
    variables = random_variables(jax.eval_shape(model.init, jax.random.PRNGKey(1), x))
    latent_avg = jax.random.normal(jax.random.PRNGKey(2), (decoder.num_ws, 32))
    variables["buffers"]["latent_avg"] = latent_avg

    @jax.jit
    def run(variables, x):
        raw = encoder.apply(
            {
                "params": variables["params"]["encoder"],
                "batch_stats": variables["batch_stats"]["encoder"],
            },
            x,
        )
        img, codes = model.apply(variables, x, return_latents=True)
        return raw, img, codes

    raw, img, codes = run(variables, x)
    w_only = encoder_type.endswith("IntoW")
    assert codes.shape == ((2, 32) if w_only else (2, decoder.num_ws, 32))
    assert img.shape == (2, 16, 16, 3) and np.isfinite(np.asarray(img)).all()
    np.testing.assert_allclose(
        codes - raw,
        np.broadcast_to(latent_avg[0] if w_only else latent_avg, codes.shape),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "encoder_type, latent_avg_shape",
    [
        ("BackboneEncoderUsingLastLayerIntoW", (1, 64)),
        ("BackboneEncoderUsingLastLayerIntoWPlus", (64,)),
    ],
)
def test_ablation_checkpoints_convert_and_match_a_numpy_head(
    psp_checkpoint, encoder_type, latent_avg_shape
):
    """An IntoW / IntoW+ pSp checkpoint in the official layout (random trunk and head, the
    fixture's decoder): the converted model's codes against the head recomputed in numpy
    from the converted trunk's output, in torch's NCHW order."""
    rng = np.random.default_rng(3)
    into_w = encoder_type.endswith("IntoW")
    enc = official_irse_state_dict(rng, head="into_w" if into_w else "into_w_plus", out_dim=64)
    state = {f"encoder.{k}": v for k, v in enc.items()}
    state.update(
        {k: v for k, v in psp_checkpoint["state_dict"].items() if k.startswith("decoder.")}
    )
    latent_avg = rng.normal(size=latent_avg_shape).astype(np.float32)
    opts = {"encoder_type": encoder_type, "start_from_latent_avg": True, "learn_in_w": into_w}
    obj = {"state_dict": state, "opts": opts, "latent_avg": latent_avg}
    config, variables = psp_convert.read_psp("ablation.pt", obj)
    assert config["encoder_type"] == encoder_type and config["learn_in_w"] is into_w
    model = model_format.build("psp", config)
    x = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)

    @jax.jit
    def run(variables, x):
        return model.apply(
            variables,
            x,
            return_latents=True,
            capture_intermediates=lambda m, _: m.name == "body_23",
            mutable=["intermediates"],
        )

    (img, codes), state = run(variables, x)
    body = np.asarray(state["intermediates"]["encoder"]["body_23"]["__call__"][0], np.float64)
    if into_w:
        head = body.mean(axis=(1, 2)) @ enc["linear.weight"].T / np.sqrt(128)
    else:
        x = torch_bn(enc, "output_layer_2.0", body.transpose(0, 3, 1, 2))
        x = adaptive_avg_pool_ref(x.transpose(0, 2, 3, 1), 7, 7).transpose(0, 3, 1, 2)
        x = x.reshape(2, -1) @ enc["output_layer_2.3.weight"].T + enc["output_layer_2.3.bias"]
        head = (x @ enc["linear.weight"].T / np.sqrt(64)).reshape(2, 8, 64)
        head = head + enc["linear.bias"].reshape(8, 64)
    if into_w:
        head = head + enc["linear.bias"]
    want = head + latent_avg.reshape(-1)  # [1, 64] and [64] both mean "the same w everywhere"
    assert_close(codes, want, rel=1e-5, max_abs=1e-4, what=f"{encoder_type} codes")
    assert img.shape == (2, 32, 32, 3) and np.isfinite(np.asarray(img)).all()


def test_unknown_encoder_type_is_refused():
    with pytest.raises(ValueError, match="encoder_type must be one of"):
        psp_models.build_encoder("ResNetBackboneEncoder")


def test_full_size_models_have_the_official_parameter_counts():
    """Config-f shapes without computing anything: the totals FORMATS.md derives from the
    official layer tables (torch also counts one num_batches_tracked per BatchNorm)."""

    def count(model, x):
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
        params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"]))
        n_bn = len(jax.tree.leaves(shapes["batch_stats"])) // 2
        return params, len(jax.tree.leaves(shapes)) + n_bn

    faces = jnp.zeros((1, 256, 256, 3))
    assert count(psp_models.GradualStyleEncoder(n_styles=18), faces) == (267_136_704, 621)
    assert count(psp_models.GradualStyleEncoder(n_styles=14), faces)[0] == 209_450_688
    assert count(irse.Backbone(), jnp.zeros((1, 112, 112, 3))) == (43_797_696, 397)
