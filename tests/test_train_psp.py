"""pSp training: losses, Ranger, every task variant, sharding, the report, export and inference.

Everything runs at 16 px: a tiny synthetic-faces build, a tiny random generator saved as a
converted checkpoint, and an IR-SE-18 encoder of width 16.
"""

import json
import logging
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import build_synthetic_faces, set_fields
from tracing import counting_traces

from configs import psp as psp_configs
from stylejax import main as entry
from stylejax import psp_inference
from stylejax.data.synthetic_faces import SyntheticFacesConfig
from stylejax.model_format import save_model
from stylejax.models import irse, lpips
from stylejax.models import stylegan2 as sg
from stylejax.train import loop
from stylejax.train import psp as trainer
from stylejax.train import psp_family as family

ROOT = Path(__file__).resolve().parents[1]
RES = 16
DATA = SyntheticFacesConfig(name="psp16", resolution=RES, num_train=32, num_test=16)
G_CONFIG = dict(z_dim=16, w_dim=16, img_resolution=RES, channels=[16, 16, 16], mapping_layers=1)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny data set, a tiny generator checkpoint and random LPIPS / ArcFace checkpoints."""
    root = tmp_path_factory.mktemp("psp")
    build_synthetic_faces(DATA, root / "data")
    G = sg.Generator(**G_CONFIG)
    g_vars = sg.init_variables(G, jax.random.PRNGKey(1), jnp.zeros((1, 16)))
    meta = {"family": "stylegan2", "format": "test", "source": "random", "networks": {}}
    meta["networks"]["g_ema"] = {"kind": "generator", "config": G_CONFIG}
    save_model(root / "g", {"g_ema": g_vars}, meta)
    arc_config = dict(input_size=112, num_layers=18, mode="ir_se", base_width=16, embedding_dim=32)
    arc = irse.Backbone(**arc_config)
    arc_vars = arc.init(jax.random.PRNGKey(2), jnp.zeros((1, 112, 112, 3)))
    save_model(
        root / "arcface",
        {"arcface": arc_vars},
        {"family": "arcface", "networks": {"arcface": {"kind": "arcface", "config": arc_config}}},
    )
    lp = lpips.LPIPS("vgg")
    lp_vars = lp.init(jax.random.PRNGKey(3), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32, 3)))
    lp_vars = jax.tree_util.tree_map(jnp.abs, lp_vars)  # heads are non-negative, as trained
    save_model(
        root / "lpips",
        {"lpips": lp_vars},
        {"family": "lpips", "networks": {"lpips": {"kind": "lpips", "config": {"net": "vgg"}}}},
    )
    return root


def tiny_config(assets, variant="", **overrides):
    c = psp_configs.get_config(variant)
    c.data.name = f"synthetic_faces/{DATA.name}"
    c.data.directory = str(assets / "data")
    c.data.shuffle_buffer = 32
    c.model.generator = str(assets / "g")
    c.model.num_layers = 18
    c.model.base_width = 16
    c.batch_size = 8
    c.num_steps = 4
    c.log_every = 2
    c.checkpoint_every = 2
    c.eval_every = 4
    c.eval.num_examples = 16
    c.eval.batch_size = 8
    c.eval.grid_examples = 4
    return set_fields(c, **overrides)


def one_batch(config, n=8):
    data, _ = trainer.make_data(config)
    return next(data), family.input_shape(config)


# ----------------------------------------------------------------------------- losses


def test_face_crop_is_psp_rows_35_223_cols_32_220_at_256():
    x = jnp.arange(256 * 256, dtype=jnp.float32).reshape(1, 256, 256, 1)
    crop = family.face_crop(x)
    assert crop.shape == (1, 188, 188, 1)
    assert crop[0, 0, 0, 0] == 35 * 256 + 32 and crop[0, -1, -1, 0] == 222 * 256 + 219
    assert family.face_crop(jnp.zeros((1, 64, 64, 3))).shape == (1, 47, 47, 3)  # 9:56, 8:55


def test_l2_and_w_norm_match_their_definitions():
    rng = np.random.default_rng(0)
    y_hat, y = rng.normal(size=(2, 2, 8, 8, 3)).astype(np.float32)
    codes = rng.normal(size=(2, 4, 5)).astype(np.float32)
    avg = rng.normal(size=(4, 5)).astype(np.float32)
    weights = dict(l2=1.0, lpips=0, id=0, w_norm=0.5, l2_crop=0, lpips_crop=0)
    total, terms = family.reconstruction_losses(weights, {}, {}, y_hat, y, codes, avg)
    l2 = np.mean((y_hat - y) ** 2)
    w_norm = np.mean([np.linalg.norm(c - avg) for c in codes])  # Frobenius norm per sample
    np.testing.assert_allclose(terms["l2"], l2, rtol=1e-6)
    np.testing.assert_allclose(terms["w_norm"], w_norm, rtol=1e-6)
    np.testing.assert_allclose(total, l2 + 0.5 * w_norm, rtol=1e-6)
    _, w_terms = family.reconstruction_losses(weights, {}, {}, y_hat, y, codes[:, 0], avg)
    np.testing.assert_allclose(
        w_terms["w_norm"], np.mean(np.linalg.norm(codes[:, 0] - avg[0], axis=-1)), rtol=1e-6
    )


def test_part_weighted_l2_is_the_weighted_mean_of_squared_errors():
    rng = np.random.default_rng(1)
    y_hat, y = rng.normal(size=(2, 2, 8, 8, 3)).astype(np.float32)
    weight = np.where(rng.random((2, 8, 8, 1)) < 0.1, 10.0, 1.0).astype(np.float32)
    weights = dict(l2=1.0, lpips=0, id=0, w_norm=0, l2_crop=0, lpips_crop=0)
    codes, avg = np.zeros((2, 4, 5), np.float32), np.zeros((4, 5), np.float32)
    _, terms = family.reconstruction_losses(weights, {}, {}, y_hat, y, codes, avg, weight)
    per_pixel = ((y_hat - y) ** 2).mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(terms["l2"], (weight * per_pixel).sum() / weight.sum(), rtol=1e-6)
    _, plain = family.reconstruction_losses(
        weights, {}, {}, y_hat, y, codes, avg, np.ones_like(weight)
    )
    np.testing.assert_allclose(plain["l2"], np.mean((y_hat - y) ** 2), rtol=1e-6)


def test_part_weight_puts_the_feature_mask_of_each_target_in_the_batch(assets):
    from stylejax.data import labels, pipeline

    config = tiny_config(assets, **{"loss.part_weight": 5.0, "data.flip": False})
    assert family.batch_spec(config)["weight"].shape == (8, RES, RES, 1)
    batch, _ = one_batch(config)
    assert batch["weight"].shape == (8, RES, RES, 1) and batch["weight"].dtype == np.float32
    # The same 8 examples in the same order, with their segmentation maps: shuffling and
    # flipping are seeded, so a second read with the segmentation kept gives the same batch.
    ds = pipeline.make_dataset(
        config.data.name,
        global_batch_size=8,
        split=config.data.split,
        seed=config.seed,
        task="encode",
        flip=False,
        shuffle_buffer=config.data.shuffle_buffer,
        data_dir=config.data.directory,
        keys=("image", "segmentation"),
    )
    raw = next(ds.as_numpy_iterator())
    np.testing.assert_array_equal(raw["target"], batch["target"])
    expected = np.where(labels.feature_mask(raw["segmentation"]), 5.0, 1.0)
    np.testing.assert_array_equal(batch["weight"], expected)
    assert 0 < (batch["weight"] == 5.0).mean() < 0.2  # a few percent of the face
    assert "weight" not in family.batch_spec(tiny_config(assets))  # off by default
    with pytest.raises(ValueError, match="part_weight.*frontalization"):
        family.batch_spec(
            tiny_config(assets, **{"loss.part_weight": 5.0, "data.task": "frontalization"})
        )


def test_missing_loss_networks_are_switched_off_with_a_note_or_refused(assets, caplog):
    config = tiny_config(assets)
    with caplog.at_level(logging.WARNING):
        weights = family.loss_weights(config, have_lpips=False, have_arcface=False)
    assert weights["lpips"] == 0 and weights["id"] == 0 and weights["l2"] == 1.0
    assert "config.loss.lpips_weights" in caplog.text and "config.loss.id_weights" in caplog.text
    config.loss.require_weights = True
    with pytest.raises(ValueError, match="--config.loss.id_weights.*or set --config.loss.id=0"):
        family.loss_weights(config, have_lpips=True, have_arcface=False)
    config.loss.id = 0.0
    assert family.loss_weights(config, have_lpips=True, have_arcface=False)["lpips"] == 0.8


# ----------------------------------------------------------------------------- Ranger


def ranger_reference(params, grads_fn, steps, lr, b1=0.95, b2=0.999, eps=1e-5, k=6, alpha=0.5):
    """pSp's Ranger written out in numpy: gradient centralisation over every axis but the
    output (last) one, RAdam with the SMA threshold 5, Lookahead every k steps."""
    p = {n: v.astype(np.float64) for n, v in params.items()}
    slow = {n: v.copy() for n, v in p.items()}
    m = {n: np.zeros_like(v) for n, v in p.items()}
    v2 = {n: np.zeros_like(v) for n, v in p.items()}
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, steps + 1):
        grads = grads_fn(p)
        for n in p:
            g = grads[n]
            if g.ndim > 1:
                g = g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True)
            m[n] = b1 * m[n] + (1 - b1) * g
            v2[n] = b2 * v2[n] + (1 - b2) * g * g
            m_hat = m[n] / (1 - b1**t)
            rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
            if rho >= 5:
                r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                p[n] = p[n] - lr * r * m_hat / (np.sqrt(v2[n] / (1 - b2**t)) + eps)
            else:
                p[n] = p[n] - lr * m_hat
        if t % k == 0:
            for n in p:
                slow[n] = slow[n] + alpha * (p[n] - slow[n])
                p[n] = slow[n].copy()
    return p


def test_ranger_matches_a_reference_of_radam_lookahead_and_centralisation():
    rng = np.random.default_rng(0)
    params = {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=(4,))}
    target = {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=(4,))}
    grads_fn = lambda p: {n: 2 * (p[n] - target[n]) * (1 + np.abs(p[n])) for n in p}
    want = ranger_reference(params, grads_fn, steps=14, lr=0.01)

    config = psp_configs.get_config()
    config.optimizer.lr = 0.01
    tx = family.optimizer(config)
    # In float64: RAdam's rectification subtracts numbers near 2000, which float32 rounds
    # at 1e-4, enough to move the result by 1e-5.
    with jax.enable_x64(True):
        p = optax.LookaheadParams.init_synced({n: jnp.asarray(v) for n, v in params.items()})
        state = tx.init(p)
        for _ in range(14):
            grads = {n: jnp.asarray(g) for n, g in grads_fn(jax.device_get(p.fast)).items()}
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        for n in params:
            np.testing.assert_allclose(p.fast[n], want[n], rtol=1e-10, err_msg=n)


def test_learning_rate_is_constant_then_a_cosine_to_zero():
    config = psp_configs.get_config()
    config.num_steps, config.optimizer.lr, config.optimizer.lr_decay_start = 100, 0.01, 0.6
    lr = family.learning_rate(config)
    for step, want in [(0, 0.01), (59, 0.01), (60, 0.01), (80, 0.005), (100, 0.0)]:
        assert float(lr(step)) == pytest.approx(want, abs=1e-9), step
    assert float(lr(70)) == pytest.approx(0.005 * (1 + np.cos(np.pi / 4)), rel=1e-6)
    config.optimizer.lr_decay_start = 1.0  # the papers' constant lr
    assert float(family.learning_rate(config)(99)) == pytest.approx(0.01)
    assert psp_configs.get_config("ffhq_encode").optimizer.lr_decay_start == 1.0


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(assets, tmp_path_factory):
    """The default variant trained by the entry point's function for a few steps, with the
    LPIPS and ID losses on (random networks)."""
    workdir = tmp_path_factory.mktemp("psp_run")
    config = tiny_config(
        assets,
        **{"loss.lpips_weights": str(assets / "lpips"), "loss.id_weights": str(assets / "arcface")},
    )
    state, history, report = entry.train(trainer, config, workdir)
    return config, workdir, state, report, history


def test_training_reports_test_metrics_against_the_w_avg_baseline(trained):
    config, workdir, state, report, _ = trained
    assert int(state["step"]) == config.num_steps
    saved = json.loads((workdir / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert (saved["method"], saved["step"], saved["split"]) == ("psp", config.num_steps, "test")
    names = {"mse", "psnr", "ssim", "lpips", "id_similarity"}
    assert set(saved["metrics"]) == names | {f"baseline/{n}" for n in names}
    for prefix in ("", "baseline/"):
        row = {n: saved["metrics"][prefix + n] for n in names}
        assert np.isfinite(list(row.values())).all()
        # PSNR is 10·log10(4 / MSE) per image, so mean PSNR ≥ 10·log10(4 / mean MSE).
        assert row["psnr"] >= 10 * np.log10(4 / row["mse"]) - 1e-4
    assert (workdir / "eval" / "test.png").is_file()
    assert (workdir / "test" / f"step_{config.num_steps:07d}.png").is_file()
    assert (workdir / "checkpoints" / str(config.num_steps)).is_dir()


def test_all_loss_terms_train_and_the_encoder_moves(trained):
    config, workdir, state, _, history = trained
    train = next(m for _, m in reversed(history) if "loss" in m)  # the last logged
    assert {"loss_l2", "loss_lpips", "loss_id"} <= set(train)
    assert 0 < train["loss_id"] < 2  # 1 − cosine
    weights = {"l2": 1.0, "lpips": 0.8, "id": 0.1}  # the paper's, config defaults
    assert train["loss"] == pytest.approx(sum(w * train[f"loss_{k}"] for k, w in weights.items()))
    # The encoder moved between the checkpoints of steps 2 and 4.
    task = trainer.make_task(config, loop.make_mesh(jax.devices()[:1]))
    abstract = jax.eval_shape(task.init_state, jax.random.PRNGKey(0))
    earlier, _ = loop.restore_checkpoint(workdir, abstract, step=2)
    moved = optax.tree.norm(
        jax.tree_util.tree_map(
            jnp.subtract, jax.device_get(state["params"]), jax.device_get(earlier["params"])
        )
    )
    assert float(moved) > 0


def test_exported_model_is_the_trained_one_and_mixes_styles(trained):
    config, workdir, state, _, _ = trained
    model = psp_inference.load_psp(workdir / "model")
    task = trainer.make_task(config, loop.make_mesh(jax.devices()[:1]))
    want = family.encoder_variables(
        task.frozen, jax.device_get(state["params"]), state["batch_stats"]
    )
    want, got = jax.device_get(want), model.variables
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(a, b)
    batch, _ = one_batch(config)
    x = batch["source"][:4]
    images, codes = model.reconstruct(x)
    assert images.shape == (4, RES, RES, 3) and codes.shape == (4, sg.num_ws(RES), 16)
    # Style mixing keeps the layers outside the mask and takes the injected ones inside.
    inject = model.random_codes(jax.random.PRNGKey(0), 4)
    mixed = model.mix(codes, inject, [3, 4, 5])
    np.testing.assert_array_equal(mixed[:, :3], codes[:, :3])
    np.testing.assert_array_equal(mixed[:, 3:], inject[:, 3:])
    half = model.mix(codes, inject, [5], alpha=0.5)
    np.testing.assert_allclose(half[:, 5], (codes[:, 5] + inject[:, 5]) / 2, rtol=1e-6)
    outputs = model.multimodal(x, jax.random.PRNGKey(1), n_outputs=3, latent_mask=[4, 5])
    assert outputs.shape == (4, 3, RES, RES, 3)
    assert float(jnp.abs(outputs[:, 0] - outputs[:, 1]).max()) > 0
    strip = model.interpolate(x[:1], x[1:2], steps=3)
    np.testing.assert_allclose(strip[0, 0], images[0], atol=1e-5)
    np.testing.assert_allclose(strip[0, -1], images[1], atol=1e-5)
    # A latent-direction edit: strength 0 is the reconstruction, strength s decodes
    # codes + s·direction on the chosen layers only.
    direction = np.random.default_rng(0).normal(size=16).astype(np.float32)
    edits = model.edit(x[:2], direction, [0.0, 2.0], layers=[1, 2])
    assert edits.shape == (2, 2, RES, RES, 3)
    np.testing.assert_allclose(edits[:, 0], images[:2], atol=1e-5)
    moved = np.asarray(codes[:2]).copy()
    moved[:, 1:3] += 2.0 * direction
    np.testing.assert_allclose(edits[:, 1], model.decode(moved), atol=1e-5)
    assert float(jnp.abs(edits[:, 1] - edits[:, 0]).max()) > 1e-3
    with pytest.raises(ValueError, match=r"pSp input must be \[N, 16, 16, 3\]"):
        model.encode(np.zeros((1, 32, 32, 3)))


def test_inference_tool_writes_results_for_a_folder(trained, tmp_path):
    from PIL import Image

    config, workdir, _, _, _ = trained
    folder = tmp_path / "in"
    folder.mkdir()
    batch, _ = one_batch(config)
    for i, image in enumerate(batch["target"][:3]):
        Image.fromarray(np.uint8((image + 1) * 127.5)).save(folder / f"face{i}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "tools/psp_inference.py"), "--model", str(workdir / "model")]
    cmd += ["--images", str(folder), "--out", str(out), "--multimodal", "2", "--latent-mask", "4-5"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.load(out / "codes.npy").shape == (3, sg.num_ws(RES), 16)
    assert Image.open(out / "coupled" / "face0.png").size == (RES * 4 + 3, RES)
    assert (out / "grid.png").is_file() and (out / "face2.png").is_file()
    bad = subprocess.run(
        cmd[:2] + ["--model", str(tmp_path), "--images", str(folder), "--out", "x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "not a converted stylejax checkpoint" in bad.stderr


def one_step(config, batch, devices):
    """One train step of `config` on a mesh over `devices`, as the engine compiles it."""
    mesh = loop.make_mesh(devices)
    task = trainer.make_task(config, mesh)
    assert {k: (v.shape, v.dtype) for k, v in task.batch_spec.items()} == {
        k: ((config.batch_size, *batch[k].shape[1:]), batch[k].dtype) for k in ("source", "target")
    }
    state = jax.jit(task.init_state, out_shardings=loop.replicated(mesh))(jax.random.PRNGKey(0))
    step = loop.compile_step(task, mesh, loop.replicated(mesh))
    return step, state, task.frozen, mesh


@pytest.mark.parametrize(
    "variant, input_nc, terms",
    [
        ("frontalization", 3, {"loss_l2", "loss_l2_crop", "loss_w_norm"}),
        ("sketch2face", 1, {"loss_l2", "loss_w_norm"}),
        ("seg2face", 19, {"loss_l2", "loss_w_norm"}),
        ("superres", 3, {"loss_l2", "loss_w_norm"}),
        ("inpainting", 3, {"loss_l2"}),
    ],
)
def test_every_task_variant_trains_a_few_steps(assets, variant, input_nc, terms):
    config = tiny_config(assets, variant)
    data, _ = trainer.make_data(config)
    assert family.input_shape(config) == (RES, RES, input_nc)
    step, state, frozen, mesh = one_step(config, next(data), jax.devices()[:1])
    losses = []
    for _ in range(2):
        state, metrics = step(state, loop.global_batch(next(data), mesh), frozen)
        losses.append(float(metrics["loss"]))
    assert set(metrics) >= terms and not set(metrics) & {"loss_lpips", "loss_id"}
    assert np.isfinite(losses).all()


def test_one_trace_serves_every_step_across_the_lookahead_sync(assets):
    """Ranger's Lookahead moves its slow weights every 6th step, inside the one compiled
    step (optax keeps the count in its state): 7 steps, one trace."""
    config = tiny_config(assets)
    data, _ = trainer.make_data(config)
    mesh = loop.make_mesh(jax.devices()[:1])
    task, traces = counting_traces(trainer.make_task(config, mesh))
    state = jax.jit(task.init_state, out_shardings=loop.replicated(mesh))(jax.random.PRNGKey(0))
    step = loop.compile_step(task, mesh, loop.replicated(mesh))
    slow = []
    for _ in range(7):
        state, _ = step(state, loop.global_batch(next(data), mesh), task.frozen)
        slow.append(jax.device_get(state["slow"]))
    moved = [
        any(
            np.any(a != b)
            for a, b in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y))
        )
        for x, y in zip(slow, slow[1:])
    ]
    assert moved == [False, False, False, False, True, False]  # the sync at step 6
    assert len(traces) == 1


def test_one_step_on_eight_devices_equals_one_device(assets):
    """Batch norm statistics are over the global batch, so the step is the same program.
    (The 1-device program is the inpainting variant test's: the compile cache has it.)"""
    config = tiny_config(assets, "inpainting")
    batch, shape = one_batch(config)
    assert shape == (RES, RES, 3) and np.any(batch["source"] != batch["target"])
    results = []
    for devices in (jax.devices()[:1], jax.devices()[:8]):
        step, state, frozen, mesh = one_step(config, batch, devices)
        new, metrics = step(state, loop.global_batch(batch, mesh), frozen)
        assert set(metrics) >= {"loss_l2"} and "loss_w_norm" not in metrics
        results.append(jax.device_get((new["params"], new["batch_stats"], metrics["loss"])))
    for a, b in zip(jax.tree_util.tree_leaves(results[0]), jax.tree_util.tree_leaves(results[1])):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_configs_name_their_errors(assets):
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        psp_configs.get_config("nope")
    config = psp_configs.get_config("ffhq_encode")
    with pytest.raises(ValueError, match="needs --config.model.generator"):
        family.load_generator(config)
    config = tiny_config(
        assets,
        **{
            "model.learn_in_w": True,
            "model.encoder_type": "BackboneEncoderUsingLastLayerIntoWPlus",
        },
    )
    with pytest.raises(ValueError, match="learn_in_w=True predicts one W"):
        trainer.encoder_config(config, sg.Generator(**G_CONFIG), RES)


def test_config_f_networks_hash_as_static_jit_arguments():
    """ffhq_encode's abstract config-f generator goes to jit as a static argument (the
    ReStyle benchmark's run_iterations), so the module must hash: built like a converted
    file's generator (model_format.build), channels as a tuple."""
    networks = family.abstract_networks(psp_configs.get_config("ffhq_encode"))
    G = networks["G"]
    assert G.channels == sg.channels_from_base(1024, 32768, 512)
    twin = sg.Generator(**{**family.CONFIG_F, "channels": G.channels}, fused_modconv=False)
    assert hash(G) == hash(twin)  # a list of channels raises TypeError here
