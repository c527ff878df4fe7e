"""The one entry point: `python -m stylejax.main --config=configs/<method>.py[:variant]
[--workdir=DIR] [--mode=train|evaluate|export] [--out=DIR [--overwrite]]
[--config.key=value ...]`.

Every method (`stylejax/train/<method>.py`) exposes the same four functions, and the modes
drive them the same way:

  make_task(config, mesh=None, frozen="load") -> loop.Task   the pure step, its state,
      its frozen networks ("load"ed, "random" or "abstract" shapes) and batch shapes
  make_data(config) -> (batches, tf_iterator)   per-process training batches
  evaluate(config, state, workdir) -> {metric: value}   the test-split evaluation
  export(config, state, out_dir) -> meta        the trained networks, for load_pretrained

--mode=train (default) trains (resuming from --workdir's checkpoints), then evaluates, writes
workdir/report.json and exports the model to workdir/model; --mode=evaluate and
--mode=export do those steps for the latest checkpoint in --workdir (export to --out).
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
MODES = ("train", "evaluate", "export")
_MODE = flags.DEFINE_enum("mode", "train", MODES, "What to do with the method: " + "|".join(MODES))
_OUT = flags.DEFINE_string("out", None, "--mode=export: the model folder (default: WORKDIR/model)")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "--mode=export: replace an existing --out")
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
    from stylejax.data import image_folder

    try:  # data.folder -> data.directory: the folder's own data_dir
        image_folder.resolve_config(config)
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from None
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
    if _MODE.value == "train":
        train(trainer, config, workdir)
    elif _MODE.value == "evaluate":
        evaluate(trainer, config, workdir, restore(trainer, config, workdir))
    else:
        out = _OUT.value or os.path.join(workdir, "model")
        if os.path.exists(out) and not _OVERWRITE.value:
            raise app.UsageError(f"--out={out} already exists; pass --overwrite to replace it")
        meta = trainer.export(config, restore(trainer, config, workdir), out)
        logging.info("exported %s to %s", meta["source"], out)


def train(trainer, config, workdir):
    """Trains (resuming), then, unless stopped early, evaluates and exports to
    workdir/model. Returns (state, history, report or None)."""
    from stylejax.train import loop

    loop.setup_jax()
    mesh = loop.make_mesh(axes=config.sharding.mesh)
    task = trainer.make_task(config, mesh)
    data, tf_iterator = trainer.make_data(config)
    logging.info(
        "%s (%s variant) on %s: %d process(es), %d device(s), global batch %d",
        config.method,
        config.variant or "default",
        config.data.name,
        jax.process_count(),
        jax.device_count(),
        config.batch_size,
    )
    state, history = loop.run(task, config, workdir, data, tf_iterator, mesh)
    if int(jax.device_get(state["step"])) < config.num_steps:
        return state, history, None  # preempted: the next run resumes
    report = evaluate(trainer, config, workdir, state)
    if jax.process_count() == 1:  # the model-format writer is single-process
        trainer.export(config, state, os.path.join(workdir, "model"))
        logging.info("model: %s", os.path.join(workdir, "model"))
    return state, history, report


def restore(trainer, config, workdir, step=None):
    """The train state of workdir's latest checkpoint (or `step`), as make_task builds it."""
    from stylejax.train import loop

    loop.setup_jax()
    task = trainer.make_task(config)
    abstract = jax.eval_shape(task.init_state, jax.random.PRNGKey(config.seed))
    try:
        state, _ = loop.restore_checkpoint(workdir, abstract, step)
    except FileNotFoundError as e:
        raise SystemExit(f"stylejax.main --mode={_MODE.value}: {e}") from None
    return state


def evaluate(trainer, config, workdir, state) -> dict:
    """Runs the method's evaluation and writes workdir/report.json:
    {"method", "variant", "step", "split", "metrics"}."""
    from stylejax import files

    metrics = trainer.evaluate(config, state, workdir)
    report = {
        "method": config.method,
        "variant": config.variant or "default",
        "step": int(jax.device_get(state["step"])),
        "split": config.eval.split,
        "metrics": metrics,
    }
    if jax.process_index() == 0:
        files.write_json(os.path.join(workdir, "report.json"), report)
    logging.info(
        "%s test split (%s): %s",
        config.method,
        config.eval.split,
        ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()),
    )
    return report


def default_workdir(config) -> str:
    variant = config.get("variant") or ""
    return os.path.join("workdir", config.method + (f"_{variant}" if variant else ""))


if __name__ == "__main__":
    app.run(main)
