"""Export to PyTorch: a stylejax StyleGAN2 model folder → a rosinality `.pt` written without
torch. Official file → stylejax → exported file gives back every tensor bit for bit, and a
generator made here comes back through our own converter unchanged."""

import functools
import struct
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch_writers
from conftest import fixture_file, load_tool
from test_psp import official_irse_state_dict

import stylejax
from stylejax.convert import convert, convert_stylegan2, export, readers
from stylejax.convert.export import rosinality_generator, save_torch_zip, to_psp, to_rosinality
from stylejax.model_format import load_pretrained, read_config, save_model
from stylejax.models import stylegan2 as sg

SHIPPED = Path(stylejax.__file__).parent / "pretrained" / "synthetic64"
SHIPPED_GAN = SHIPPED.parent / "synthetic64_gan"


def assert_same_tensors(got: dict, want: dict, what: str):
    """Names (in order), shapes, dtypes and bits."""
    assert list(got) == list(want), what
    for name, a in want.items():
        b = got[name]
        assert (b.shape, b.dtype) == (a.shape, a.dtype), f"{what} {name}"
        assert b.tobytes() == a.tobytes(), f"{what} {name}: values differ"


def assert_same_variables(got, want):
    got, want = (
        dict(jax.tree_util.tree_leaves_with_path(got)),
        jax.tree_util.tree_leaves_with_path(want),
    )
    assert len(got) == len(want)
    for path, leaf in want:
        np.testing.assert_array_equal(got[path], leaf, err_msg=jax.tree_util.keystr(path))


def test_rosinality_fixture_round_trip_is_bit_exact(tmp_path):
    src = fixture_file("rosinality_s32.pt")
    convert_stylegan2(src, tmp_path / "model", which="all")
    info = to_rosinality(tmp_path / "model", tmp_path / "back.pt")
    assert info["networks"] == ["g_ema", "latent_avg", "g", "d"]
    assert (info["size"], info["style_dim"], info["n_mlp"]) == (32, 64, 8)
    assert info["channels"] == [64, 64, 48, 32] and info["channel_multiplier"] is None
    original, back = readers.load_checkpoint(src), readers.load_checkpoint(tmp_path / "back.pt")
    assert list(back) == info["networks"]
    for name in ("g_ema", "g", "d"):
        assert_same_tensors(back[name], original[name], name)
    assert_same_tensors(
        {"latent_avg": back["latent_avg"]}, {"latent_avg": original["latent_avg"]}, ""
    )


@pytest.mark.parametrize("name", ["psp_s32", "e4e_s32", "restyle_psp_s32", "restyle_e4e_s32"])
def test_psp_family_decoders_round_trip_bit_exact(tmp_path, name):
    """The pSp / e4e / ReStyle decoders are rosinality generators, kernels and noises too."""
    src = fixture_file(f"{name}.pt")
    convert(src, tmp_path / "model")
    model, v = load_pretrained(tmp_path / "model")
    decoder = {"params": v["params"]["decoder"], "buffers": v["buffers"]["decoder"]}
    got, _ = rosinality_generator(model.decoder, jax.tree_util.tree_map(np.asarray, decoder), name)
    state = readers.load_checkpoint(src)["state_dict"]
    want = {k.removeprefix("decoder."): x for k, x in state.items() if k.startswith("decoder.")}
    assert_same_tensors(got, want, name)


@pytest.mark.parametrize("name", ["psp_s32", "e4e_s32", "restyle_psp_s32", "restyle_e4e_s32"])
def test_psp_family_round_trip_is_bit_exact(tmp_path, name):
    """Official file → stylejax → official layout: every tensor back bit for bit, and the
    exported file converts again to the same model."""
    src = fixture_file(f"{name}.pt")
    convert(src, tmp_path / "model")
    info = to_psp(tmp_path / "model", tmp_path / "back.pt")
    original, back = readers.load_checkpoint(src), readers.load_checkpoint(tmp_path / "back.pt")
    assert list(back) == info["keys"] == ["state_dict", "opts", "latent_avg"]
    # In torch's registration order, as the official file lists them.
    assert_same_tensors(back["state_dict"], original["state_dict"], name)
    counters = [k for k in back["state_dict"] if k.endswith(".num_batches_tracked")]
    assert len(counters) == sum(k.endswith(".running_var") for k in back["state_dict"]) > 0
    assert_same_tensors({"la": back["latent_avg"]}, {"la": original["latent_avg"]}, name)
    # Every option comes back, lists too (e4e's progressive_steps).
    assert back["opts"] == info["opts"] == original["opts"]
    if "e4e" in name:
        assert back["opts"]["progressive_steps"] == [
            0,
            20000,
            22000,
            24000,
            26000,
            28000,
            30000,
            32000,
        ]
    convert(tmp_path / "back.pt", tmp_path / "again")
    assert (
        read_config(tmp_path / "again")["networks"] == read_config(tmp_path / "model")["networks"]
    )
    _, want = load_pretrained(tmp_path / "model")
    _, got = load_pretrained(tmp_path / "again")
    assert_same_variables(got, want)


@pytest.mark.parametrize("shape", [(64,), (1, 64)])
def test_psp_latent_avg_comes_back_in_its_stored_shape(tmp_path, shape):
    """A file whose latent_avg is one w ([w] or [1, w]) is broadcast on import and written
    back in its own shape, bit for bit."""
    ckpt = readers.load_checkpoint(fixture_file("psp_s32.pt"))
    ckpt["latent_avg"] = ckpt["latent_avg"][3].reshape(shape)
    torch_writers.save_torch_zip(tmp_path / "one_w.pt", ckpt)
    convert(tmp_path / "one_w.pt", tmp_path / "model")
    config = read_config(tmp_path / "model")["networks"]["psp"]["config"]
    assert config["latent_avg_shape"] == list(shape)
    to_psp(tmp_path / "model", tmp_path / "back.pt")
    back = readers.load_checkpoint(tmp_path / "back.pt")
    assert_same_tensors({"la": back["latent_avg"]}, {"la": ckpt["latent_avg"]}, str(shape))
    assert_same_tensors(back["state_dict"], ckpt["state_dict"], str(shape))


def test_psp_export_follows_the_official_registration_order(tmp_path):
    """BackboneEncoderUsingLastLayerIntoWPlus registers input_layer, output_layer_2, linear,
    then body (pSp's psp_encoders.py); each IR-SE unit its shortcut before its res_layer."""
    enc = official_irse_state_dict(np.random.default_rng(5), head="into_w_plus", out_dim=64)
    ckpt = readers.load_checkpoint(fixture_file("psp_s32.pt"))
    decoder = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("decoder.")}
    state = {f"encoder.{k}": v for k, v in enc.items()} | decoder
    opts = {"encoder_type": "BackboneEncoderUsingLastLayerIntoWPlus", "output_size": 32}
    obj = {"state_dict": state, "opts": opts, "latent_avg": ckpt["latent_avg"][0]}
    torch_writers.save_torch_zip(tmp_path / "wplus.pt", obj)
    convert(tmp_path / "wplus.pt", tmp_path / "model")
    to_psp(tmp_path / "model", tmp_path / "back.pt")
    back = readers.load_checkpoint(tmp_path / "back.pt")
    heads = ("input_layer.", "output_layer_2.", "linear.", "body.")
    order = [f"encoder.{k}" for head in heads for k in enc if k.startswith(head)]
    want = {k: state[k] for k in order} | decoder
    for k in want:
        if k.endswith("num_batches_tracked"):  # the import drops BatchNorm's counter
            want[k] = np.zeros((), np.int64)
    assert_same_tensors(back["state_dict"], want, "IntoWPlus")
    assert back["opts"] == opts
    assert_same_tensors({"la": back["latent_avg"]}, {"la": obj["latent_avg"]}, "IntoWPlus")


def test_invert_is_exact_past_float32_integers():
    """Element places are sent as base-`limit` digits: with limit 3 every tensor here is
    past float32's exact integers as far as the probes are concerned."""
    layout = {"a": (5, 7), "b": (40,), "unread": (2, 2), "c": ()}

    def forward(sd):
        return {"x": sd["a"].T, "y": {"z": sd["b"][::-1].reshape(4, 10), "s": sd["c"]}}

    rng = np.random.default_rng(0)
    want = {n: rng.normal(size=s).astype(np.float32) for n, s in layout.items()}
    variables = forward(want)
    for limit in (2, 3, 2**24):
        got = export._invert(layout, forward, variables, "test", limit=limit)
        assert_same_tensors(got, {n: want[n] for n in ("a", "b", "c")}, f"limit {limit}")


def test_psp_export_with_small_probe_digits_is_bit_exact(tmp_path, monkeypatch):
    """The whole pSp export with probes in base 16, as a full-size encoder's 2**24-plus
    element tensors go in base 2**24."""
    monkeypatch.setattr(export, "_invert", functools.partial(export._invert, limit=16))
    src = fixture_file("e4e_s32.pt")
    convert(src, tmp_path / "model")
    to_psp(tmp_path / "model", tmp_path / "back.pt")
    original, back = readers.load_checkpoint(src), readers.load_checkpoint(tmp_path / "back.pt")
    assert_same_tensors(back["state_dict"], original["state_dict"], "e4e, base 16")


def test_psp_export_refuses_what_has_no_official_layout(tmp_path):
    trained = Path(__file__).parent / "data" / "restyle_synthetic64"  # 64 px encoder blocks
    with pytest.raises(ValueError, match=r"no official restyle equivalent.*block_spatial=4"):
        to_psp(trained, tmp_path / "r.pt")
    tiny_model(tmp_path / "gan")
    with pytest.raises(ValueError, match="expected a pSp, e4e or ReStyle model folder"):
        to_psp(tmp_path / "gan", tmp_path / "g.pt")
    assert list(tmp_path.glob("*.pt")) == []


def test_rosinality_train_checkpoint_round_trip(tmp_path):
    """A train.py file (no latent_avg) comes back with its networks bit for bit and the
    estimated w_avg as latent_avg."""
    ckpt = readers.load_checkpoint(fixture_file("rosinality_s32.pt"))
    train = {name: ckpt[name] for name in ("g", "d", "g_ema")} | {"ada_aug_p": 0.0}
    torch_writers.save_torch_zip(tmp_path / "550000.pt", train)
    convert_stylegan2(tmp_path / "550000.pt", tmp_path / "model", which="all")
    to_rosinality(tmp_path / "model", tmp_path / "back.pt")
    back = readers.load_checkpoint(tmp_path / "back.pt")
    for name in ("g_ema", "g", "d"):
        assert_same_tensors(back[name], ckpt[name], name)
    _, v = load_pretrained(tmp_path / "model")
    np.testing.assert_array_equal(back["latent_avg"], v["buffers"]["mapping"]["w_avg"])


def test_file_is_a_torch_zip_archive(tmp_path):
    save_torch_zip({"a": np.arange(6, dtype=np.float32).reshape(2, 3).T, "n": 3}, tmp_path / "x.pt")
    with zipfile.ZipFile(tmp_path / "x.pt") as zf:
        names = zf.namelist()
        assert names == ["x/data.pkl", "x/byteorder", "x/data/0", "x/version"]
        assert zf.read("x/byteorder") == b"little" and zf.read("x/version") == b"3\n"
        assert zf.read("x/data/0") == np.float32([0, 3, 1, 4, 2, 5]).tobytes()
        raw = (tmp_path / "x.pt").read_bytes()
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 :][:4])
            start = info.header_offset + 30 + name_len + extra_len
            assert start % 64 == 0, f"{info.filename} starts at {start}"  # torch's alignment
    back = readers.load_checkpoint(tmp_path / "x.pt")
    assert back["n"] == 3
    np.testing.assert_array_equal(back["a"], np.arange(6, dtype=np.float32).reshape(2, 3).T)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError, match="complex64"):
        save_torch_zip({"x": np.zeros(2, np.complex64)}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def tiny_model(out_dir, g_over=None, d_over=None):
    """A random generator + discriminator folder with blur taps [1, 2, 1]."""
    g_cfg = dict(z_dim=16, w_dim=16, img_resolution=8, channels=[16, 8], mapping_layers=2)
    g_cfg |= {"resample_taps": [1, 2, 1]} | (g_over or {})
    d_cfg = dict(img_resolution=8, channels=[16, 8], resample_taps=[1, 2, 1]) | (d_over or {})
    G = sg.Generator(**{**g_cfg, "channels": tuple(g_cfg["channels"])})
    D = sg.Discriminator(**{**d_cfg, "channels": tuple(d_cfg["channels"])})
    c = jnp.zeros((1, G.c_dim)) if G.c_dim else None
    g_vars = sg.init_variables(G, jax.random.PRNGKey(1), jnp.zeros((1, 16)), c)
    # Non-trivial buffers, so a mix-up of w_avg or the noises shows.
    g_vars = jax.tree_util.tree_map(
        lambda x: x + jax.random.normal(jax.random.PRNGKey(2), x.shape), g_vars
    )
    d_vars = D.init(jax.random.PRNGKey(3), jnp.zeros((1, 8, 8, 3)))
    networks = {
        "g_ema": {"kind": "generator", "config": g_cfg},
        "d": {"kind": "discriminator", "config": d_cfg},
    }
    meta = {
        "family": "stylegan2",
        "format": "stylejax-train",
        "source": "test",
        "networks": networks,
    }
    save_model(out_dir, {"g_ema": g_vars, "d": d_vars}, meta)


def test_generator_made_here_comes_back_with_equal_outputs(tmp_path):
    tiny_model(tmp_path / "model")
    to_rosinality(tmp_path / "model", tmp_path / "tiny.pt")
    back = readers.load_checkpoint(tmp_path / "tiny.pt")
    # rosinality's Blur/Upsample kernels: outer([1, 2, 1]) / 16, x4 in the generator.
    kernel = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16
    np.testing.assert_array_equal(back["g_ema"]["convs.0.conv.blur.kernel"], kernel * 4)
    np.testing.assert_array_equal(back["d"]["convs.1.skip.0.kernel"], kernel)
    meta = convert_stylegan2(tmp_path / "tiny.pt", tmp_path / "again", which="all")
    assert meta["networks"]["g_ema"]["config"]["resample_taps"] == [1, 2, 1]
    for name in ("g_ema", "d"):
        _, want = load_pretrained(tmp_path / "model", name)
        _, got = load_pretrained(tmp_path / "again", name)
        assert_same_variables(got, want)
    G, v = load_pretrained(tmp_path / "model")
    G2, v2 = load_pretrained(tmp_path / "again")
    z = jax.random.normal(jax.random.PRNGKey(4), (2, 16))
    img = G.apply(v, z, truncation_psi=0.7, noise_mode="const")
    np.testing.assert_array_equal(G2.apply(v2, z, truncation_psi=0.7, noise_mode="const"), img)


def test_shipped_trained_generator_round_trips(tmp_path):
    # The adversarial one: rosinality's files have one style_dim for z and w, and the
    # renderer-taught synthetic64 has z 64, w 128, which is refused with that reason.
    with pytest.raises(ValueError, match=r"z_dim=64 \(rosinality has one style_dim"):
        to_rosinality(SHIPPED, tmp_path / "renderer.pt")
    assert not (tmp_path / "renderer.pt").exists()
    info = to_rosinality(SHIPPED_GAN, tmp_path / "s64.pt")
    assert info["networks"] == ["g_ema", "latent_avg"]
    convert_stylegan2(tmp_path / "s64.pt", tmp_path / "again")
    G, v = load_pretrained(SHIPPED_GAN)
    G2, v2 = load_pretrained(tmp_path / "again")
    assert_same_variables(v2, v)
    z = jax.random.normal(jax.random.PRNGKey(0), (2, G.z_dim))
    np.testing.assert_array_equal(
        G2.apply(v2, z, noise_mode="const"), G.apply(v, z, noise_mode="const")
    )


@pytest.mark.parametrize(
    "g_over, d_over, message",
    [
        ({"c_dim": 3}, None, r"'g_ema'.*c_dim=3 \(rosinality's Generator takes no labels\)"),
        (
            {"architecture": "resnet"},
            None,
            r"architecture='resnet' \(rosinality's Generator is skip",
        ),
        ({"conv_clamp": 256.0}, None, r"conv_clamp=256.0 \(rosinality has no activation clamp"),
        (
            None,
            {"mbstd_group_size": 8},
            r"'d'.*mbstd_group_size=8 \(rosinality's stddev_group is 4",
        ),
    ],
)
def test_architectures_rosinality_lacks_are_refused(tmp_path, g_over, d_over, message):
    tiny_model(tmp_path / "model", g_over, d_over)
    with pytest.raises(ValueError, match=message):
        to_rosinality(tmp_path / "model", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_cli_to_rosinality(tmp_path, capsys):
    tool = load_tool("convert_weights")
    tiny_model(tmp_path / "model")
    tool.main([str(tmp_path / "model"), str(tmp_path / "o.pt"), "--to", "rosinality"])
    out = capsys.readouterr().out
    assert "(rosinality layout): g_ema, latent_avg, d" in out
    assert (
        "Generator(size=8, style_dim=16, n_mlp=2, channel_multiplier=?, blur_kernel=[1, 2, 1])"
        in out
    )
    with pytest.raises(SystemExit, match="o.pt already exists; pass --overwrite"):
        tool.main([str(tmp_path / "model"), str(tmp_path / "o.pt"), "--to", "rosinality"])
    tool.main(
        [str(tmp_path / "model"), str(tmp_path / "o.pt"), "--to", "rosinality", "--overwrite"]
    )
    with pytest.raises(SystemExit, match="not a converted stylejax checkpoint"):
        tool.main([str(tmp_path), str(tmp_path / "p.pt"), "--to", "rosinality"])


def test_cli_to_psp(tmp_path, capsys):
    tool = load_tool("convert_weights")
    convert(fixture_file("e4e_s32.pt"), tmp_path / "model")
    tool.main([str(tmp_path / "model"), str(tmp_path / "e4e.pt"), "--to", "psp"])
    out = capsys.readouterr().out
    assert (
        "(official e4e layout): state_dict, opts, latent_avg; encoder_type=Encoder4Editing" in out
    )
    assert readers.load_checkpoint(tmp_path / "e4e.pt")["opts"]["stylegan_size"] == 32
    with pytest.raises(SystemExit, match="e4e.pt already exists; pass --overwrite"):
        tool.main([str(tmp_path / "model"), str(tmp_path / "e4e.pt"), "--to", "psp"])
