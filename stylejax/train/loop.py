"""The training engine every method shares: mesh and shardings, checkpoints (state and
data iterator, async, keep-N, resume, save on SIGTERM), metric logging with a NaN/Inf
guard, progress and sample grids.

A method module (`stylejax/train/<method>.py`) builds its models and a pure
`train_step(state, batch) -> (state, metrics)`; `run` below does the rest.
"""

import dataclasses
import logging as logging_std
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax import images

# Mesh axes: "data" splits the batch; "fsdp" splits the batch and the parameters that
# config.sharding.rules place on it.
BATCH_AXES = ("data", "fsdp")
DATA_MESH = (("data", -1),)  # the default: every device on the data axis


def setup_jax():
    # Random draws identical whatever the sharding: 8 devices reproduce 1 device.
    jax.config.update("jax_threefry_partitionable", True)
    # orbax logs every save phase at INFO; keep its warnings, drop the chatter.
    logging_std.getLogger("absl").addFilter(_QuietOrbax())


class _QuietOrbax(logging_std.Filter):
    def filter(self, record):
        return record.levelno >= logging_std.WARNING or "/orbax/" not in record.pathname


def make_mesh(devices=None, axes=DATA_MESH) -> Mesh:
    """A mesh over every device of every process (or `devices`) with the named axis sizes of
    `axes` (config.sharding.mesh), e.g. (("data", 2), ("fsdp", -1)); one size may be -1:
    the devices left over."""
    devices = np.asarray(jax.devices() if devices is None else devices).reshape(-1)
    names = tuple(name for name, _ in axes)
    sizes = [size for _, size in axes]
    if -1 in sizes:
        known = int(np.prod([s for s in sizes if s != -1]))
        sizes[sizes.index(-1)] = devices.size // known
    if int(np.prod(sizes)) != devices.size:
        raise ValueError(f"mesh {dict(zip(names, sizes))} does not cover {devices.size} devices")
    return Mesh(devices.reshape(sizes), names)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_axes(mesh) -> tuple[str, ...]:
    """The mesh axes the batch is split over: data and fsdp (FSDP shards parameters over
    its axis and the batch too)."""
    return tuple(name for name in mesh.axis_names if name in BATCH_AXES)


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(batch_axes(mesh)))


def state_sharding(config, mesh: Mesh, abstract_state):
    """The NamedSharding of every leaf of `abstract_state` from config.sharding.rules:
    (regex, partition spec) pairs; the first regex that matches the whole '/'-joined path
    (e.g. "g_opt/0/mu/synthesis/b64/conv0/weight") gives the leaf's spec, and a leaf no rule
    matches is replicated. A spec is a tuple over the leaf's leading dimensions of None, an
    axis name or a tuple of names; where a dimension does not divide over its axes the leaf
    is replicated instead, and logged."""
    rules = [(re.compile(pattern), spec) for pattern, spec in config.sharding.rules]
    unsplit = []

    def leaf_sharding(path, leaf):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        spec = next((spec for pattern, spec in rules if pattern.fullmatch(name)), ())
        spec = tuple(tuple(s) if isinstance(s, list) else s for s in spec)
        if not _divides(spec, leaf.shape, mesh):
            unsplit.append(f"{name} {tuple(leaf.shape)} over {spec}")
            spec = ()
        return NamedSharding(mesh, P(*spec))

    shardings = jax.tree_util.tree_map_with_path(leaf_sharding, abstract_state)
    if unsplit:
        logging.info("replicated, as their sizes do not divide: %s", "; ".join(unsplit))
    return shardings


def _divides(spec, shape, mesh: Mesh) -> bool:
    if len(spec) > len(shape):
        return False
    for size, axes in zip(shape, spec):
        axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
        if size % int(np.prod([mesh.shape[a] for a in axes])):
            return False
    return True


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """This process's numpy batch → global arrays sharded over the batch axes."""
    sharding = batch_sharded(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }


def numpy_batches(ds, keys):
    """(generator of per-process numpy batches holding `keys`, the tf.data iterator behind
    it): what `run` takes as `data` and `tf_iterator` (the latter is checkpointed)."""
    tf_iterator = iter(ds)

    def batches():
        for batch in tf_iterator:
            yield {k: batch[k].numpy() for k in keys}

    return batches(), tf_iterator


# ----------------------------------------------------------------------------- checkpoints


class DataIteratorHandler(ocp.CheckpointHandler):
    """Saves a tf.data iterator's position (one file per process, since each process
    reads its own slice), so that a resumed run sees exactly the batches it would have."""

    def save(self, directory, args: "DataIteratorSave"):
        import tensorflow as tf

        path = Path(directory) / f"process_{jax.process_index()}"
        tf.train.Checkpoint(iterator=args.iterator).write(str(path))

    def restore(self, directory, args: "DataIteratorRestore"):
        import tensorflow as tf

        path = Path(directory) / f"process_{jax.process_index()}"
        tf.train.Checkpoint(iterator=args.iterator).read(str(path)).assert_consumed()
        return args.iterator


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
    iterator: Any


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
    iterator: Any


class Checkpointer:
    """orbax CheckpointManager over `workdir/checkpoints` with items `state` and `data`."""

    def __init__(self, workdir, every_steps: int, keep: int, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=every_steps,
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
        )
        self.manager = ocp.CheckpointManager(
            Path(workdir).absolute() / "checkpoints",
            options=options,
            item_names=("state", "data"),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, abstract_state, data_iterator, step: int | None = None):
        """Restores state (placed with the shardings of `abstract_state`) and the data
        iterator in place; returns the state."""
        step = self.latest_step() if step is None else step
        args = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            args["data"] = DataIteratorRestore(data_iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**args))["state"]

    def save(self, step: int, state, data_iterator, force: bool = False) -> bool:
        args = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            args["data"] = DataIteratorSave(data_iterator)
        return self.manager.save(step, args=ocp.args.Composite(**args), force=force)

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def restore_checkpoint(workdir, abstract_state, step: int | None = None):
    """(state, step) of a training run's checkpoint (the latest, or `step`), e.g. to export
    a model from it."""
    ckpt = Checkpointer(workdir, every_steps=1, keep=None, async_save=False)
    step = ckpt.latest_step() if step is None else step
    if step is None:
        ckpt.close()
        raise FileNotFoundError(f"{workdir}: no training checkpoint in {workdir}/checkpoints")
    state = ckpt.restore(abstract_state, None, step)
    ckpt.close()
    return state, step


class Preemption:
    """SIGTERM (TPU preemption, `kill`, SLURM time limit) sets a flag the loop checks
    between steps, so the loop can save and exit cleanly instead of dying mid-write."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint and stopping after this step")
        self.requested = True

    def reached(self, step: int) -> bool:
        if jax.process_count() > 1:
            # All processes must stop at the same step; the JAX distributed runtime's
            # preemption service agrees on it.
            return self.requested or multihost_utils.reached_preemption_sync_point(step)
        return self.requested

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


# ----------------------------------------------------------------------------- metrics


class NonFiniteError(FloatingPointError):
    pass


class MetricsLog:
    """Keeps per-step metrics on the device and reads them back only every `every` steps
    (no host round-trip per step). A metric given as (value, weight) is averaged with
    those weights (regularisers that only run on some steps pass weight 0 elsewhere)."""

    def __init__(self, writer, every: int):
        self.writer = writer
        self.every = every
        self.pending: list[tuple[int, Any]] = []

    def add(self, step: int, metrics) -> dict[str, float] | None:
        self.pending.append((step, metrics))
        if len(self.pending) >= self.every:
            return self.flush()
        return None

    def flush(self) -> dict[str, float] | None:
        if not self.pending:
            return None
        steps = [s for s, _ in self.pending]
        values = jax.device_get([m for _, m in self.pending])
        self.pending = []
        for step, metrics in zip(steps, values):
            for name, value in metrics.items():
                v = value[0] if isinstance(value, tuple) else value
                if not np.all(np.isfinite(v)):
                    raise NonFiniteError(
                        f"training diverged: metric '{name}' is {float(v)} at step {step}; "
                        f"stopped (the last checkpoint is from before this step)"
                    )
        summary = {}
        for name in values[0]:
            if isinstance(values[0][name], tuple):
                total = sum(float(m[name][1]) for m in values)
                if total > 0:
                    summary[name] = sum(float(m[name][0] * m[name][1]) for m in values) / total
            else:
                summary[name] = float(np.mean([m[name] for m in values]))
        self.writer.write_scalars(steps[-1], summary)
        return summary


# ----------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class Task:
    """What a method hands to `run`."""

    init_state: Callable[[jax.Array], Any]  # rng -> state (pure; jitted here)
    train_step: Callable[[Any, dict], tuple[Any, dict]]  # pure; jitted here
    samples: Callable[[Any], jax.Array] | None  # state -> images NHWC in [-1, 1]
    global_batch_size: int
    parameters: Callable[[Any], dict]  # state -> {network: params} for the overview
    # Frozen networks (a loss's feature net, a pSp decoder): placed replicated once and
    # passed as train_step(state, batch, frozen), never checkpointed nor embedded as
    # constants in the compiled step.
    frozen: Any = None
    # Run once on a fresh state (not on resume), e.g. to load pretrained weights.
    prepare_state: Callable[[Any], Any] | None = None
    # state -> ({metric: value}, images or None): a test-split evaluation, run every
    # config.eval_every steps and at the end; images are written as a grid.
    evaluate: Callable[[Any], tuple[dict, Any]] | None = None
    # {key: jax.ShapeDtypeStruct} of one *global* batch as train_step receives it: what
    # tools/aot_compile.py and the trace-once tests compile the step for, with no data.
    batch_spec: dict[str, jax.ShapeDtypeStruct] | None = None
    # An optional first phase: warmup_step (train_step's signature) runs the first
    # warmup_steps steps. It is compiled on its own: a lax.cond choosing between two large
    # steps inside one function ran both ~10× slower on XLA:CPU.
    warmup_step: Callable[[Any, dict], tuple[Any, dict]] | None = None
    warmup_steps: int = 0


def split_over_devices(x):
    """Splits x's leading (batch) axis over the batch axes, like the input batch. For batch
    values a step makes itself (latents), which XLA would otherwise compute whole on every
    device. Needs the mesh that compile_step sets while tracing."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, P(batch_axes(mesh)))


def compile_step(task: Task, mesh: Mesh, shardings):
    """The jitted step(state, batch[, frozen]) with the state donated; `shardings` are the
    state's (state_sharding), the batch is split over the batch axes."""

    def step(state, batch, *frozen):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):  # for split_over_devices
            return task.train_step(state, batch, *frozen)

    in_shardings = (shardings, batch_sharded(mesh))
    if task.frozen is not None:
        in_shardings += (replicated(mesh),)
    return jax.jit(
        step,
        in_shardings=in_shardings,
        out_shardings=(shardings, replicated(mesh)),
        donate_argnums=0,
    )


def run(task: Task, config, workdir, data: Iterator, tf_iterator=None, mesh=None):
    """Trains `task` for config.num_steps, resuming from `workdir` if it holds a
    checkpoint. `data` yields per-process numpy batches; `tf_iterator` (the tf.data
    iterator behind `data`) is checkpointed with the state.

    Returns (state, history): history lists the logged metric summaries as (step, dict),
    and the test-split evaluations as (step, {"test/<metric>": value}).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = make_mesh(axes=config.sharding.mesh) if mesh is None else mesh
    repl = replicated(mesh)
    rng = jax.random.PRNGKey(config.seed)

    # State shapes first, then state born on the mesh with config.sharding's rules (no host
    # copy).
    abstract = jax.eval_shape(task.init_state, rng)
    shardings = state_sharding(config, mesh, abstract)
    ckpt = Checkpointer(workdir, config.checkpoint_every, config.keep_checkpoints)
    start = ckpt.latest_step()
    if start is not None:
        target = jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract,
            shardings,
        )
        state = ckpt.restore(target, tf_iterator, start)
        logging.info("resumed from %s at step %d", ckpt.manager.directory, start)
    else:
        state = jax.jit(task.init_state, out_shardings=shardings)(rng)
        if task.prepare_state is not None:  # loaded weights go back to the rules' shardings
            state = jax.device_put(task.prepare_state(state), shardings)
        start = 0
    frozen = () if task.frozen is None else (jax.device_put(task.frozen, repl),)

    from clu import metric_writers, periodic_actions  # imports tensorflow: only when training

    writer = metric_writers.create_default_writer(
        workdir, just_logging=jax.process_index() > 0, asynchronous=True
    )
    if start == 0:
        writer.write_hparams(_flat_config(config))
    from clu import parameter_overview

    for name, params in task.parameters(state).items():
        parameter_overview.log_parameter_overview(params, msg=f"{name} parameters")

    step_fn = compile_step(task, mesh, shardings)
    if task.warmup_steps and start < task.warmup_steps:
        warmup_task = dataclasses.replace(task, train_step=task.warmup_step)
        warmup_fn = compile_step(warmup_task, mesh, shardings)
    log = MetricsLog(writer, config.log_every)
    progress = periodic_actions.ReportProgress(
        num_train_steps=config.num_steps, writer=writer, every_steps=config.log_every
    )
    preemption = Preemption()
    t0, step_start = time.perf_counter(), start
    step = start
    history = []

    def report(summary):
        nonlocal t0, step_start
        history.append((step, summary))
        now = time.perf_counter()  # images/s over the last logging interval
        rate = (step - step_start) * task.global_batch_size / max(now - t0, 1e-9)
        t0, step_start = now, step
        writer.write_scalars(step, {"images_per_sec": rate})
        logging.info(
            "step %d/%d: %s, %.1f img/s",
            step,
            config.num_steps,
            ", ".join(f"{k} {v:.4g}" for k, v in summary.items()),
            rate,
        )

    try:
        while step < config.num_steps:
            batch = global_batch(next(data), mesh)
            warming = step < task.warmup_steps
            state, metrics = (warmup_fn if warming else step_fn)(state, batch, *frozen)
            step += 1
            progress(step)
            summary = log.add(step, metrics)
            if summary is None and warming and step == task.warmup_steps:
                summary = log.flush()  # the two phases' metrics are not averaged together
            if summary is not None:
                report(summary)
            if task.samples is not None and (
                step % config.sample_every == 0 or step == config.num_steps
            ):
                write_samples(writer, workdir, step, task.samples(state))
            if task.evaluate is not None and (
                step % config.eval_every == 0 or step == config.num_steps
            ):
                history.append((step, evaluate(task, writer, workdir, step, state)))
            ckpt.save(step, state, tf_iterator)
            if preemption.reached(step):
                if ckpt.latest_step() != step:
                    ckpt.save(step, state, tf_iterator, force=True)
                logging.warning("stopped at step %d after SIGTERM; checkpoint saved", step)
                break
        summary = log.flush()
        if summary is not None:
            history.append((step, summary))
        if step == config.num_steps and ckpt.latest_step() != step:
            ckpt.save(step, state, tf_iterator, force=True)
    finally:
        preemption.restore()
        ckpt.close()
        writer.flush()
    return state, history


def evaluate(task: Task, writer, workdir, step: int, state) -> dict[str, float]:
    metrics, samples = task.evaluate(state)
    metrics = {f"test/{k}": float(v) for k, v in metrics.items()}
    writer.write_scalars(step, metrics)
    logging.info(
        "test split at step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    )
    if samples is not None:
        write_samples(writer, workdir, step, samples, name="test")
    return metrics


def write_samples(writer, workdir, step, samples, name="samples", columns=None):
    """Saves a [N, H, W, C] batch (or an already laid-out grid [H, W, C]) as
    workdir/<name>/step_N.png and as a TensorBoard image."""
    samples = np.asarray(jax.device_get(samples))
    if jax.process_index() == 0:
        grid = samples if samples.ndim == 3 else images.make_grid(samples, columns, pad=1)
        images.save_image(grid, Path(workdir) / name / f"step_{step:07d}.png")
        writer.write_images(step, {name: grid[None]})


def _flat_config(config, prefix=""):
    out = {}
    for k, v in config.items():
        if hasattr(v, "items"):
            out.update(_flat_config(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)):
            out[f"{prefix}{k}"] = v
        else:
            out[f"{prefix}{k}"] = str(v)
    return out
