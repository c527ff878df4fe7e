"""stylejax.evaluate: metric names, the messages when the frozen networks are missing, and a
whole evaluation (FID, KID, precision/recall, PPL) of a tiny generator on an image folder,
data-parallel over the 8 fake CPU devices, with its JSON, TensorBoard scalars, sample grid
and cached real-image statistics. A small convolutional stand-in replaces the Inception here
(tests/test_metrics_fid.py covers the Inception itself)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, set_fields
from PIL import Image

from stylejax import evaluate, images, metrics
from stylejax.models import lpips
from stylejax.models import stylegan2 as sg

ROOT = Path(__file__).resolve().parents[1]


def test_parse_metrics():
    got = evaluate.parse_metrics("fid50k, kid1k,pr50k3,pr24,fid256,ppl_wend,ppl_zfull2k")
    assert [(m.kind, m.num) for m in got] == [
        ("fid", 50_000),
        ("kid", 1000),
        ("pr", 50_000),
        ("pr", 24),
        ("fid", 256),
        ("ppl", 50_000),
        ("ppl", 2000),
    ]
    assert (got[5].space, got[5].sampling, got[6].space, got[6].sampling) == (
        "w",
        "end",
        "z",
        "full",
    )
    for bad in ("fid", "fid50k3", "is50k", "ppl_wmid", ""):
        with pytest.raises(ValueError, match="expected fid<N>|no metrics"):
            evaluate.parse_metrics(bad)


def test_missing_frozen_networks_name_the_file_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pt_inception-2015-12-05-6726825d.pth from http"):
        evaluate.load_inception(None)
    with pytest.raises(FileNotFoundError, match=r"no converted checkpoint there.*convert_weights"):
        evaluate.load_inception(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"vgg16-397923af.pth.*--lpips-backbone"):
        evaluate.load_lpips_vgg(None)
    # The command line says the same, without a traceback.
    env = {k: v for k, v in os.environ.items() if k != evaluate.INCEPTION_ENV}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "stylejax.evaluate", f"--workdir={tmp_path}", "--metrics=fid50k"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "tools/convert_weights.py pt_inception-2015-12-05-6726825d.pth" in proc.stderr


def test_load_generator_sources():
    G, variables, source, step = evaluate.load_generator(
        ROOT / "stylejax" / "pretrained" / "synthetic64", None, "unused"
    )
    assert isinstance(G, sg.Generator) and G.img_resolution == 64 and step == 0
    assert source.endswith("synthetic64") and "mapping" in variables["params"]
    with pytest.raises(ValueError, match="give --generator=CONVERTED_DIR, or --config"):
        evaluate.load_generator(None, None, "runs/x")
    with pytest.raises(ValueError, match="config.method='psp': needs stylegan2"):
        evaluate.load_generator(None, {"method": "psp"}, "runs/x")


def test_load_generator_from_a_training_checkpoint(tmp_path):
    """--workdir: the run's latest checkpoint gives its EMA generator directly, as float32
    numpy, with the module the export would describe."""
    from configs import stylegan2 as stylegan2_configs
    from stylejax import model_format
    from stylejax.train import loop
    from stylejax.train import stylegan2 as trainer

    config = set_fields(
        stylegan2_configs.get_config(),
        **{"model.resolution": 16, "model.z_dim": 16, "model.w_dim": 16},
        **{"model.mapping_layers": 1, "model.channel_base": 128, "model.channel_max": 16},
    )
    state = jax.jit(trainer.make_task(config).init_state)(jax.random.PRNGKey(0))
    checkpointer = loop.Checkpointer(tmp_path, every_steps=1, keep=None, async_save=False)
    checkpointer.save(3, state, None)
    checkpointer.close()
    G, variables, source, step = evaluate.load_generator(None, config, tmp_path)
    assert step == 3 and source.startswith(f"{tmp_path} step 3 (default variant")
    assert G == model_format.build("generator", trainer.generator_kwargs(config))
    want = jax.tree_util.tree_leaves_with_path(jax.device_get(state["g_ema"]))
    got = jax.tree_util.tree_leaves(variables)
    for (path, a), b in zip(want, got, strict=True):
        assert isinstance(b, np.ndarray) and b.dtype == np.float32
        np.testing.assert_array_equal(b, a, err_msg=jax.tree_util.keystr(path))


class _StandIn(nn.Module):
    """A small feature network in the Inception's place: NHWC in [-1, 1] → [N, 16]."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3), strides=2)(x))
        return jnp.mean(nn.Conv(16, (3, 3))(x), axis=(1, 2))


def _real_images(n=24, res=32):
    """n noisy single-colour images, NHWC in [-1, 1]."""
    rng = np.random.default_rng(0)
    colours = rng.uniform(-1, 1, (n, 1, 1, 3))
    return np.clip(colours + rng.normal(0, 0.2, (n, res, res, 3)), -1, 1).astype(np.float32)


def _random_variables(init, *args):
    """Seeded normal values in the variables' shapes, scaled by 1/√fan-in for kernels, with
    non-negative LPIPS heads (so distances are ≥ 0, as with trained heads). Drawing them
    with numpy after jax.eval_shape skips compiling the networks' initialisers."""
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        x = rng.standard_normal(leaf.shape).astype(np.float32)
        if leaf.ndim == 4:
            x = x / np.sqrt(np.prod(leaf.shape[:3]))
        if "mapping" in name and "weight" in name:
            x = x * 100  # stored as N(0, 1/lr_mul²) with lr_mul 0.01, like StyleGAN2's init
        return np.abs(x) if "lin" in name else x

    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(init, *args))


@pytest.fixture(scope="module")
def tiny():
    G = sg.Generator(
        z_dim=16, w_dim=16, img_resolution=32, channels=(16, 16, 16, 16), mapping_layers=1
    )
    keys = {"params": jax.random.key(0), "noise": jax.random.key(1)}
    g_vars = _random_variables(G.init, keys, jnp.zeros((1, 16)))
    feat = _StandIn()
    feat_vars = _random_variables(feat.init, jax.random.key(2), jnp.zeros((1, 32, 32, 3)))
    lp = lpips.LPIPS("vgg")
    crops = jnp.zeros((1, 16, 16, 3))
    lp_vars = _random_variables(lp.init, jax.random.key(3), crops, crops)
    return G, g_vars, (feat, feat_vars), (lp, lp_vars)


def test_evaluate_writes_json_tensorboard_grid_and_reuses_statistics(tmp_path, tiny, monkeypatch):
    G, g_vars, features, lp = tiny
    reals = _real_images()
    read = []

    def real_batches(data, split, batch_size, resolution, data_dir=None):
        # evaluate's reader minus TFDS (tests/test_data_*.py cover the data sets).
        assert (data, split, batch_size, resolution) == ("faces", "train", 8, 32)
        read.append(data)
        yield from (reals[i : i + batch_size] for i in range(0, len(reals), batch_size))

    monkeypatch.setattr(evaluate, "real_batches", real_batches)
    workdir = tmp_path / "run"
    wanted = evaluate.parse_metrics("fid24,kid24,pr24,ppl_wend16")
    kwargs = {"data": "faces", "inception": features, "lpips": lp}
    report = evaluate.evaluate(G, g_vars, wanted, workdir, batch_size=8, step=7, **kwargs)

    got = report["metrics"]
    assert set(got) == {"fid24", "kid24", "pr24_precision", "pr24_recall", "ppl_wend16"}
    assert got["fid24"] > 0 and np.isfinite(got["kid24"]) and got["ppl_wend16"] > 0
    assert 0 <= got["pr24_precision"] <= 1 and 0 <= got["pr24_recall"] <= 1
    assert report["counts"] == {"real_images": 24, "generated_images": 24, "ppl_wend16_samples": 16}
    assert report["devices"] == 8
    written = json.loads((workdir / "metrics" / "metrics-0000007.json").read_text())
    assert written["metrics"] == pytest.approx(got)
    grid = images.make_grid(np.zeros((16, 32, 32, 3)), pad=1)  # the first 16 images
    assert Image.open(workdir / "metrics" / "samples-0000007.png").size == grid.shape[1::-1]
    assert list(workdir.glob("events.out.tfevents.*"))
    cached = list((workdir / "fid_stats").glob("faces-train-32px-24-*.npz"))
    assert len(cached) == 1
    want = np.asarray(features[0].apply(features[1], reals))
    np.testing.assert_allclose(np.load(cached[0])["features"], want, rtol=1e-5, atol=1e-6)

    # A second run reads the cached statistics (not the data set) and, with the same seed,
    # gives the same numbers.
    again = evaluate.evaluate(G, g_vars, wanted[:3], workdir, batch_size=8, **kwargs)
    assert read == ["faces"]
    for name in ("fid24", "kid24", "pr24_precision", "pr24_recall"):
        assert again["metrics"][name] == pytest.approx(got[name], rel=1e-6)


def test_generation_and_path_lengths_on_8_devices_match_1(tiny):
    G, g_vars, features, lp = tiny
    one = metrics.data_mesh(jax.devices()[:1])
    f8, img8 = evaluate.fake_features(G, g_vars, features, 12, batch_size=8, seed=3)
    f1, img1 = evaluate.fake_features(G, g_vars, features, 12, batch_size=8, seed=3, mesh=one)
    assert f8.shape == (12, 16) and img8.shape == (12, 32, 32, 3)
    assert_close(img8, img1, rel=1e-6, max_abs=1e-5, what="images (same z and noise)")
    assert_close(f8, f1, rel=1e-5, max_abs=1e-5, what="features")

    metric = evaluate.parse_metrics("ppl_wend8")[0]
    d8 = evaluate.path_lengths(G, g_vars, lp, metric, batch_size=8, seed=3)
    d1 = evaluate.path_lengths(G, g_vars, lp, metric, batch_size=8, seed=3, mesh=one)
    assert d8.shape == (8,) and np.all(d8 > 0)
    # A finite difference at ε = 1e-4 in float32 keeps ~3 digits whatever the device count
    # (the programs round differently); unshared noise would change it by orders of magnitude.
    np.testing.assert_allclose(d8, d1, rtol=1e-2)


def test_ppl_outlier_filter_and_face_crop():
    # 0…99 and one outlier: the 1st percentile ('lower') is 1, the 99th ('higher') 99.
    samples = np.concatenate([np.arange(100.0), [1e6]])
    assert metrics.perceptual_path_length(samples) == pytest.approx(50.0)
    rows = np.broadcast_to(np.arange(64.0)[None, :, None, None], (1, 64, 64, 1))
    crop = metrics.ppl_crop(rows)  # rows 24:56, columns 16:48 (c = 8)
    assert crop.shape == (1, 32, 32, 1) and crop[0, 0, 0, 0] == 24 and crop[0, -1, 0, 0] == 55
    big = metrics.ppl_crop(np.ones((1, 1024, 1024, 3), np.float32))  # 512 crop → 256
    assert big.shape == (1, 256, 256, 3)
    assert metrics.ppl_crop(rows, crop=False).shape == (1, 64, 64, 1)
