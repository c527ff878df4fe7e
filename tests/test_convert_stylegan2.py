"""StyleGAN2 weight import: parity with the reference implementations' outputs.

rosinality: the fixture .pt is converted as is. stylegan2-ada-pytorch: the fixture state
dicts are wrapped into real-layout .pkl files (persistent-module pickles). TF: the same
weights are re-laid-out by the published TF → PyTorch rules, run backwards, into a
dnnlib Network pickle, which must convert to exactly the ada path's parameters.
"""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import torch_writers
from conftest import assert_close, fixture_file, nchw

from stylejax.convert import convert_stylegan2, readers
from stylejax.model_format import CheckpointError, load_pretrained

# --------------------------------------------------------------------------- rosinality


@pytest.fixture(scope="module")
def rosinality(tmp_path_factory):
    src = fixture_file("rosinality_s32.pt")
    ref = dict(np.load(fixture_file("rosinality_s32_ref.npz")))
    out = tmp_path_factory.mktemp("ros") / "converted"
    meta = convert_stylegan2(src, out, which="all")
    return out, meta, ref


def test_rosinality_config_detected(rosinality):
    out, meta, _ = rosinality
    g = meta["networks"]["g_ema"]["config"]
    assert meta["format"] == "rosinality"
    assert (g["img_resolution"], g["z_dim"], g["w_dim"], g["mapping_layers"]) == (32, 64, 64, 8)
    assert g["channels"] == [64, 64, 48, 32] and g["architecture"] == "skip"
    assert meta["networks"]["d"]["config"]["channels"] == [64, 64, 48, 32]
    assert json.loads((out / "config.json").read_text()) == meta


def test_rosinality_generator_parity(rosinality):
    out, _, ref = rosinality
    G, v = load_pretrained(out, "g_ema")
    assert_close(v["buffers"]["mapping"]["w_avg"], ref["latent_avg"], what="latent_avg")
    assert_close(
        v["buffers"]["synthesis"]["b16"]["conv0"]["noise_const"],
        ref["noise_3"][0, 0],
        rel=0,
        max_abs=0,
        what="noise_3",
    )
    w = G.apply(v, ref["z"], method=G.map)
    assert_close(w[:, 0], ref["w"], what="w")
    img, latents = G.apply(v, ref["z"], noise_mode="const", return_latents=True)
    assert_close(latents, ref["latents_z"], what="latents_z")
    assert_close(nchw(img), ref["img_z"], what="img_z")
    img = G.apply(v, ref["z"], noise_mode="const", truncation_psi=0.5)
    assert_close(nchw(img), ref["img_trunc"], what="img_trunc")
    img = G.apply(v, ref["wplus_in"], input_space="w+", noise_mode="const")
    assert_close(nchw(img), ref["img_wplus"], what="img_wplus")
    img = G.apply(v, ref["z"], mix_latents=ref["z2"], inject_index=3, noise_mode="const")
    assert_close(nchw(img), ref["img_mix"], what="img_mix")
    per_sample = G.apply(
        v, ref["z"], mix_latents=ref["z2"], inject_index=np.full(4, 3), noise_mode="const"
    )
    assert_close(per_sample, img, rel=0, max_abs=0, what="per-sample inject_index")


def test_rosinality_g_and_d_parity(rosinality):
    out, _, ref = rosinality
    G, v = load_pretrained(out, "g")
    assert_close(nchw(G.apply(v, ref["z"], noise_mode="const")), ref["img_g"], what="img_g")
    D, dv = load_pretrained(out, "d")
    assert_close(D.apply(dv, ref["d_in"].transpose(0, 2, 3, 1)), ref["d_out"], what="d_out")


# --------------------------------------------------------------------------- stylegan2-ada


def ada_pickle(tmp_path, name):
    state = readers.load_checkpoint(fixture_file(f"{name}_state.pt"))
    path = tmp_path / f"{name}.pkl"
    torch_writers.save_ada_pickle(
        path, state["G_ema"], state["D"], state["G_init_kwargs"], state["D_init_kwargs"]
    )
    return path, state


@pytest.fixture(scope="module", params=["ada_s32", "ada_s32c"])
def ada(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    path, state = ada_pickle(tmp, request.param)
    meta = convert_stylegan2(path, tmp / "converted", which="all")
    ref = dict(np.load(fixture_file(f"{request.param}_ref.npz")))
    return tmp / "converted", meta, ref, state


def test_ada_parity(ada):
    out, meta, ref, _ = ada
    assert meta["format"] == "ada"
    assert meta["networks"]["g_ema"]["config"]["conv_clamp"] == 256
    G, v = load_pretrained(out)
    c = ref.get("c")
    assert_close(v["buffers"]["mapping"]["w_avg"], ref["w_avg"], what="w_avg")
    assert_close(G.apply(v, ref["z"], c, method=G.map), ref["ws"], what="ws")
    ws_trunc = G.apply(v, ref["z"], c, truncation_psi=0.5, truncation_cutoff=4, method=G.map)
    assert_close(ws_trunc, ref["ws_trunc"], what="ws_trunc")
    for key, mode in (("img_const", "const"), ("img_nonoise", "none")):
        img = G.apply(v, ref["ws"], input_space="w+", noise_mode=mode)
        assert_close(nchw(img), ref[key], what=key)
    img = G.apply(v, ref["ws_trunc"], input_space="w+", noise_mode="const")
    assert_close(nchw(img), ref["img_trunc"], what="img_trunc")
    unfused = G.clone(fused_modconv=False)
    img = unfused.apply(v, ref["ws"], input_space="w+", noise_mode="const")
    assert_close(nchw(img), ref["img_unfused"], what="img_unfused")
    D, dv = load_pretrained(out, "d")
    assert_close(D.apply(dv, ref["d_in"].transpose(0, 2, 3, 1), c), ref["d_out"], what="d_out")


# --------------------------------------------------------------------------- TF pickles


def _tf_conv(w_oihw, flip=False):
    w = np.asarray(w_oihw).transpose(2, 3, 1, 0)  # OIHW -> HWIO
    return np.ascontiguousarray(w[::-1, ::-1] if flip else w)


def ada_to_tf_generator(sd):
    """Inverse of stylegan2-ada legacy.py's TF → PyTorch generator rules."""
    tf = {"dlatent_avg": sd["mapping.w_avg"], "lod": np.float32(0)}
    for key, v in sd.items():
        parts = key.split(".")
        if parts[0] == "mapping" and parts[1] != "w_avg":
            name = "LabelEmbed" if parts[1] == "embed" else f"Dense{parts[1][2:]}"
            tf[f"mapping/{name}/{parts[2]}"] = v.T if parts[2] == "weight" else v
        elif parts[0] == "synthesis" and parts[-1] != "resample_filter":
            r = int(parts[1][1:])
            if parts[2] == "const":
                tf["synthesis/4x4/Const/const"] = v[None]
                continue
            layer = {"conv0": "Conv0_up", "conv1": "Conv" if r == 4 else "Conv1", "torgb": "ToRGB"}[
                parts[2]
            ]
            prefix = f"synthesis/{r}x{r}/{layer}"
            leaf = ".".join(parts[3:])
            if leaf == "weight":
                tf[f"{prefix}/weight"] = _tf_conv(v, flip=layer == "Conv0_up")
            elif leaf == "affine.weight":
                tf[f"{prefix}/mod_weight"] = v.T
            elif leaf == "affine.bias":
                tf[f"{prefix}/mod_bias"] = v - 1
            elif leaf == "noise_const":
                log2 = int(np.log2(r))
                j = 0 if r == 4 else 2 * log2 - (5 if parts[2] == "conv0" else 4)
                tf[f"synthesis/noise{j}"] = v[None, None]
            else:
                tf[f"{prefix}/{leaf}"] = v
    return tf


def ada_to_tf_discriminator(sd):
    tf = {}
    for key, v in sd.items():
        parts = key.split(".")
        if parts[-1] == "resample_filter":
            continue
        if parts[0] == "mapping":
            name = "LabelEmbed" if parts[1] == "embed" else f"Mapping{parts[1][2:]}"
            tf[f"{name}/{parts[2]}"] = v.T if parts[2] == "weight" else v
        elif parts[0] == "b4":
            name = {"conv": "4x4/Conv", "fc": "4x4/Dense0", "out": "Output"}[parts[1]]
            tf[f"{name}/{parts[2]}"] = (
                (_tf_conv(v) if v.ndim == 4 else v.T) if parts[2] == "weight" else v
            )
        else:
            r = parts[0][1:]
            name = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "skip": "Skip"}[
                parts[1]
            ]
            tf[f"{r}x{r}/{name}/{parts[2]}"] = _tf_conv(v) if parts[2] == "weight" else v
    return tf


def test_tf_pickle_converts_to_the_ada_parameters(tmp_path, ada):
    ada_out, _, ref, state = ada
    g_tf = ada_to_tf_generator(state["G_ema"])
    d_tf = ada_to_tf_discriminator(state["D"])
    # The kwargs a TF network of the ada file's settings stores (TF's D default lrmul is 0.1).
    g_kw = {"latent_size": 64, "dlatent_size": 64, "conv_clamp": 256}
    d_kw = {"mapping_lrmul": 0.01, "conv_clamp": 256}
    torch_writers.save_tf_pickle(tmp_path / "tf.pkl", g_tf, d_tf, g_tf, g_kw, d_kw)
    meta = convert_stylegan2(tmp_path / "tf.pkl", tmp_path / "converted", which="all")
    assert meta["format"] == "tf"
    for which in ("g_ema", "g", "d"):
        _, tf_vars = load_pretrained(tmp_path / "converted", which)
        _, ada_vars = load_pretrained(ada_out, which)
        tf_leaves = jax.tree_util.tree_leaves_with_path(tf_vars)
        ada_leaves = dict(jax.tree_util.tree_leaves_with_path(ada_vars))
        assert len(tf_leaves) == len(ada_leaves)
        for path, leaf in tf_leaves:
            np.testing.assert_allclose(
                leaf,
                ada_leaves[path],
                rtol=0,
                atol=1e-6,
                err_msg=f"{which} {jax.tree_util.keystr(path)}",
            )
    G, v = load_pretrained(tmp_path / "converted")
    img = G.apply(v, ref["ws"], input_space="w+", noise_mode="const")
    assert_close(nchw(img), ref["img_const"], what="TF path img_const")
    D, dv = load_pretrained(tmp_path / "converted", "d")
    assert_close(
        D.apply(dv, ref["d_in"].transpose(0, 2, 3, 1), ref.get("c")),
        ref["d_out"],
        what="TF path d_out",
    )


# --------------------------------------------------------------------------- bad input


def test_unknown_checkpoint_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "model.pt"
    torch_writers.save_torch_zip(path, {"state": {"w": np.zeros(3, np.float32)}})
    with pytest.raises(CheckpointError, match=r"model\.pt: not a StyleGAN2 checkpoint: expected"):
        convert_stylegan2(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_and_misshaped_tensors_are_named(tmp_path):
    ckpt = readers.load_checkpoint(fixture_file("rosinality_s32.pt"))
    broken = dict(ckpt, d={k: v for k, v in ckpt["d"].items() if k != "final_conv.0.weight"})
    torch_writers.save_torch_zip(tmp_path / "missing.pt", broken)
    with pytest.raises(CheckpointError, match="missing.pt.*final_conv.0.weight"):
        convert_stylegan2(tmp_path / "missing.pt", tmp_path / "out", which="all")
    g = dict(ckpt["g_ema"])
    g["convs.1.conv.modulation.weight"] = np.zeros((5, 64), np.float32)
    torch_writers.save_torch_zip(tmp_path / "shape.pt", dict(ckpt, g_ema=g))
    with pytest.raises(
        CheckpointError,
        match=r"shape\.pt.*shape mismatch for "
        r"params/synthesis/b8/conv1/affine/weight: file gives \(64, 5\)",
    ):
        convert_stylegan2(tmp_path / "shape.pt", tmp_path / "out")
    # A failed conversion leaves neither the output nor a temp directory behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["missing.pt", "shape.pt"]


def test_existing_output_needs_overwrite(rosinality, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_stylegan2(fixture_file("rosinality_s32.pt"), tmp_path / "out")
    convert_stylegan2(fixture_file("rosinality_s32.pt"), tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "config.json").is_file()
    with pytest.raises(CheckpointError, match="has no 'd' network"):
        load_pretrained(tmp_path / "out", "d")
    with pytest.raises(CheckpointError, match="not a converted stylejax checkpoint"):
        load_pretrained(tmp_path)


def test_convert_weights_cli(tmp_path):
    tool = Path(__file__).parents[1] / "tools" / "convert_weights.py"
    src, ref = fixture_file("rosinality_s32.pt"), fixture_file("rosinality_s32_ref.npz")
    run = subprocess.run(
        [sys.executable, str(tool), str(src), str(tmp_path / "o"), "--ref", str(ref)],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = run.stdout
    assert "g_ema  generator     32 px" in printed and "parity check passed" in printed
