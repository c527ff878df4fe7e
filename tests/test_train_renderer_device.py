"""tools/train_renderer_device.py: what the accelerator host needs (imports without
tensorflow, TFDS or clu), its render jobs, and `pack` (its weights as a model folder)."""

import json
import subprocess
import sys
from pathlib import Path

import flax.serialization
import jax
import numpy as np

from stylejax import model_format
from stylejax.data import factor_latents
from stylejax.data.labels import LABEL

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "train_renderer_device.py"

# Run the tool's imports with tensorflow, TFDS and clu made unimportable, as on the lent GPU
# machines, which have none of them.
WITHOUT_TF = """
import importlib.abc, runpy, sys
BLOCKED = ("tensorflow", "tensorflow_datasets", "clu")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
sys.meta_path.insert(0, Block())
module = runpy.run_path(sys.argv[1])
assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
print("imported", sorted(k for k in module if k in ("train", "pack", "render_chunk")))
"""


def load_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_renderer_device", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_without_tensorflow_tfds_or_clu():
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TF, str(TOOL)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported ['pack', 'render_chunk', 'train']" in result.stdout


def test_render_chunk_is_the_renderer_in_uint8_with_the_feature_mask():
    tool = load_tool()
    z, image, feature = tool.render_chunk((3, 5, 4, 64, 32))
    expected_z = np.random.default_rng([3, 5]).standard_normal((4, 64)).astype(np.float32)
    np.testing.assert_array_equal(z, expected_z)
    reference, labels = factor_latents.render_batch(z, 32, with_labels=True)
    assert image.dtype == np.uint8 and image.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(image.astype(np.float32) / 127.5 - 1.0, reference)
    assert feature.shape == (4, 32, 32, 1) and feature.dtype == bool
    mouth_or_eyes = np.isin(labels, [LABEL[p] for p in ("mouth", "l_eye", "r_eye")])
    assert feature[..., 0][mouth_or_eyes].all()  # features are weighted ...
    assert not feature[..., 0][labels == LABEL["skin"]].any()  # ... the skin is not


def test_pack_writes_the_run_as_a_loadable_model_folder(tmp_path):
    tool = load_tool()
    from configs import stylegan2 as configs
    from stylejax.train import stylegan2

    config = configs.get_config("synthetic64")
    G, _ = stylegan2.build_models(config)
    g_ema = jax.device_get(
        stylegan2.sg.init_variables(G, jax.random.PRNGKey(1), np.zeros((1, 64), np.float32))
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "g_ema.msgpack").write_bytes(flax.serialization.msgpack_serialize(g_ema))
    overrides = {"batch_size": 128, "num_steps": 900, "g_lr": 0.005}
    (run / "run.json").write_text(
        json.dumps({"variant": "synthetic64", "overrides": overrides, "step": 850})
    )
    sys.argv = ["x", "pack", str(run), "--model-dir", str(tmp_path / "model")]
    tool.main()
    meta = model_format.read_config(tmp_path / "model")
    assert meta["latents"] == factor_latents.LATENTS  # scored against the truth by the tools
    assert meta["source"] == "stylejax stylegan2 (synthetic64 variant), step 850"
    _, loaded = model_format.load_pretrained(tmp_path / "model")
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, g_ema)
