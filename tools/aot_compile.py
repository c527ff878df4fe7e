"""Compiles any method's real train step (the one `python -m stylejax.main` runs: the
method's make_task, its frozen networks as shapes, its Task.batch_spec) for a TPU pod slice on
a machine without a TPU, and prints what one step needs per device: memory (from XLA's memory
analysis) and FLOPs (from its cost analysis).

  python tools/aot_compile.py --config=configs/stylegan2.py:ffhq1024 --topology=v5e:8x8 \
      --config.batch_size=64
  python tools/aot_compile.py --config=configs/stylegan2.py:ffhq1024 --topology=v4:2x2x2

Topologies are `<generation>:<chips per axis>`: v5e:2x2 … v5e:16x16, v6e:8x8, v4:2x2x2 …,
v5p:2x2x2 …. Needs the `libtpu` package (`pip install -e ".[tpu]"`), which describes the
topologies; no TPU is used. The state is replicated and the batch split over all devices,
exactly as `stylejax.train.loop.run` does, so the global batch must divide by the device count.
"""

import os

# No TPU here: JAX runs on the CPU and libtpu is only asked for the topology. Another JAX
# process on this machine may hold libtpu's lockfile; the topology does not need it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import importlib
import time

import jax
from absl import app, flags
from jax.experimental import topologies
from ml_collections import config_flags

from stylejax.train import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<method>.py[:variant]).", lock_config=True
)
_TOPOLOGY = flags.DEFINE_string(
    "topology", "v5e:2x2", "TPU slice, <generation>:<chips per axis>, e.g. v5e:8x8, v4:4x4x4."
)
flags.mark_flags_as_required(["config"])

# v4 and v5p chips have two TensorCores that JAX drives as one device ("megacore"); v5p's
# topology does that by default, v4's must be asked.
CHIP_CONFIGS = {"v4": "megacore"}


def topology_devices(topology: str) -> list:
    generation = topology.split(":")[0]
    kwargs = {}
    if generation in CHIP_CONFIGS:
        kwargs["chip_config_name"] = CHIP_CONFIGS[generation]
    try:
        return topologies.get_topology_desc(topology, "tpu", **kwargs).devices
    except RuntimeError as e:
        if "TPU support not installed" in str(e):
            raise SystemExit(
                "tools/aot_compile.py needs the libtpu package for TPU topologies and it is "
                'not installed: pip install -e ".[tpu]"'
            ) from e
        raise SystemExit(
            f"--topology={topology!r}: libtpu rejected it ({e}); expected "
            f"<generation>:<chips per axis>, e.g. v5e:8x8, v4:2x2x2, v5p:4x4x4"
        ) from e


def compile_train_step(config, devices):
    """Lowers and compiles the method's train step for `devices` from abstract values only
    (no parameter is ever allocated). Returns (compiled, seconds)."""
    loop.setup_jax()  # the same JAX settings as a training run, hence the same program
    num_devices = len(devices)
    if config.batch_size % num_devices:
        raise SystemExit(
            f"global batch {config.batch_size} does not split over {num_devices} devices; "
            f"set --config.batch_size to a multiple of {num_devices}"
        )
    trainer = importlib.import_module(f"stylejax.train.{config.method}")
    mesh = loop.make_mesh(devices, axes=config.sharding.mesh)
    # Frozen networks (pSp's generator and loss networks, SEAN's VGG) as shapes only.
    task = trainer.make_task(config, mesh, frozen="abstract")
    abstract_state = jax.eval_shape(task.init_state, jax.random.PRNGKey(config.seed))
    state_sharding = loop.state_sharding(config, mesh, abstract_state)
    state = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        state_sharding,
    )
    batch = {
        name: jax.ShapeDtypeStruct(spec.shape, spec.dtype, sharding=loop.batch_sharded(mesh))
        for name, spec in task.batch_spec.items()
    }
    t0 = time.perf_counter()
    frozen = () if task.frozen is None else (task.frozen,)
    lowered = loop.compile_step(task, mesh, state_sharding).lower(state, batch, *frozen)
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        raise SystemExit(
            f"the step does not fit one {devices[0].device_kind} device with global batch "
            f"{config.batch_size} on {num_devices} devices: {e}\nUse a larger slice or a "
            f"smaller per-device batch (--config.batch_size)."
        ) from e
    return compiled, time.perf_counter() - t0


def report_rows(config, topology, devices, compiled, compile_s) -> list[tuple[str, str]]:
    num_devices = len(devices)
    num_hosts = len({d.process_index for d in devices})
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
        cost = cost[0]
    flops = float(cost.get("flops", 0.0))
    peak = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
        + memory.temp_size_in_bytes
        + memory.generated_code_size_in_bytes
    )
    return [
        ("config", f"{config.method}:{config.get('variant', '')}"),
        ("topology", f"{topology} ({devices[0].device_kind})"),
        ("devices / hosts", f"{num_devices} / {num_hosts}"),
        ("global batch", str(config.batch_size)),
        ("per-device batch", str(config.batch_size // num_devices)),
        ("arguments per device", mib(memory.argument_size_in_bytes)),
        ("outputs per device", mib(memory.output_size_in_bytes)),
        ("aliased (donated) per device", mib(memory.alias_size_in_bytes)),
        ("temporaries per device", mib(memory.temp_size_in_bytes)),
        ("generated code per device", mib(memory.generated_code_size_in_bytes)),
        ("total per device", mib(peak)),
        ("FLOPs per step per device", gflop(flops)),
        ("FLOPs per step, all devices", gflop(flops * num_devices)),
        ("compile time", f"{compile_s:.1f} s"),
    ]


def mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"


def gflop(flops: float) -> str:
    return f"{flops / 1e9:.4g} GFLOP"


def format_table(rows) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    devices = topology_devices(_TOPOLOGY.value)
    compiled, compile_s = compile_train_step(config, devices)
    print(format_table(report_rows(config, _TOPOLOGY.value, devices, compiled, compile_s)))


if __name__ == "__main__":
    app.run(main)
