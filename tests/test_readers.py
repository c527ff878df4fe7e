"""Tests for the torch-free checkpoint readers (stylejax/convert/readers.py)."""

import argparse
import collections
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch_writers as tw

from stylejax.convert.readers import (
    PersistentModule,
    TFNetwork,
    load_checkpoint,
    module_init_kwargs,
    module_state_dict,
    tf_static_kwargs,
    tf_variables,
)
from stylejax.model_format import CheckpointError

FIXTURES = Path(__file__).parents[2] / "shared" / "fixtures"
SAVERS = {"zip": tw.save_torch_zip, "legacy": tw.save_torch_legacy}


def _fixture(name):
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"parity fixture {path} not found (the shared fixtures folder is absent here)")
    return path


def _assert_same_arrays(got, want):
    assert list(got) == list(want)
    for key, value in want.items():
        assert isinstance(got[key], np.ndarray), key
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def _mixed_dtypes():
    rng = np.random.default_rng(0)
    return collections.OrderedDict(
        f32=rng.standard_normal((2, 3, 4)).astype(np.float32),
        f64=rng.standard_normal(5),
        f16=rng.standard_normal((3,)).astype(np.float16),
        i64=np.arange(-3, 4, dtype=np.int64),
        i8=np.array([-128, 0, 127], np.int8),
        u8=np.array([0, 255], np.uint8),
        flags=np.array([True, False, True]),
        scalar=np.array(0.25, np.float32),  # 0-d, like ADA's noise_strength
        empty=np.zeros((0, 4), np.float32),
    )


# ---------------------------------------------------------------------------------------
# torch zip archives and legacy streams


@pytest.mark.parametrize("kind", SAVERS)
def test_round_trip_of_several_dtypes(tmp_path, kind):
    want = _mixed_dtypes()
    path = tmp_path / "ckpt.pt"
    SAVERS[kind](path, want)
    got = load_checkpoint(path)
    assert type(got) is collections.OrderedDict
    _assert_same_arrays(got, want)
    assert all(v.flags.writeable and v.flags.c_contiguous for v in got.values())


@pytest.mark.parametrize("kind", SAVERS)
def test_views_sharing_one_storage(tmp_path, kind):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    want = {"base": base, "strided": base[1:, ::2], "transposed": base.T, "row": base[2]}
    path = tmp_path / "views.pt"
    SAVERS[kind](path, want)
    got = load_checkpoint(path)
    _assert_same_arrays(got, want)
    assert got["transposed"].flags.c_contiguous and got["strided"].flags.c_contiguous
    got["base"][0, 0] = 100  # copies, not views of one buffer
    assert got["transposed"][0, 0] == 0
    if kind == "zip":  # the four tensors really share one storage record
        names = zipfile.ZipFile(path).namelist()
        assert [n for n in names if "/data/" in n] == ["views/data/0"]


@pytest.mark.parametrize("kind", SAVERS)
def test_bfloat16_widened_to_float32(tmp_path, kind):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([1.5, -2.0, 0.15625, 3.0e38, 0.0], np.float32)  # exact in bfloat16
    path = tmp_path / "bf16.pt"
    SAVERS[kind](path, {"w": values.astype(ml_dtypes.bfloat16)[::2]})
    got = load_checkpoint(path)["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values[::2])


def test_big_endian_archive_is_byteswapped(tmp_path):
    want = {
        "f32": np.linspace(-1, 1, 7, dtype=np.float32),
        "i64": np.arange(5),
        "flags": np.array([True, False]),
    }
    path = tmp_path / "be.pt"
    tw.save_torch_zip(path, want, byteorder="big")
    _assert_same_arrays(load_checkpoint(path), want)


@pytest.mark.parametrize("kind", SAVERS)
def test_device_location_is_ignored(tmp_path, kind):
    path = tmp_path / "gpu.pt"
    SAVERS[kind](path, {"w": np.arange(3.0)}, location="cuda:0")
    assert b"cuda:0" in path.read_bytes()
    np.testing.assert_array_equal(load_checkpoint(path)["w"], np.arange(3.0))


def test_zip_folder_prefix_is_read_from_the_archive(tmp_path):
    path = tmp_path / "renamed_weights.pt"
    tw.save_torch_zip(path, {"w": np.ones(3, np.float32)}, folder="latest_net_G")
    assert zipfile.ZipFile(path).namelist()[0] == "latest_net_G/data.pkl"
    np.testing.assert_array_equal(load_checkpoint(path)["w"], np.ones(3, np.float32))


def test_legacy_stream_layout_and_stdlib_objects(tmp_path):
    path = tmp_path / "old.pth"
    args = argparse.Namespace(size=32, latent=64)
    tw.save_torch_legacy(path, {"args": args, "w": np.ones(2, np.float32), "n": 3, "s": "x"})
    assert path.read_bytes()[:14] == b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
    got = load_checkpoint(path)
    assert got["args"] == args and got["n"] == 3 and got["s"] == "x"


# ---------------------------------------------------------------------------------------
# stylegan2-ada-pytorch network pickles


def _ada_weights():
    rng = np.random.default_rng(1)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    G = {
        "synthesis.b4.const": f(8, 4, 4),
        "synthesis.b4.resample_filter": f(4, 4),
        "synthesis.b4.conv1.weight": f(8, 8, 3, 3),
        "synthesis.b4.conv1.noise_strength": f(),
        "synthesis.b4.conv1.bias": f(8),
        "synthesis.b4.conv1.resample_filter": f(4, 4),
        "synthesis.b4.conv1.noise_const": f(4, 4),
        "synthesis.b4.conv1.affine.weight": f(8, 8),
        "synthesis.b4.conv1.affine.bias": f(8),
        "mapping.w_avg": f(8),  # torch order: own parameters, own buffers, then children
        "mapping.fc0.weight": f(8, 8),
        "mapping.fc0.bias": f(8),
    }
    D = {
        "b4.conv.weight": f(8, 9, 3, 3),
        "b4.conv.bias": f(8),
        "b4.out.weight": f(1, 8),
        "b4.out.bias": f(1),
    }
    G_kwargs = {
        "z_dim": 8,
        "w_dim": 8,
        "mapping_kwargs": {"num_layers": 1},
        "synthesis_kwargs": {"channel_base": 32},
    }
    D_kwargs = {"c_dim": 0, "epilogue_kwargs": {"mbstd_group_size": 4}}
    return G, D, G_kwargs, D_kwargs


def test_ada_pickle_round_trip(tmp_path):
    G, D, G_kwargs, D_kwargs = _ada_weights()
    path = tmp_path / "network-snapshot-000000.pkl"
    tw.save_ada_pickle(path, G, D, G_kwargs, D_kwargs)
    raw = path.read_bytes()
    assert b"_reconstruct_persistent_obj" in raw and b"_load_from_bytes" in raw

    snap = load_checkpoint(path)
    assert set(snap) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert snap["augment_pipe"] is None and snap["training_set_kwargs"] is None
    G_ema = snap["G_ema"]
    assert isinstance(G_ema, PersistentModule) and G_ema.class_name == "Generator"
    assert G_ema.state["_modules"]["synthesis"].class_name == "SynthesisNetwork"
    assert (
        G_ema.state["_modules"]["mapping"].state["_modules"]["fc0"].class_name
        == "FullyConnectedLayer"
    )
    block = G_ema.state["_modules"]["synthesis"].state["_modules"]["b4"]
    assert list(block.state["_buffers"]) == ["resample_filter"] and list(
        block.state["_parameters"]
    ) == ["const"]

    _assert_same_arrays(module_state_dict(G_ema), G)
    _assert_same_arrays(module_state_dict(snap["G"]), G)
    _assert_same_arrays(module_state_dict(snap["D"]), D)
    kwargs = module_init_kwargs(G_ema)
    assert kwargs == G_kwargs
    assert type(kwargs) is dict and type(kwargs["mapping_kwargs"]) is dict
    assert type(G_ema.state["_init_kwargs"]).__name__ == "EasyDict"  # as pickled
    assert module_init_kwargs(snap["D"]) == D_kwargs


def test_module_state_dict_skips_none_entries(tmp_path):
    G, D, G_kwargs, D_kwargs = _ada_weights()
    path = tmp_path / "net.pkl"
    tw.save_ada_pickle(path, G, {**D, "b4.conv.resample_filter": None}, G_kwargs, D_kwargs)
    _assert_same_arrays(module_state_dict(load_checkpoint(path)["D"]), D)


def test_ada_pickle_from_fixture_state(tmp_path):
    state = load_checkpoint(_fixture("ada_s32_state.pt"))
    path = tmp_path / "ada_s32.pkl"
    tw.save_ada_pickle(
        path, state["G_ema"], state["D"], state["G_init_kwargs"], state["D_init_kwargs"]
    )
    snap = load_checkpoint(path)
    _assert_same_arrays(module_state_dict(snap["G_ema"]), state["G_ema"])
    _assert_same_arrays(module_state_dict(snap["D"]), state["D"])
    assert module_init_kwargs(snap["G_ema"]) == state["G_init_kwargs"]


# ---------------------------------------------------------------------------------------
# TensorFlow StyleGAN2 pickles


def _tf_weights():
    rng = np.random.default_rng(2)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    G = {
        "dlatent_avg": f(8),
        "lod": np.zeros((), np.float32),
        "mapping/Dense0/weight": f(8, 8),
        "mapping/Dense0/bias": f(8),
        "synthesis/4x4/Const/const": f(1, 8, 4, 4),
        "synthesis/noise0": f(1, 1, 4, 4),
        "synthesis/4x4/Conv/mod_weight": f(8, 8),
    }
    D = {"4x4/Conv/weight": f(3, 3, 9, 8), "Output/weight": f(8, 1), "Output/bias": f(1)}
    return G, D


def test_tf_pickle_round_trip(tmp_path):
    G, D = _tf_weights()
    Gs = {k: v + 1 for k, v in G.items()}
    path = tmp_path / "stylegan2-tiny-config-f.pkl"
    tw.save_tf_pickle(path, G, D, Gs, {"resolution": 4, "fmap_base": 64}, {"resolution": 4})
    G_net, D_net, Gs_net = load_checkpoint(path)
    assert all(isinstance(n, TFNetwork) for n in (G_net, D_net, Gs_net))
    assert (G_net.name, D_net.name, Gs_net.name) == ("G", "D", "Gs")
    assert Gs_net.state["components"]["synthesis"].name == "G_synthesis"
    _assert_same_arrays(tf_variables(G_net), G)
    _assert_same_arrays(tf_variables(Gs_net), Gs)
    _assert_same_arrays(tf_variables(D_net), D)
    assert [name for name, _ in Gs_net.state["variables"]] == [
        "dlatent_avg",
        "lod",
    ]  # own variables only
    assert tf_static_kwargs(Gs_net) == {"resolution": 4, "fmap_base": 64}
    assert tf_static_kwargs(D_net) == {"resolution": 4}


def test_tf_pickle_before_version_4_is_refused(tmp_path):
    G, D = _tf_weights()
    path = tmp_path / "old-tf.pkl"
    tw.save_tf_pickle(path, G, D, G, {}, {}, version=3)
    with pytest.raises(CheckpointError, match="version") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_numpy_arrays_pickled_by_numpy_1_and_2(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    # numpy 1 names its helpers numpy.core.*; official TF pickles use those names.
    old = pickle.dumps({"a": arr}, protocol=2).replace(b"numpy._core", b"numpy.core")
    assert b"numpy.core.multiarray" in old
    (tmp_path / "np1.pkl").write_bytes(old)
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "np1.pkl")["a"], arr)
    (tmp_path / "np2.pkl").write_bytes(pickle.dumps({"a": arr, "x": np.float64(0.5)}, protocol=5))
    got = load_checkpoint(tmp_path / "np2.pkl")
    np.testing.assert_array_equal(got["a"], arr)
    assert got["x"] == 0.5


# ---------------------------------------------------------------------------------------
# Refusals


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    tw.write_malicious_pickle(path, marker)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "'posix.system'" in message and "refusing" in message
    assert not marker.exists()


def test_build_on_an_allowed_class_is_refused(tmp_path):
    # GLOBAL argparse.Namespace; BUILD (None, {'injected': 1}) would setattr on the class itself.
    path = tmp_path / "mutate.pkl"
    path.write_bytes(b"\x80\x02cargparse\nNamespace\nN}X\x08\x00\x00\x00injectedK\x01s\x86b.")
    with pytest.raises(CheckpointError, match="BUILD"):
        load_checkpoint(path)
    assert not hasattr(argparse.Namespace, "injected")


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n" + bytes(32), b"just some text\n", b""])
def test_non_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / "image.png"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a torch/pickle checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="cannot open checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("kind", SAVERS)
def test_truncated_file_is_refused(tmp_path, kind):
    path = tmp_path / "cut.pt"
    SAVERS[kind](path, _mixed_dtypes())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated|truncated file") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_storage_record_too_short_is_refused(tmp_path):
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    tw.save_torch_zip(good, {"w": np.ones(16, np.float32)})
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:8] if name.endswith("/data/0") else data)
    with pytest.raises(CheckpointError, match="storage holds 8 bytes") as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)


def test_reader_needs_neither_torch_nor_tensorflow(tmp_path):
    path = tmp_path / "w.pt"
    tw.save_torch_zip(path, {"w": np.ones(2, np.float32)})
    # Load the module by file, so the check covers readers.py and not the package's imports.
    module_file = Path(__file__).parents[1] / "stylejax" / "convert" / "readers.py"
    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('readers', {str(module_file)!r}); "
        "readers = importlib.util.module_from_spec(spec); spec.loader.exec_module(readers); "
        f"readers.load_checkpoint({str(path)!r}); "
        "assert not {'torch', 'tensorflow'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------
# Shared parity fixtures (written by real torch 2.x)


def test_rosinality_fixture():
    ckpt = load_checkpoint(_fixture("rosinality_s32.pt"))
    assert list(ckpt) == ["g", "g_ema", "d", "latent_avg", "args"]
    assert ckpt["latent_avg"].shape == (64,) and ckpt["latent_avg"].dtype == np.float32
    assert isinstance(ckpt["args"], argparse.Namespace) and ckpt["args"].size == 32
    assert isinstance(ckpt["g_ema"], collections.OrderedDict)
    assert ckpt["g_ema"]["style.1.weight"].shape == (64, 64)


def test_ada_state_fixture():
    state = load_checkpoint(_fixture("ada_s32_state.pt"))
    assert set(state) == {"G_ema", "D", "G_init_kwargs", "D_init_kwargs"}
    assert state["G_ema"]["mapping.w_avg"].shape == (64,)
    assert state["G_ema"]["synthesis.b8.conv0.noise_strength"].shape == ()
    assert state["G_init_kwargs"]["z_dim"] == 64 and state["G_init_kwargs"]["img_resolution"] == 32
    assert "b32.fromrgb.weight" in state["D"]


def test_sean_fixture_with_foreign_folder_prefix():
    path = _fixture("sean_s64_G.pth")
    assert zipfile.ZipFile(path).namelist()[0].startswith("latest_net_G/")
    state = load_checkpoint(path)
    assert isinstance(state, collections.OrderedDict) and len(state) > 100
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert any(k.endswith("weight_orig") for k in state)
