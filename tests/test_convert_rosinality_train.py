"""rosinality train.py checkpoints (g, d, g_ema, g_optim, d_optim, args, ada_aug_p and no
latent_avg) convert, with w_avg estimated the way rosinality's mean_latent(4096) does it."""

import argparse

import jax
import numpy as np
import pytest
import torch_writers
from conftest import assert_close, fixture_file, load_tool, nchw

from stylejax.convert import convert_stylegan2, readers
from stylejax.model_format import load_pretrained


def adam_state(sd):
    """torch.optim.Adam.state_dict() over the state dict's parameters (not its buffers)."""
    params = [v for k, v in sd.items() if not k.endswith(".kernel") and "noise_" not in k]
    state = {
        i: {
            "step": np.array(1000.0, np.float32),
            "exp_avg": np.full_like(p, 0.1),
            "exp_avg_sq": np.full_like(p, 0.01),
        }
        for i, p in enumerate(params)
    }
    group = {"lr": 0.002, "betas": (0.0, 0.99), "eps": 1e-8, "weight_decay": 0}
    return {"state": state, "param_groups": [dict(group, params=list(state))]}


def write_train_checkpoint(path):
    """What rosinality's train.py saves every 10,000 iterations (here from the fixture)."""
    ckpt = readers.load_checkpoint(fixture_file("rosinality_s32.pt"))
    args = argparse.Namespace(size=32, latent=64, n_mlp=8, channel_multiplier=2, batch=4, r1=10.0)
    train = {
        "g": ckpt["g"],
        "d": ckpt["d"],
        "g_ema": ckpt["g_ema"],
        "g_optim": adam_state(ckpt["g"]),
        "d_optim": adam_state(ckpt["d"]),
        "args": args,
        "ada_aug_p": 0.0,
    }
    torch_writers.save_torch_zip(path, train)
    return ckpt


def mean_latent(sd, n=4096):
    """Independent numpy mapping (PixelNorm, EqualLinear lr_mul 0.01, fused lrelu) averaged
    over the converter's seeded z."""
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (n, 64)), np.float64)
    x = x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        w, b = np.float64(sd[f"style.{i}.weight"]), np.float64(sd[f"style.{i}.bias"])
        x = x @ (w * 0.01 / np.sqrt(w.shape[1])).T + b * 0.01
        x = np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)
        i += 1
    return x.mean(axis=0)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ros_train")
    ckpt = write_train_checkpoint(tmp / "550000.pt")
    meta = convert_stylegan2(tmp / "550000.pt", tmp / "out", which="all")
    return tmp / "out", meta, ckpt


def test_train_checkpoint_converts_with_estimated_w_avg(converted):
    out, meta, ckpt = converted
    assert meta["format"] == "rosinality"
    assert sorted(meta["networks"]) == ["d", "g", "g_ema"]
    assert meta["notes"] == [
        "no latent_avg in the file: w_avg estimated as the mean of the mapping over 4096 "
        "seeded z (rosinality's mean_latent(4096))"
    ]
    for name in ("g_ema", "g"):
        _, v = load_pretrained(out, name)
        w_avg = v["buffers"]["mapping"]["w_avg"]
        assert_close(w_avg, mean_latent(ckpt[name]), rel=1e-5, max_abs=1e-5, what=name)


def test_train_checkpoint_networks_match_the_reference(converted):
    out, _, _ = converted
    ref = dict(np.load(fixture_file("rosinality_s32_ref.npz")))
    G, v = load_pretrained(out, "g_ema")
    assert_close(nchw(G.apply(v, ref["z"], noise_mode="const")), ref["img_z"], what="img_z")
    G, v = load_pretrained(out, "g")
    assert_close(nchw(G.apply(v, ref["z"], noise_mode="const")), ref["img_g"], what="img_g")
    D, dv = load_pretrained(out, "d")
    assert_close(D.apply(dv, ref["d_in"].transpose(0, 2, 3, 1)), ref["d_out"], what="d_out")


def test_cli_says_w_avg_was_estimated_in_one_line(tmp_path, capsys):
    write_train_checkpoint(tmp_path / "550000.pt")
    load_tool("convert_weights").main([str(tmp_path / "550000.pt"), str(tmp_path / "out")])
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if "latent_avg" in line] == [
        "  note: no latent_avg in the file: w_avg estimated as the mean of the mapping over "
        "4096 seeded z (rosinality's mean_latent(4096))"
    ]
    # A converted file that has latent_avg says nothing of the kind.
    load_tool("convert_weights").main([str(fixture_file("rosinality_s32.pt")), str(tmp_path / "p")])
    assert "note:" not in capsys.readouterr().out
