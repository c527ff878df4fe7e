"""The method contract and stylejax.main's modes: every trainer exposes make_task, make_data,
evaluate and export; its step traces from shapes alone (what tools/aot_compile.py compiles);
train → report.json + model, and --mode=evaluate / --mode=export on a checkpoint."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import build_synthetic_faces, set_fields

from configs import stylegan2 as stylegan2_configs
from stylejax import main as entry
from stylejax import model_format
from stylejax.data.synthetic_faces import SyntheticFacesConfig
from stylejax.train import loop

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ("make_task", "make_data", "evaluate", "export")


@pytest.mark.parametrize("method", entry.METHODS)
def test_every_method_builds_its_step_from_shapes_alone(method, monkeypatch):
    """make_task reads no data set and no weight file with frozen="abstract", and its
    Task.batch_spec is what the step takes: the step traces to a state of the same shapes."""
    trainer = importlib.import_module(f"stylejax.train.{method}")
    assert all(callable(getattr(trainer, name, None)) for name in CONTRACT), method
    config = importlib.import_module(f"configs.{method}").get_config()

    def refuse(*args, **kwargs):
        raise AssertionError(f"{method}: make_task read data or weights ({args[:1]})")

    from stylejax.data import pipeline

    monkeypatch.setattr(pipeline, "make_dataset", refuse)
    monkeypatch.setattr(model_format, "load_pretrained", refuse)
    task = trainer.make_task(config, loop.make_mesh(jax.devices()[:1]), frozen="abstract")
    assert set(task.batch_spec) and all(
        spec.shape[0] == config.batch_size for spec in task.batch_spec.values()
    )
    state = jax.eval_shape(task.init_state, jax.random.PRNGKey(0))
    frozen = () if task.frozen is None else (task.frozen,)
    new_state, metrics = jax.eval_shape(task.train_step, state, task.batch_spec, *frozen)
    shapes = lambda tree: jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), tree)
    assert shapes(new_state) == shapes(state)
    assert metrics


RES = 16
DATA = SyntheticFacesConfig(name="modes16", resolution=RES, num_train=32, num_test=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny StyleGAN2 trained by the entry point's train mode on a tiny synthetic set."""
    root = tmp_path_factory.mktemp("modes")
    build_synthetic_faces(DATA, root / "data")
    config = stylegan2_configs.get_config()
    overrides = {
        "data.name": f"synthetic_faces/{DATA.name}",
        "data.directory": str(root / "data"),
        "data.shuffle_buffer": 32,
        "model.resolution": RES,
        "model.z_dim": 16,
        "model.w_dim": 16,
        "model.mapping_layers": 1,
        "model.channel_max": 16,
        "num_steps": 4,
        "checkpoint_every": 2,
        "sample_every": 1000,
        "num_samples": 4,
        "eval.num_examples": 16,
    }
    config = set_fields(config, **overrides)
    workdir = root / "run"
    state, _, report = entry.train(
        importlib.import_module("stylejax.train.stylegan2"), config, workdir
    )
    return config, workdir, state, report, overrides


def test_train_mode_writes_the_report_and_the_model(trained):
    config, workdir, state, report, _ = trained
    saved = json.loads((workdir / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert {k: saved[k] for k in ("method", "variant", "step", "split")} == {
        "method": "stylegan2",
        "variant": "default",
        "step": config.num_steps,
        "split": "test",
    }
    metrics = saved["metrics"]
    # A 4-step generator is far from the data; the training split is near the test split.
    assert metrics["pixel_fd"] > metrics["pixel_fd_floor"] > 0
    assert (workdir / "eval" / "samples.png").is_file()
    G, variables = model_format.load_pretrained(workdir / "model")
    for a, b in zip(
        jax.tree_util.tree_leaves(variables),
        jax.tree_util.tree_leaves(jax.device_get(state["g_ema"])),
    ):
        np.testing.assert_array_equal(a, b)


def test_evaluate_and_export_modes_work_from_the_checkpoint(trained, tmp_path):
    config, workdir, state, report, overrides = trained
    flags = [f"--config.{k}={v}" for k, v in overrides.items()]
    base = [sys.executable, "-m", "stylejax.main", "--config=configs/stylegan2.py", *flags]
    out = tmp_path / "exported"
    run = subprocess.run(
        [*base, f"--workdir={workdir}", "--mode=export", f"--out={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    again = subprocess.run(
        [*base, f"--workdir={workdir}", "--mode=export", f"--out={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode != 0 and "already exists; pass --overwrite" in again.stderr
    _, exported = model_format.load_pretrained(out)
    _, trained_model = model_format.load_pretrained(workdir / "model")
    for a, b in zip(jax.tree_util.tree_leaves(exported), jax.tree_util.tree_leaves(trained_model)):
        np.testing.assert_array_equal(a, b)
    (workdir / "report.json").unlink()
    restored = entry.restore(importlib.import_module("stylejax.train.stylegan2"), config, workdir)
    again = entry.evaluate(
        importlib.import_module("stylejax.train.stylegan2"), config, workdir, restored
    )
    assert again == report  # the same checkpoint, seeds and test images
    assert json.loads((workdir / "report.json").read_text())["metrics"] == report["metrics"]
    missing = subprocess.run(
        [*base, f"--workdir={tmp_path / 'empty'}", "--mode=evaluate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert missing.returncode != 0 and "no training checkpoint" in missing.stderr
