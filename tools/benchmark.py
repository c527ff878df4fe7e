"""Throughput benchmarks; each prints a table.

python tools/benchmark.py models [--resolution 256] [--batch 8] [--iters 10]
    StyleGAN2 config-f generator forward and discriminator img/s, fused vs non-fused
    modulated convolution, on whatever device JAX finds.
python tools/benchmark.py psp [--only synthetic64|ffhq_encode] [--batch 8] [--iters 10]
    pSp encoder + generator inference latency at batch 1 and 8, and training images/s:
    the default config (64 px, shipped generator) and ffhq_encode's shapes (256 px input,
    IR-SE50, config-f 1024 px generator, LPIPS-Alex and ArcFace losses; random weights).
python tools/benchmark.py restyle [--only synthetic64|ffhq_encode] [--steps 1,2,3,5,10]
    ReStyle-pSp inference latency for N = 1 … 10 refinement steps at batch 1, and training
    images/s (5 iterations per batch): the default config (64 px) and ffhq_encode's shapes
    (256 → 1024 px, IR-SE50, config-f; random weights).
python tools/benchmark.py sean [--resolution 256] [--batch 8] [--iters 10]
    SEAN (official widths at 256 px, configs/sean.py:celebamaskhq; the small default config
    below 256 px): generator inference latency and train-step images/s, random weights.
python tools/benchmark.py data
    Input-pipeline images/s (see stylejax/data/benchmark.py).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # stylejax and configs

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from stylejax.models import stylegan2 as sg  # noqa: E402


def _time(fn, *args, iters):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))  # compile + first run
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(iters):
        out = fn(*args)
    jax.block_until_ready(out)
    return compile_s, (time.perf_counter() - t0) / iters


def bench_models(resolution, batch, iters):
    channels = sg.channels_from_base(resolution)
    rows = []
    z = jax.random.normal(jax.random.PRNGKey(0), (batch, 512))
    for fused in (True, False):
        G = sg.Generator(img_resolution=resolution, channels=channels, fused_modconv=fused)
        variables = jax.jit(lambda r: sg.init_variables(G, r, z))(jax.random.PRNGKey(1))
        fwd = jax.jit(lambda v, z: G.apply(v, z, noise_mode="const"))
        compile_s, step_s = _time(fwd, variables, z, iters=iters)
        rows.append((f"G forward ({'fused' if fused else 'non-fused'} modconv)", compile_s, step_s))
    D = sg.Discriminator(img_resolution=resolution, channels=channels)
    img = jnp.zeros((batch, resolution, resolution, 3))
    dvars = jax.jit(D.init)(jax.random.PRNGKey(2), img)
    compile_s, step_s = _time(jax.jit(D.apply), dvars, img, iters=iters)
    rows.append(("D forward", compile_s, step_s))
    device = jax.devices()[0]
    print(
        f"StyleGAN2 config-f {resolution} px, batch {batch}, float32, "
        f"{device.platform} ({device.device_kind}), {iters} timed iterations"
    )
    print(f"| {'what':36s} | {'compile s':>9s} | {'ms/batch':>9s} | {'img/s':>8s} |")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 11}|{'-' * 10}|")
    for name, compile_s, step_s in rows:
        print(f"| {name:36s} | {compile_s:9.1f} | {step_s * 1e3:9.1f} | {batch / step_s:8.1f} |")


def bench_train(batch, iters, only=None):

    from configs import stylegan2 as configs
    from stylejax.train import loop
    from stylejax.train import stylegan2 as trainer

    loop.setup_jax()
    settings = {
        "tiny64": dict(resolution=64, channel_base=4096, channel_max=64, z=64, mapping=2),
        "f256": dict(resolution=256, channel_base=32768, channel_max=512, z=512, mapping=8),
    }
    rows = []
    for name, s in settings.items():
        if only and name != only:
            continue
        c = configs.get_config()
        c.batch_size = batch
        c.model.resolution, c.model.channel_base = s["resolution"], s["channel_base"]
        c.model.channel_max, c.model.mapping_layers = s["channel_max"], s["mapping"]
        c.model.z_dim = c.model.w_dim = s["z"]
        task = trainer.make_task(c)
        mesh = loop.make_mesh()
        state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
        sharding = jax.tree_util.tree_map(lambda _: loop.replicated(mesh), state)
        state = jax.device_put(state, sharding)
        res = s["resolution"]
        batch_arr = jax.device_put(
            {"image": jnp.zeros((batch, res, res, 3))}, loop.batch_sharded(mesh)
        )
        t0 = time.perf_counter()
        step = loop.compile_step(task, mesh, sharding).lower(state, batch_arr).compile()
        compile_s = time.perf_counter() - t0

        def timed(step_numbers):
            nonlocal state
            jax.block_until_ready(state)
            t = time.perf_counter()
            for k in step_numbers:
                state, metrics = step(dict(state, step=jnp.asarray(k, jnp.int32)), batch_arr)
            jax.block_until_ready(metrics)
            return (time.perf_counter() - t) / len(step_numbers)

        timed([1])  # warm-up
        plain = timed([1] * iters)
        regs = timed([0] * max(iters // 2, 1))
        cycle = timed(range(16)) if iters >= 4 else (plain * 12 + regs * 4) / 16
        # FLOPs of the regulariser-free step: the same step compiled without regularisers.
        c.train.r1_gamma, c.train.pl_weight = 0.0, 0.0
        plain_task = trainer.make_task(c)
        lowered = jax.jit(plain_task.train_step).lower(state, batch_arr)
        flops = (lowered.compile().cost_analysis() or {}).get("flops", float("nan"))
        rows.append((name, compile_s, plain, regs, cycle, flops))
    device = jax.devices()[0]
    print(
        f"StyleGAN2 train step, global batch {batch}, float32, {jax.device_count()} x "
        f"{device.platform} ({device.device_kind})"
    )
    header = (
        "setting",
        "compile s",
        "no-reg img/s",
        "R1+PL img/s",
        "16-step img/s",
        "GFLOP/step",
        "GFLOP/s",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    for name, compile_s, plain, regs, cycle, flops in rows:
        cells = (
            name,
            f"{compile_s:.1f}",
            f"{batch / plain:.1f}",
            f"{batch / regs:.1f}",
            f"{batch / cycle:.1f}",
            f"{flops / 1e9:.1f}",
            f"{flops / plain / 1e9:.1f}",
        )
        print("| " + " | ".join(c.rjust(len(h)) for c, h in zip(cells, header)) + " |")


def _encoder_settings(configs, trainer, batch, only, mesh):
    """The pSp-family benchmark settings: synthetic64 (the default config with the shipped
    generator) and ffhq_encode (256 → 1024 px, IR-SE50, config-f; random weights). Yields
    (label, model, inference variables, input shape, train_timer(iters) → (compile s,
    s/step, FLOPs per step))."""
    from stylejax.train import loop
    from stylejax.train import psp as psp_train

    for name in ("synthetic64", "ffhq_encode"):
        if only and name != only:
            continue
        c = configs.get_config("" if name == "synthetic64" else name)
        c.batch_size = batch
        shape = psp_train.input_shape(c)
        if name == "synthetic64":
            networks = psp_train.load_networks(c)
        else:
            networks = psp_train.abstract_networks(c, random_weights=True)
        task, model, _ = trainer.make_task(c, shape, mesh, networks, evaluate=False)
        frozen = jax.device_put(networks["frozen"], loop.replicated(mesh))
        state = jax.jit(task.init_state, out_shardings=loop.replicated(mesh))(jax.random.PRNGKey(0))
        variables = psp_train._variables(frozen, state["params"], state["batch_stats"])
        label = f"{name} ({shape[0]}→{networks['G'].img_resolution} px)"

        def train_timer(iters, task=task, state=state, frozen=frozen, shape=shape):
            batch_arr = jax.device_put(
                {"source": jnp.zeros((batch, *shape)), "target": jnp.zeros((batch, *shape[:2], 3))},
                loop.batch_sharded(mesh),
            )
            sharding = jax.tree_util.tree_map(lambda _: loop.replicated(mesh), state)
            t0 = time.perf_counter()
            compiled = loop.compile_step(task, mesh, sharding).lower(state, batch_arr, frozen)
            compiled = compiled.compile()
            compile_s = time.perf_counter() - t0
            flops = (compiled.cost_analysis() or {}).get("flops", float("nan"))
            state, metrics = compiled(state, batch_arr, frozen)  # warm-up
            jax.block_until_ready(metrics)
            t0 = time.perf_counter()
            for _ in range(iters):
                state, metrics = compiled(state, batch_arr, frozen)
            jax.block_until_ready(metrics)
            return compile_s, (time.perf_counter() - t0) / iters, flops

        yield label, model, variables, shape, train_timer


def _print_table(title, header, rows):
    device = jax.devices()[0]
    print(f"{title}, float32, {jax.device_count()} x {device.platform} ({device.device_kind})")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    for cells in rows:
        print("| " + " | ".join(c.rjust(len(h)) for c, h in zip(cells, header)) + " |")


def bench_psp(batch, iters, only=None):
    from configs import psp as configs
    from stylejax.train import loop
    from stylejax.train import psp as trainer

    loop.setup_jax()
    mesh = loop.make_mesh()
    rows = []
    for label, model, variables, shape, train_timer in _encoder_settings(
        configs, trainer, batch, only, mesh
    ):
        infer = jax.jit(
            lambda v, x, m=model: trainer.pool_to(m.apply(v, x, noise_mode="const"), x.shape[1])
        )
        latency = {n: _time(infer, variables, jnp.zeros((n, *shape)), iters=iters) for n in (1, 8)}
        compile_s, step_s, flops = train_timer(iters)
        rows.append(
            (
                label,
                f"{latency[1][1] * 1e3:.1f}",
                f"{latency[8][1] * 1e3:.1f}",
                f"{compile_s:.1f}",
                f"{batch / step_s:.2f}",
                f"{flops / step_s / 1e9:.1f}",
            )
        )
    header = ("setting", "ms batch 1", "ms batch 8", "train compile s", "train img/s", "GFLOP/s")
    _print_table(f"pSp (GradualStyleEncoder); training: global batch {batch}", header, rows)


def bench_restyle(batch, iters, only=None, steps=(1, 2, 3, 5, 10)):
    """ReStyle-pSp inference latency for N refinement steps (batch 1, one compile per N: the
    steps run under lax.scan) and the training step (5 iterations per batch)."""
    from configs import restyle as configs
    from stylejax.models import restyle
    from stylejax.train import loop
    from stylejax.train import restyle as trainer

    loop.setup_jax()
    mesh = loop.make_mesh()
    run = jax.jit(restyle.run_iterations, static_argnums=(0, 3))
    rows = []
    for label, model, variables, shape, train_timer in _encoder_settings(
        configs, trainer, batch, only, mesh
    ):
        x = jnp.zeros((1, *shape))
        latency = {n: _time(run, model, variables, x, n, iters=iters) for n in steps}
        compile_s, step_s, _ = train_timer(iters)
        cells = [label, *(f"{latency[n][1] * 1e3:.1f} ({latency[n][0]:.0f})" for n in steps)]
        rows.append((*cells, f"{compile_s:.1f}", f"{batch / step_s:.2f}"))
    header = ("setting", *(f"N={n} ms" for n in steps), "train compile s", "train img/s")
    title = (
        f"ReStyle-pSp (BackboneEncoder); inference at batch 1 (compile s in brackets); "
        f"training: global batch {batch}, 5 iterations per batch"
    )
    _print_table(title, header, rows)


def bench_sean(resolution, batch, iters):
    from configs import sean as sean_config
    from stylejax.train import sean as train_sean

    config = sean_config.get_config("celebamaskhq" if resolution >= 256 else "")
    config.model.resolution, config.batch_size = resolution, batch
    print(f"SEAN {resolution} px, batch {batch}, {jax.device_count()} device(s)")
    for name, value in train_sean.benchmark(config, iters).items():
        print(f"  {name}: {value:.2f}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("suite", choices=["models", "stylegan2", "psp", "restyle", "sean", "data"])
    parser.add_argument(
        "--only",
        choices=["tiny64", "f256", "synthetic64", "ffhq_encode"],
        help="one setting: stylegan2 tiny64|f256, psp/restyle synthetic64|ffhq_encode",
    )
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument(
        "--steps", default="1,2,3,5,10", help="restyle: refinement step counts to time"
    )
    args = parser.parse_args()
    if args.suite == "models":
        bench_models(args.resolution, args.batch, args.iters)
    elif args.suite == "stylegan2":
        bench_train(args.batch, args.iters, args.only)
    elif args.suite == "psp":
        bench_psp(args.batch, args.iters, args.only)
    elif args.suite == "restyle":
        steps = tuple(int(n) for n in args.steps.split(","))
        bench_restyle(args.batch, args.iters, args.only, steps)
    elif args.suite == "sean":
        bench_sean(args.resolution, args.batch, args.iters)
    else:
        from stylejax.data import benchmark

        benchmark.run_data_benchmark()


if __name__ == "__main__":
    main()
