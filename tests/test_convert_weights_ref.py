"""tools/convert_weights.py --ref checks every converted network against the reference file's
outputs (G_ema, G and the D logits), one line per output, and fails naming a wrong one."""

import numpy as np
import pytest
import torch_writers
from conftest import fixture_file, load_tool

from stylejax.convert import readers


@pytest.fixture(scope="module")
def tool():
    return load_tool("convert_weights")


def rosinality_file(path, d_scale=1.0):
    """The rosinality fixture re-saved, its D's last layer scaled by `d_scale`."""
    ckpt = readers.load_checkpoint(fixture_file("rosinality_s32.pt"))
    d = dict(ckpt["d"])
    d["final_linear.1.weight"] = d["final_linear.1.weight"] * np.float32(d_scale)
    torch_writers.save_torch_zip(
        path, {"g": ckpt["g"], "d": d, "g_ema": ckpt["g_ema"], "latent_avg": ckpt["latent_avg"]}
    )
    return path


def test_every_network_is_checked_one_line_per_output(tool, tmp_path, capsys):
    src, ref = rosinality_file(tmp_path / "ok.pt"), fixture_file("rosinality_s32_ref.npz")
    tool.main([str(src), str(tmp_path / "o"), "--which", "all", "--ref", str(ref)])
    printed = capsys.readouterr().out
    for net, key in [("g_ema", "w"), ("g_ema", "img_z"), ("g", "img_g"), ("d", "d_out")]:
        assert f"  {net:6s} {key}: relative error" in printed, (key, printed)
    assert "parity check passed for d, g, g_ema" in printed


def test_a_wrong_discriminator_fails_naming_it(tool, tmp_path, capsys):
    src = rosinality_file(tmp_path / "bad_d.pt", d_scale=1.5)
    ref = fixture_file("rosinality_s32_ref.npz")
    with pytest.raises(SystemExit) as e:
        tool.main([str(src), str(tmp_path / "o"), "--which", "all", "--ref", str(ref)])
    message = str(e.value.code)
    assert message.startswith("parity check failed") and "d_out of d" in message, message
    assert "g_ema" not in message and "img_g" not in message  # the generators are right
    printed = capsys.readouterr().out
    assert "  g_ema  img_z: relative error" in printed and "parity check passed" not in printed


def test_networks_left_unconverted_are_reported_not_passed_silently(tool, tmp_path, capsys):
    src, ref = fixture_file("rosinality_s32.pt"), fixture_file("rosinality_s32_ref.npz")
    tool.main([str(src), str(tmp_path / "o"), "--ref", str(ref)])  # --which g_ema
    printed = capsys.readouterr().out
    assert "  g      img_g: not checked (g not converted; see --which)" in printed
    assert "  d      d_out: not checked (d not converted; see --which)" in printed
    assert "parity check passed for g_ema " in printed


def test_conditional_ada_discriminator_is_checked_with_labels(tool, tmp_path, capsys):
    state = readers.load_checkpoint(fixture_file("ada_s32c_state.pt"))
    src = tmp_path / "ada_s32c.pkl"
    torch_writers.save_ada_pickle(
        src, state["G_ema"], state["D"], state["G_init_kwargs"], state["D_init_kwargs"]
    )
    ref = fixture_file("ada_s32c_ref.npz")
    tool.main([str(src), str(tmp_path / "o"), "--which", "all", "--ref", str(ref)])
    printed = capsys.readouterr().out
    for net, key in [("g_ema", "ws"), ("g_ema", "img_const"), ("d", "d_out")]:
        assert f"  {net:6s} {key}: relative error" in printed, (key, printed)
    assert "parity check passed for d, g_ema" in printed
