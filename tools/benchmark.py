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
python tools/benchmark.py sidebyside --ada DIR [--torch-python PY] [--configs synthetic64,wide64]
    stylejax against NVIDIA's stylegan2-ada-pytorch (a local checkout DIR; torch in PY's
    environment) at the same architecture and batch, runs alternating in one invocation:
    G forward and the G+D training step (phases Gmain and Dmain, no regularisers, no style
    mixing) in img/s, stylejax with its CPU convolution route and with XLA's own convolutions
    (`stylejax.nn.conv.route`), and the ratio to PyTorch. `--device cuda --dtypes
    float32,bfloat16 --configs f256` is the accelerator run (tools/device_benchmark.sh).
python tools/benchmark.py methods [--methods stylegan2,psp,...] [--method-steps 48]
    Each method's default training (stylegan2: the synthetic64_gan variant, with R1) run by the
    main entry point for --method-steps steps under each convolution route (--routes xla,cpu);
    prints the images/s of the last third of the steps (compile and warm-up excluded), as the
    training log reports it.
python tools/benchmark.py convs
    Forward, input-gradient and weight-gradient times of each convolution form the models
    use, XLA's convolution against the CPU route (stylejax/nn/conv.py).
python tools/benchmark.py data
    Input-pipeline images/s (see stylejax/data/benchmark.py).
"""

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from stylejax.models import stylegan2 as sg


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


# StyleGAN2 benchmark settings; synthetic64, wide64 and f256 are also the side-by-side ones
# (handed to tools/ada_torch_worker.py as JSON).
STYLEGAN2_SETTINGS = {
    "tiny64": dict(res=64, channel_base=4096, channel_max=64, z_dim=64, mapping=2, batch=8),
    "synthetic64": dict(res=64, channel_base=2048, channel_max=32, z_dim=64, mapping=2, batch=8),
    "wide64": dict(res=64, channel_base=16384, channel_max=512, z_dim=512, mapping=8, batch=4),
    "f256": dict(res=256, channel_base=32768, channel_max=512, z_dim=512, mapping=8, batch=32),
}


def _stylegan2_config(name, batch):
    """The default StyleGAN2 config with one benchmark setting's architecture and batch."""
    from configs import stylegan2 as configs

    s = STYLEGAN2_SETTINGS[name]
    c = configs.get_config()
    c.batch_size = batch
    c.model.resolution, c.model.channel_base = s["res"], s["channel_base"]
    c.model.channel_max, c.model.mapping_layers = s["channel_max"], s["mapping"]
    c.model.z_dim = c.model.w_dim = s["z_dim"]
    return c


def bench_train(batch, iters, only=None):
    from stylejax.train import loop
    from stylejax.train import stylegan2 as trainer

    loop.setup_jax()
    rows = []
    for name in ("tiny64", "f256"):
        if only and name != only:
            continue
        c = _stylegan2_config(name, batch)
        res = c.model.resolution
        task = trainer.make_task(c)
        mesh = loop.make_mesh()
        state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
        sharding = loop.state_sharding(c, mesh, state)
        state = jax.device_put(state, sharding)
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
    from stylejax.train import psp_family as family

    for name in ("synthetic64", "ffhq_encode"):
        if only and name != only:
            continue
        c = configs.get_config("" if name == "synthetic64" else name)
        c.batch_size = batch
        shape = family.input_shape(c)
        weights = "load" if name == "synthetic64" else "random"
        task = trainer.make_task(c, mesh, frozen=weights)
        model, _, networks = trainer.build(c, frozen="abstract")  # the module; no weights
        frozen = task.frozen
        abstract = jax.eval_shape(task.init_state, jax.random.PRNGKey(0))
        state = jax.jit(task.init_state, out_shardings=loop.state_sharding(c, mesh, abstract))(
            jax.random.PRNGKey(0)
        )
        variables = family.encoder_variables(frozen, state["params"], state["batch_stats"])
        label = f"{name} ({shape[0]}→{networks['G'].img_resolution} px)"

        def train_timer(iters, task=task, state=state, frozen=frozen, shape=shape):
            batch_arr = jax.device_put(
                {"source": jnp.zeros((batch, *shape)), "target": jnp.zeros((batch, *shape[:2], 3))},
                loop.batch_sharded(mesh),
            )
            sharding = loop.state_sharding(c, mesh, state)
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
    """Inference latency of G(mask, style image) at batch 1 and `batch`, and the train
    step's images/s on every device (random weights and data; no VGG loss)."""
    import numpy as np

    from configs import sean as sean_config
    from stylejax.train import loop
    from stylejax.train import sean as train_sean

    config = sean_config.get_config("celebamaskhq" if resolution >= 256 else "")
    config.model.resolution, config.batch_size = resolution, batch
    config.train.lambda_vgg = 0.0
    print(f"SEAN {resolution} px, batch {batch}, {jax.device_count()} device(s)")
    r, label_nc = resolution, config.model.label_nc
    task = train_sean.make_task(config)
    G, _ = train_sean.build_models(config)
    mesh = loop.make_mesh()
    abstract = jax.eval_shape(task.init_state, jax.random.PRNGKey(0))
    sharding = loop.state_sharding(config, mesh, abstract)
    t0 = time.perf_counter()
    state = jax.jit(task.init_state, out_shardings=sharding)(jax.random.PRNGKey(0))
    jax.block_until_ready(state)
    result = {"init_compile_s": time.perf_counter() - t0}
    rng = np.random.default_rng(0)

    def random_batch(n):
        return {
            "image": rng.uniform(-1, 1, (n, r, r, 3)).astype(np.float32),
            "segmentation": rng.integers(0, label_nc, (n, r, r)).astype(np.int32),
        }

    noise = jax.random.PRNGKey(1)
    infer = jax.jit(
        lambda v, b: train_sean.reconstruct(G, v, b["segmentation"], b["image"], label_nc, noise)
    )
    for n in (1, batch):
        b = random_batch(n)
        jax.block_until_ready(infer(state["g"], b))
        t0 = time.perf_counter()
        for _ in range(iters):
            out = infer(state["g"], b)
        jax.block_until_ready(out)
        result[f"latency_ms_batch{n}"] = (time.perf_counter() - t0) / iters * 1e3
    step = loop.compile_step(task, mesh, sharding)
    b = loop.global_batch(random_batch(batch), mesh)
    t0 = time.perf_counter()
    state, metrics = step(state, b)
    jax.block_until_ready(metrics)
    result["step_compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(iters):
        state, metrics = step(state, b)
    jax.block_until_ready(metrics)
    result["train_images_per_s"] = batch * iters / (time.perf_counter() - t0)
    for name, value in result.items():
        print(f"  {name}: {value:.2f}")


def bench_convs(iters):
    """Each convolution form of the models, XLA's convolution against the CPU route."""
    from stylejax.nn import conv, ops

    taps = ops.fir_filter()
    forms = {  # name → function of (x, 3×3 kernel)
        "3×3": lambda x, k: ops.conv2d_resample(x, k, taps),
        "3×3 up (transposed)": lambda x, k: ops.conv2d_resample(x, k, taps, up=2),
        "3×3 down (stride 2)": lambda x, k: ops.conv2d_resample(x, k, taps, down=2),
        "1×1": lambda x, k: ops.conv2d_resample(x, k[:1, :1], taps),
        "3×3 grouped (fused modconv)": lambda x, k: ops.conv2d(
            x.reshape(1, *x.shape[1:3], -1),
            jnp.tile(k, (1, 1, 1, x.shape[0])),
            padding="SAME",
            groups=x.shape[0],
        ),
    }
    header = ("form", "shape N×H×W×C", "route", "forward ms", "input grad ms", "weight grad ms")
    rows = []
    for n, size, ch in ((8, 32, 32), (4, 32, 512)):
        x = jax.random.normal(jax.random.PRNGKey(0), (n, size, size, ch))
        k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, ch, ch)) * 0.05
        for name, fn in forms.items():
            for route_name in ("xla", "cpu"):
                with conv.route(route_name):
                    y = jax.eval_shape(fn, x, k)
                    fwd = jax.jit(fn)
                    dx = jax.jit(lambda x, k, dy: jax.vjp(lambda x: fn(x, k), x)[1](dy))
                    dk = jax.jit(lambda x, k, dy: jax.vjp(lambda k: fn(x, k), k)[1](dy))
                    dy = jnp.ones(y.shape, y.dtype)
                    times = [
                        _time(f, *a, iters=iters)[1]
                        for f, a in ((fwd, (x, k)), (dx, (x, k, dy)), (dk, (x, k, dy)))
                    ]
                rows.append(
                    (
                        name,
                        f"{n}×{size}×{size}×{ch}",
                        route_name,
                        *(f"{1e3 * t:.1f}" for t in times),
                    )
                )
    _print_table("Convolution forms", header, rows)


# Dense peaks of one H200 (NVIDIA's datasheet): bf16 tensor cores, and TF32 tensor cores,
# which XLA uses for float32 matmuls and convolutions at the default precision.
PEAK_TFLOPS = {"bfloat16": 989.0, "float32": 494.0}


class TorchWorker:
    """tools/ada_torch_worker.py in a subprocess: one command per line, one answer per line."""

    def __init__(self, python, ada, setting, device):
        worker = Path(__file__).with_name("ada_torch_worker.py")
        cmd = [python, str(worker), "--ada", ada, "--setting", json.dumps(setting)]
        self.proc = subprocess.Popen(
            cmd + ["--device", device], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.info = json.loads(self._answer("READY"))

    def _answer(self, tag):
        line = self.proc.stdout.readline().strip()
        if not line.startswith(tag + " "):
            self.proc.kill()
            raise RuntimeError(f"ada_torch_worker.py: expected {tag}, got {line or 'EOF'!r}")
        return line[len(tag) + 1 :]

    def time(self, command, iters):
        self.proc.stdin.write(f"{command} {iters}\n")
        self.proc.stdin.flush()
        return float(self._answer("RESULT"))

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def _jax_side(name, batch, dtype, fused, route_name):
    """stylejax's G forward and training step (no regularisers, no style mixing) for one
    side-by-side setting, compiled under a convolution route (None: the backend's default).
    Returns ({measurement: timer
    (iters) → seconds per call}, {measurement: FLOPs per call})."""
    from stylejax.nn import conv
    from stylejax.train import loop
    from stylejax.train import stylegan2 as trainer

    c = _stylegan2_config(name, batch)
    res, z_dim = c.model.resolution, c.model.z_dim
    c.model.fused_modconv, c.model.dtype = fused, dtype
    c.train.r1_gamma = c.train.pl_weight = c.train.style_mixing_prob = 0.0
    c.train.ema_rampup = None
    mesh = loop.make_mesh(jax.devices()[:1])
    with conv.route(route_name) if route_name else contextlib.nullcontext():
        task = trainer.make_task(c)
        G, _ = trainer.build_models(c)
        state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
        real = jnp.zeros((batch, res, res, 3))
        sharding = loop.state_sharding(c, mesh, state)
        step = loop.compile_step(task, mesh, sharding).lower(state, {"image": real}).compile()
        z = jax.random.normal(jax.random.PRNGKey(1), (batch, z_dim))
        forward = jax.jit(lambda v, z: G.apply(v, z, noise_mode="const")).lower(state["g"], z)
        forward = forward.compile()
    flops = {
        "train": (step.cost_analysis() or {}).get("flops", float("nan")),
        "gforward": (forward.cost_analysis() or {}).get("flops", float("nan")),
    }

    def train(iters):
        nonlocal state
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        for _ in range(iters):
            state, metrics = step(state, {"image": real})
        jax.block_until_ready(metrics)
        return (time.perf_counter() - t0) / iters

    def gforward(iters):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = forward(state["g"], z)
        jax.block_until_ready(out)
        return (time.perf_counter() - t0) / iters

    train(1), gforward(1)  # warm-up
    return {"train": train, "gforward": gforward}, flops


def bench_sidebyside(args):
    from stylejax.train import loop

    loop.setup_jax()
    if not (Path(args.ada) / "training" / "networks.py").is_file():
        raise SystemExit(f"--ada {args.ada}: not a stylegan2-ada-pytorch checkout")
    device = jax.devices()[0]
    print(
        f"side by side: stylejax (jax {jax.__version__}, {device.platform} {device.device_kind}) "
        f"vs stylegan2-ada-pytorch ({args.ada}); {args.rounds} alternating rounds of "
        f"{args.iters} timed calls each, median img/s (min–max)"
    )
    for name in args.configs.split(","):
        s = STYLEGAN2_SETTINGS[name]
        batch = args.sidebyside_batch or s["batch"]
        torch = TorchWorker(args.torch_python, args.ada, dict(s, batch=batch), args.device)
        print(
            f"\n{name}: {s['res']} px, channel_base {s['channel_base']}, channel_max "
            f"{s['channel_max']}, z/w {s['z_dim']}, {s['mapping']} mapping layers, batch {batch}; "
            f"torch {torch.info.get('torch')} ({torch.info.get('threads')} threads), "
            f"G {torch.info.get('g_params'):,} / D {torch.info.get('d_params'):,} parameters"
        )
        sides = {}  # column → {measurement: timer}
        flops = {}
        for dtype in args.dtypes.split(","):
            for fused in (False, True):
                routes = ("cpu", "xla") if args.xla_route and device.platform == "cpu" else (None,)
                for route_name in routes:
                    label = f"stylejax {dtype} {'fused' if fused else 'non-fused'}"
                    label += f", {route_name} route" if route_name else ""
                    sides[label], flops[label] = _jax_side(name, batch, dtype, fused, route_name)
        torch_cols = {
            "PyTorch (official)": {
                "train": lambda n: torch.time("train", n),
                "gforward": lambda n: torch.time("gforward", n),
            },
            "PyTorch non-fused G": {"gforward": lambda n: torch.time("gforward_nonfused", n)},
        }
        columns = {**torch_cols, **sides}
        samples = {(col, m): [] for col, timers in columns.items() for m in timers}
        for _ in range(args.rounds):
            for col, timers in columns.items():
                for m, timer in timers.items():
                    iters = args.iters if m == "train" else 2 * args.iters
                    samples[col, m].append(batch / timer(iters))
        torch.close()
        _print_sidebyside(samples, flops, batch, device.platform)


def _print_sidebyside(samples, flops, batch, platform):
    header = ("measurement", "implementation", "img/s", "min–max", "× PyTorch")
    if platform != "cpu":
        header += ("TFLOP/s", "% of peak")
    rows = []
    for m, title in (("gforward", "G forward"), ("train", "G+D training step")):
        base = statistics.median(samples["PyTorch (official)", m])
        for (col, meas), values in samples.items():
            if meas != m:
                continue
            med = statistics.median(values)
            cells = (title, col, f"{med:.3g}", f"{min(values):.3g}–{max(values):.3g}")
            cells += (f"{med / base:.2f}",)
            if platform != "cpu":
                f = flops.get(col, {}).get(m)
                dtype = "bfloat16" if "bfloat16" in col else "float32"
                tflops = f * med / batch / 1e12 if f else float("nan")
                cells += (f"{tflops:.1f}", f"{100 * tflops / PEAK_TFLOPS[dtype]:.1f}")
            rows.append(cells)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


METHOD_CONFIGS = {
    "stylegan2": "configs/stylegan2.py:synthetic64_gan",
    "psp": "configs/psp.py",
    "restyle": "configs/restyle.py",
    "e4e": "configs/e4e.py",
    "sean": "configs/sean.py",
    "l2m": "configs/l2m.py",
}


def _method_rate(config, route_name, steps):
    """img/s of the last logging interval (a third of the steps) of a main-job run; the run
    is stopped there, before its evaluation."""
    window = steps // 3
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [sys.executable, "-m", "stylejax.main", f"--config={config}", f"--workdir={workdir}"]
        cmd += [f"--config.num_steps={steps}", f"--config.log_every={window}"]
        cmd += [f"--config.checkpoint_every={10 * steps}"]
        env = dict(os.environ, STYLEJAX_CONV_ROUTE=route_name)
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        pattern = re.compile(rf"step {steps}/{steps}: .*, ([0-9.]+) img/s")
        tail = []
        for line in proc.stderr:
            tail = (tail + [line])[-20:]
            found = pattern.search(line)
            if found:
                proc.kill()
                proc.wait()
                return float(found.group(1))
        proc.wait()
        raise RuntimeError(
            f"{config} ({route_name} route) ended without step {steps}:\n" + "".join(tail)
        )


def bench_methods(methods, routes, steps):
    rows = []
    for method in methods:
        rates = {r: _method_rate(METHOD_CONFIGS[method], r, steps) for r in routes}
        cells = [method, METHOD_CONFIGS[method]] + [f"{rates[r]:.2f}" for r in routes]
        if len(routes) == 2:
            cells.append(f"{rates[routes[1]] / rates[routes[0]]:.2f}")
        rows.append(cells)
        print(" | ".join(cells), flush=True)
    header = ("method", "config", *(f"{r} route img/s" for r in routes))
    header += ("speed-up",) if len(routes) == 2 else ()
    _print_table(
        f"Training img/s by convolution route, steps {2 * steps // 3}–{steps}", header, rows
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "suite",
        choices=[
            "models",
            "stylegan2",
            "psp",
            "restyle",
            "sean",
            "methods",
            "sidebyside",
            "convs",
            "data",
        ],
    )
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
    parser.add_argument("--ada", help="sidebyside: a stylegan2-ada-pytorch checkout")
    parser.add_argument(
        "--torch-python", default=sys.executable, help="sidebyside: a Python with torch"
    )
    parser.add_argument("--configs", default="synthetic64,wide64", help="sidebyside settings")
    parser.add_argument("--dtypes", default="float32", help="sidebyside: stylejax dtypes")
    parser.add_argument("--device", default="cpu", help="sidebyside: torch device")
    parser.add_argument("--rounds", type=int, default=3, help="sidebyside: alternations")
    parser.add_argument(
        "--sidebyside-batch", type=int, help="sidebyside: batch (default: the setting's)"
    )
    parser.add_argument(
        "--no-xla-route",
        dest="xla_route",
        action="store_false",
        help="sidebyside: skip the XLA-convolution columns on the CPU",
    )
    parser.add_argument("--methods", default=",".join(METHOD_CONFIGS), help="methods suite")
    parser.add_argument("--routes", default="xla,cpu", help="methods suite: routes to compare")
    parser.add_argument("--method-steps", type=int, default=48, help="methods: steps per run")
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
    elif args.suite == "sidebyside":
        if not args.ada:
            parser.error("sidebyside needs --ada DIR (a stylegan2-ada-pytorch checkout)")
        bench_sidebyside(args)
    elif args.suite == "methods":
        bench_methods(args.methods.split(","), args.routes.split(","), args.method_steps)
    elif args.suite == "convs":
        bench_convs(args.iters)
    else:
        from stylejax.data import benchmark

        benchmark.run_data_benchmark()


if __name__ == "__main__":
    main()
