"""The one entry point: `python -m stylejax.main --config=configs/<method>.py[:variant]
--workdir=DIR [--config.key=value ...]`.

Kept thin on purpose: flags, multi-process start-up and dispatch to
`stylejax.train.<config.method>.train_and_evaluate(config, workdir)`.
"""

import importlib
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

METHODS = ("stylegan2",)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<method>.py[:variant]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.mark_flags_as_required(["config", "workdir"])


def maybe_initialize_distributed():
    """Multi-process runs (TPU pods, SLURM, launch/local.py) set the coordinator through
    the environment; jax.distributed.initialize reads it. Single-process runs skip this."""
    if os.environ.get("STYLEJAX_DISTRIBUTED") or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    maybe_initialize_distributed()
    # TensorFlow is only the input pipeline: keep it off the accelerators.
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    config = _CONFIG.value
    logging.info(
        "process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices()
    )
    method = config.get("method")
    if method not in METHODS:
        raise app.UsageError(
            f"config.method={method!r}: unknown method; expected one of {', '.join(METHODS)}"
        )
    trainer = importlib.import_module(f"stylejax.train.{method}")
    trainer.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
