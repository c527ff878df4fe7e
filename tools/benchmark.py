"""Throughput benchmarks; each prints a table.

python tools/benchmark.py models [--resolution 256] [--batch 8] [--iters 10]
    StyleGAN2 config-f generator forward and discriminator img/s, fused vs non-fused
    modulated convolution, on whatever device JAX finds.
python tools/benchmark.py data
    Input-pipeline images/s (see stylejax/data/benchmark.py).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("suite", choices=["models", "data"])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    if args.suite == "models":
        bench_models(args.resolution, args.batch, args.iters)
    else:
        from stylejax.data import benchmark

        benchmark.run_data_benchmark()


if __name__ == "__main__":
    main()
