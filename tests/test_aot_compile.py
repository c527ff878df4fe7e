"""tools/aot_compile.py: the real train step compiled for a TPU topology on a machine without a
TPU. Needs the optional libtpu package (pip install -e ".[tpu]"), which describes topologies."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "aot_compile.py"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason='libtpu is not installed (optional, ~700 MB: pip install -e ".[tpu]"); it provides '
    "the TPU topology descriptions tools/aot_compile.py compiles for",
)

# The default StyleGAN2 config shrunk to 8 px: the TPU compiler still takes about a minute.
TINY = [
    "--config=configs/stylegan2.py",
    "--config.model.resolution=8",
    "--config.model.channel_max=8",
    "--config.model.z_dim=16",
    "--config.model.w_dim=16",
    "--config.model.mapping_layers=1",
]


def _run_tool(*args, timeout=600):
    return subprocess.run(
        [sys.executable, str(TOOL), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        cwd=ROOT,
    )


def _table(stdout: str) -> dict[str, str]:
    """`name  value` rows: names hold single spaces, two or more separate the value."""
    rows = {}
    for line in stdout.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2:
            rows[parts[0]] = parts[1]
    return rows


def _number(value: str) -> float:
    return float(value.split()[0])


def test_compiles_the_train_step_for_a_v5e_slice():
    result = _run_tool(*TINY, "--config.batch_size=8", "--topology=v5e:2x2")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _table(result.stdout)
    expected = [
        "config",
        "topology",
        "devices / hosts",
        "global batch",
        "per-device batch",
        "arguments per device",
        "outputs per device",
        "aliased (donated) per device",
        "temporaries per device",
        "generated code per device",
        "total per device",
        "FLOPs per step per device",
        "FLOPs per step, all devices",
        "compile time",
    ]
    assert list(rows) == expected, result.stdout
    assert rows["topology"] == "v5e:2x2 (TPU v5 lite)"
    assert rows["devices / hosts"] == "4 / 1"
    assert rows["global batch"] == "8" and rows["per-device batch"] == "2"
    for name in ("arguments per device", "generated code per device", "total per device"):
        assert rows[name].endswith(" MiB") and _number(rows[name]) > 0, (name, rows[name])
    per_device = _number(rows["FLOPs per step per device"])
    assert per_device > 0
    assert _number(rows["FLOPs per step, all devices"]) == pytest.approx(4 * per_device, rel=1e-3)


def test_batch_that_does_not_split_over_the_devices_is_refused():
    result = _run_tool(*TINY, "--config.batch_size=6", "--topology=v5e:2x2", timeout=120)
    assert result.returncode != 0
    assert "global batch 6 does not split over 4 devices" in result.stderr


def test_unknown_topology_is_named():
    result = _run_tool(*TINY, "--topology=v5e:banana", timeout=120)
    assert result.returncode != 0
    assert "--topology='v5e:banana'" in result.stderr
