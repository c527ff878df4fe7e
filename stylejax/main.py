"""The one entry point: `python -m stylejax.main --config=configs/<method>.py[:variant]
[--workdir=DIR] [--config.key=value ...]`.

Kept thin on purpose: flags, multi-process start-up and dispatch to
`stylejax.train.<config.method>.train_and_evaluate(config, workdir)`.
"""

import importlib
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

METHODS = ("stylegan2", "psp", "l2m", "sean", "restyle", "e4e")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<method>.py[:variant]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Directory for checkpoints, logs and samples (default: workdir/<method>[_<variant>]).",
)
flags.mark_flags_as_required(["config"])


# Environment a multi-process launch sets (launch/local.py, launch/slurm.sbatch): the
# coordinator's host:port, the number of processes and this process's rank.
COORDINATOR_ENV = "STYLEJAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "STYLEJAX_NUM_PROCESSES"
PROCESS_ID_ENV = "STYLEJAX_PROCESS_ID"
# Or STYLEJAX_DISTRIBUTED=1 (launch/tpu_pod.sh): JAX detects all three itself (TPU pod
# metadata, SLURM, Open MPI, Kubernetes).
AUTO_DETECT_ENV = "STYLEJAX_DISTRIBUTED"


def maybe_initialize_distributed(environ=os.environ) -> bool:
    """Joins a multi-process run when the environment describes one; returns whether it did.
    Single-process runs (none of the variables set) never call jax.distributed.initialize."""
    coordinator = environ.get(COORDINATOR_ENV)
    auto = environ.get(AUTO_DETECT_ENV, "").strip().lower()
    if auto not in ("", "0", "false", "1", "true"):
        raise ValueError(f"{AUTO_DETECT_ENV}={auto!r}: expected 1/true or 0/false")
    if not coordinator and auto not in ("1", "true"):
        return False
    # CPU processes exchange collectives through gloo (older JAX had none by default); the
    # setting only concerns the CPU backend, so it is harmless on TPU and GPU.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if not coordinator:
        jax.distributed.initialize()
        return True
    missing = [name for name in (NUM_PROCESSES_ENV, PROCESS_ID_ENV) if name not in environ]
    if missing:
        raise ValueError(
            f"{COORDINATOR_ENV}={coordinator!r} is set but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not; a launcher sets all three "
            f"(see launch/README.md)"
        )
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=int(environ[NUM_PROCESSES_ENV]),
        process_id=int(environ[PROCESS_ID_ENV]),
    )
    return True


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
    workdir = _WORKDIR.value or default_workdir(config)
    logging.info("workdir: %s", workdir)
    trainer = importlib.import_module(f"stylejax.train.{method}")
    trainer.train_and_evaluate(config, workdir)


def default_workdir(config) -> str:
    variant = config.get("variant") or ""
    return os.path.join("workdir", config.method + (f"_{variant}" if variant else ""))


if __name__ == "__main__":
    app.run(main)
