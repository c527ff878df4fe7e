"""Big-batch training of the renderer-taught StyleGAN2 (configs/stylegan2.py:synthetic64's
objective) on one accelerator host, for a wall-clock budget.

  # on the accelerator host (jax, flax, optax, orbax, ml_collections; no tensorflow or clu):
  python tools/train_renderer_device.py train --minutes 8 --batch 128 --out OUT \
      --init runs/s64/model   # optional: a CPU run's export (configs/stylegan2.py:synthetic64)
  # here: the run's weights as a model folder (stylejax.model_format), then score it
  python tools/train_renderer_device.py pack OUT --model-dir runs/synthetic64_device
  python tools/sample_quality.py runs/synthetic64_device --n 1000 --ground-truth

The renderer is numpy, about 80 faces/s per core, far below what an accelerator trains on.
So `train` renders in worker processes, keeps the last --buffer renders on the device and
draws every batch from them: the device trains at its own pace and each render is seen
about steps × batch / rendered times (printed at the end), while fresh renders keep
replacing the oldest. The step is the trainer's own (stylegan2.renderer_step: the same loss,
feature weighting, Adam, mapping lr scale, EMA); the cosine lr decay is sized to the budget:
the step count is fixed from the speed measured over the first --calibrate seconds and the
step compiled again for it. Every --export-every seconds and at the end it writes
OUT/g_ema.msgpack (the EMA generator's variables) and OUT/run.json (the config overrides,
the step, the curves: training PSNR and the EMA generator's PSNR on 256 fresh renders of
its own held-out seed), so a run cut short still leaves its last weights. `pack` turns
them into a model folder the tools load, as the trainer's export would.
"""

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylejax.data import factor_latents  # noqa: E402
from stylejax.data import labels as labels_lib  # noqa: E402
from stylejax.metrics import psnr  # noqa: E402
from stylejax.train import stylegan2  # noqa: E402

HELD_OUT_SEED = 999_983  # the fresh renders the EMA generator is scored on
HELD_OUT = 256


def make_config(args):
    from configs import stylegan2 as configs

    config = configs.get_config(args.variant)
    config.batch_size = args.batch
    config.train.g_lr = args.lr
    if args.feature_weight is not None:
        config.train.feature_weight = args.feature_weight
    config.seed = args.seed
    return config


def render_chunk(job):
    """(z, uint8 images, feature mask) of `n` fresh faces drawn from (seed, index)."""
    seed, index, n, z_dim, res = job
    rng = np.random.default_rng([seed, index])
    z = rng.standard_normal((n, z_dim)).astype(np.float32)
    image, labels = factor_latents.render_batch(z, res, with_labels=True)
    image = np.round((image + 1.0) * 127.5).astype(np.uint8)  # the renders are uint8
    return z, image, labels_lib.feature_mask(labels)


class Renderers:
    """Worker processes rendering chunks of fresh faces, --workers × 2 jobs in flight."""

    def __init__(self, config, workers, chunk):
        # The workers only render (numpy) and map z to factors (a small jax function): on
        # the CPU, so that a dozen processes do not each claim the accelerator's memory.
        saved = {k: os.environ.get(k) for k in ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES")}
        os.environ.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
        try:
            self.pool = multiprocessing.get_context("spawn").Pool(workers)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v
        self.job = (config.seed, config.model.z_dim, config.model.resolution)
        self.chunk, self.next_index, self.pending = chunk, 0, []
        for _ in range(2 * workers):
            self._submit()

    def _submit(self):
        seed, z_dim, res = self.job
        job = (seed, self.next_index, self.chunk, z_dim, res)
        self.pending.append(self.pool.apply_async(render_chunk, (job,)))
        self.next_index += 1

    def ready(self, wait=False):
        """The finished chunks (at least one if wait), each replaced by a new job."""
        done = []
        while self.pending and (self.pending[0].ready() or (wait and not done)):
            done.append(self.pending.pop(0).get())
            self._submit()
        return done

    def close(self):
        self.pool.terminate()


def held_out(config):
    rng = np.random.default_rng(HELD_OUT_SEED)
    z = rng.standard_normal((HELD_OUT, config.model.z_dim)).astype(np.float32)
    return z, factor_latents.render_batch(z, config.model.resolution)


def train(args):
    config = make_config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = stylegan2.make_task(config, frozen="random")
    G, _ = stylegan2.build_models(config)
    res, z_dim, fw = config.model.resolution, config.model.z_dim, config.train.feature_weight
    buffer = {
        "z": jnp.zeros((args.buffer, z_dim), jnp.float32),
        "image": jnp.zeros((args.buffer, res, res, 3), jnp.uint8),
        "feature": jnp.zeros((args.buffer, res, res, 1), bool),
    }

    def insert(buffer, chunk, position):
        return {
            k: jax.lax.dynamic_update_slice_in_dim(buffer[k], chunk[k], position, 0) for k in buffer
        }

    insert = jax.jit(insert, donate_argnums=0)

    def compile_steps(num_steps):
        config.num_steps = num_steps
        train_step = task.train_step  # reads config.num_steps (the lr decay) when traced

        def steps(state, buffer, filled, key):
            def one(state, key):
                index = jax.random.randint(key, (config.batch_size,), 0, filled)
                image = buffer["image"][index].astype(jnp.float32) / 127.5 - 1.0
                weight = 1.0 + (fw - 1.0) * buffer["feature"][index].astype(jnp.float32)
                batch = {"z": buffer["z"][index], "image": image, "weight": weight}
                return train_step(state, batch)

            state, metrics = jax.lax.scan(one, state, jax.random.split(key, args.scan))
            return state, jax.tree_util.tree_map(jnp.mean, metrics)

        return jax.jit(steps, donate_argnums=0)

    z_test, image_test = held_out(config)

    @jax.jit
    def psnr_of(g_ema, z, image):
        return jnp.mean(psnr(G.apply(g_ema, z, noise_mode="const"), image))

    def ema_psnr(g_ema):
        return psnr_of(g_ema, z_test, image_test)

    state = jax.jit(task.init_state)(jax.random.PRNGKey(config.seed))
    if args.init:
        from stylejax import model_format

        _, init_vars = model_format.load_pretrained(args.init)
        init_vars = jax.tree_util.tree_map(jnp.asarray, init_vars)
        state = {**state, "g": init_vars, "g_ema": jax.tree_util.tree_map(jnp.copy, init_vars)}
        print(f"started from {args.init}: EMA PSNR {float(ema_psnr(init_vars)):.2f} dB", flush=True)

    t_start = time.perf_counter()
    budget = args.minutes * 60
    renderers = Renderers(config, args.workers, args.chunk)
    rendered = 0

    def take_renders(wait=False):
        nonlocal buffer, rendered
        for z, image, feature in renderers.ready(wait):
            position = rendered % args.buffer  # the buffer is a multiple of the chunk
            chunk = {"z": z, "image": image, "feature": feature}
            buffer = insert(buffer, chunk, position)
            rendered += len(z)

    while rendered < args.min_fill:
        take_renders(wait=True)
    print(
        f"buffer holds {rendered} renders after {time.perf_counter() - t_start:.0f} s", flush=True
    )

    num_steps = args.guess_steps
    steps_fn = compile_steps(num_steps)
    step, calibrated, curve, last_export = 0, False, [], time.perf_counter()
    key = jax.random.PRNGKey(config.seed + 7)
    t_train = None

    def export(final=False):
        g_ema = jax.device_get(state["g_ema"])
        tmp = out / "g_ema.msgpack.tmp"
        tmp.write_bytes(flax.serialization.msgpack_serialize(g_ema))
        os.replace(tmp, out / "g_ema.msgpack")
        run = {
            "variant": args.variant,
            "overrides": {
                "batch_size": config.batch_size,
                "num_steps": num_steps,
                "g_lr": args.lr,
                "feature_weight": config.train.feature_weight,
            },
            "init": args.init,
            "step": step,
            "final": final,
            "rendered": rendered,
            "seconds": time.perf_counter() - t_start,
            "device": str(jax.devices()[0].device_kind),
            "curve": curve,
        }
        (out / "run.json").write_text(json.dumps(run, indent=1))

    while step < num_steps:
        key, sub = jax.random.split(key)
        filled = min(rendered, args.buffer)
        state, metrics = steps_fn(state, buffer, jnp.int32(filled), sub)
        step += args.scan
        take_renders()
        if t_train is None:  # the first call compiled
            jax.block_until_ready(state)
            t_train, step_at = time.perf_counter(), step
            print(f"compiled; training from {t_train - t_start:.0f} s", flush=True)
        now = time.perf_counter()
        if not calibrated and now - t_train > args.calibrate:
            jax.block_until_ready(state)
            now = time.perf_counter()
            rate = (step - step_at) / (now - t_train)  # steps/s
            left = budget - (now - t_start) - args.reserve
            fits = step + max(int(rate * left) // args.scan, 1) * args.scan
            calibrated = True
            print(f"{rate:.1f} steps/s: {fits} steps in the budget", flush=True)
            if abs(fits - num_steps) > 0.15 * num_steps:  # else not worth a compile
                num_steps = fits
                steps_fn = compile_steps(num_steps)
        if step % args.log_every == 0 or step >= num_steps:
            m = {k: float(v) for k, v in jax.device_get(metrics).items()}
            ema = float(ema_psnr(state["g_ema"]))
            elapsed = time.perf_counter() - t_start
            curve.append({"step": step, "seconds": round(elapsed, 1), "ema_psnr": ema, **m})
            eta = (num_steps - step) / max(step - step_at, 1) * (time.perf_counter() - t_train)
            print(
                f"step {step}/{num_steps}: psnr {m['psnr']:.2f}, EMA held-out {ema:.2f} dB, "
                f"lr × {m['lr_factor']:.3f}, rendered {rendered}, {elapsed:.0f} s, "
                f"ETA {eta:.0f} s",
                flush=True,
            )
        if step < num_steps and time.perf_counter() - t_start > budget:
            print(f"out of time at step {step} of {num_steps}", flush=True)
            break
        if time.perf_counter() - last_export > args.export_every:
            export()
            last_export = time.perf_counter()
    export(final=True)  # first: closing the pool can take long with jobs in flight
    seen = step * config.batch_size
    print(f"done: {step} steps, {seen} faces seen, {rendered} rendered ({seen / rendered:.1f}×)")
    renderers.close()


def pack(args):
    """OUT/g_ema.msgpack + run.json → a model folder, as stylegan2.export writes it."""
    run = json.loads((Path(args.run) / "run.json").read_text())
    g_ema = flax.serialization.msgpack_restore((Path(args.run) / "g_ema.msgpack").read_bytes())
    from configs import stylegan2 as configs

    config = configs.get_config(run["variant"])
    config.variant = run["variant"]
    for k, v in run["overrides"].items():
        (config.train if k in ("g_lr", "feature_weight") else config)[k] = v
    state = {"g_ema": g_ema, "step": np.int32(run["step"])}
    meta = stylegan2.export(config, state, args.model_dir)
    print(f"wrote {args.model_dir}: {meta['source']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train for a wall-clock budget")
    t.add_argument("--out", required=True)
    t.add_argument("--variant", default="synthetic64")
    t.add_argument("--minutes", type=float, default=7.0, help="the whole run's budget")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=0.005)
    t.add_argument("--feature-weight", type=float, help="default: the variant's")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init", default="", help="a model folder to start G and its EMA from")
    t.add_argument("--workers", type=int, default=max(os.cpu_count() - 2, 1))
    t.add_argument("--chunk", type=int, default=32, help="faces per render job")
    t.add_argument("--buffer", type=int, default=65536, help="renders kept on the device")
    t.add_argument("--min-fill", type=int, default=4096, help="renders before training")
    t.add_argument("--scan", type=int, default=10, help="steps per device call")
    t.add_argument("--guess-steps", type=int, default=20000, help="before calibration")
    t.add_argument("--calibrate", type=float, default=45.0, help="seconds of timing")
    t.add_argument("--reserve", type=float, default=25.0, help="seconds kept for the end")
    t.add_argument("--log-every", type=int, default=500)
    t.add_argument("--export-every", type=float, default=90.0)
    p = sub.add_parser("pack", help="a run's weights as a model folder")
    p.add_argument("run", help="the train command's --out")
    p.add_argument("--model-dir", required=True)
    args = parser.parse_args()
    if args.command == "train":
        if args.buffer % args.chunk:
            parser.error(f"--buffer {args.buffer} must be a multiple of --chunk {args.chunk}")
        train(args)
    else:
        pack(args)


if __name__ == "__main__":
    main()
