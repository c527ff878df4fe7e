"""configs/: every method's configs hold the fields of configs/common.py, name their variants
in errors, and load by path (as stylejax.main does) from any directory."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from configs import common

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("stylegan2", "psp", "restyle", "e4e", "sean", "l2m")
ENGINE_FIELDS = (
    "seed",
    "batch_size",
    "num_steps",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "sample_every",
)
EVALUATED_SPLIT = ("psp", "restyle", "e4e", "sean")  # methods whose evaluation reads eval.split


@pytest.mark.parametrize("method", METHODS)
def test_every_variant_holds_the_shared_fields(method):
    module = importlib.import_module(f"configs.{method}")
    for variant in module.VARIANTS:
        c = module.get_config(variant)
        assert (c.method, c.variant) == (method, variant)
        for field in ENGINE_FIELDS:
            assert isinstance(c[field], int) and c[field] >= 0, (method, variant, field)
        assert c.seed == 0 and c.num_steps > 0 and c.log_every > 0
        assert (c.data.split, c.data.directory, c.data.flip) == ("train", "", True)
        # One name for each split: data.split trains, eval.split evaluates.
        assert not {"train_split", "test_split"} & set(c.data.keys())
        if method in EVALUATED_SPLIT:
            assert c.eval.split == "test"
    with pytest.raises(ValueError, match=f"configs/{method}.py: unknown variant 'nope'"):
        module.get_config("nope")


def test_variant_check_lists_the_named_variants():
    common.check_variant("x", "", ("", "a"))
    with pytest.raises(ValueError) as e:
        common.check_variant("x", "b", ("", "a", "c"))
    assert str(e.value) == (
        "configs/x.py: unknown variant 'b'; expected one of 'a', 'c' (or none for the default)"
    )


def test_a_config_that_imports_others_loads_by_path_from_anywhere(tmp_path):
    """configs/restyle.py imports configs.psp and configs.e4e: the installed package, found
    outside the checkout too; the variant error comes after those imports."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "stylejax.main",
            f"--config={ROOT / 'configs' / 'restyle.py'}:nope",
            f"--workdir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert run.returncode != 0
    assert "configs/restyle.py: unknown variant 'nope'" in run.stderr, run.stderr[-2000:]
