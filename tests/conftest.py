"""Shared test helpers: where the parity fixtures live, error metrics, the tools as modules."""

import importlib.util
import os
import tempfile
from pathlib import Path

# Tests run on the CPU whatever is installed (an accelerator, or libtpu without a TPU), with
# 8 fake CPU devices for the sharding tests; both must be set before JAX starts.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Identical programs (the same train step jitted by several tests) compile once.
jax.config.update(
    "jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "stylejax-test-jax-cache")
)

ROOT = Path(__file__).resolve().parents[1]

# ../shared/fixtures relative to the repository root (override with STYLEJAX_FIXTURES).
FIXTURES = Path(os.environ.get("STYLEJAX_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def fixture_file(name: str) -> Path:
    """Path of a parity fixture; skips the test with the reason when it is absent."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(
            f"parity fixture {path} not found: the tests need the project's ../shared "
            f"folder beside the checkout (or STYLEJAX_FIXTURES pointing at it)"
        )
    return path


def load_tool(name: str):
    """tools/<name>.py as a module, to call its main(argv) in-process (tools/ holds scripts,
    not a package)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_close(got, want, rel=1e-5, max_abs=1e-4, what=""):
    """Relative L2 error and max-abs error bounds, as the fixtures' README states them."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    rel_err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    abs_err = np.abs(got - want).max()
    assert rel_err <= rel and abs_err <= max_abs, (
        f"{what}: relative error {rel_err:.3e} (bound {rel:g}), max-abs {abs_err:.3e} "
        f"(bound {max_abs:g})"
    )


def nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


def set_fields(config, **overrides):
    """config with dotted fields set: set_fields(c, **{"model.resolution": 16})."""
    for key, value in overrides.items():
        node = config
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    return config


def build_synthetic_faces(config, directory) -> str:
    """Builds a small synthetic_faces config (a SyntheticFacesConfig) into a TFDS data dir
    in this process (no worker pool) and returns the directory."""
    from stylejax.data.synthetic_faces import SyntheticFaces

    builder = SyntheticFaces(config=config, data_dir=str(directory))
    builder.num_workers = 1
    builder.download_and_prepare()
    return str(directory)
