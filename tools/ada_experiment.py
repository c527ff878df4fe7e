"""ADA's point on a small data set: the default 32 px StyleGAN2 (configs/stylegan2.py) trained
on the first 1,000 synthetic faces with and without ADA, at the same budget.

  python tools/ada_experiment.py --steps 5000 --log-every 100 --out docs/ada_1000faces
  python tools/ada_experiment.py --images 100 --steps 2500 --log-every 100 --out docs/ada_100faces
  python tools/ada_experiment.py --rendered --resolution 16 --channel-base 1024 \
      --channel-max 256 --r1-gamma 0.0064 --steps 12000 --log-every 250 --fd-every 2000 \
      --out docs/ada_1000faces_16px      # 256 channels at 4 px: D memorises 1,000 faces
  python tools/ada_experiment.py --rendered --resolution 8 --channel-base 1024 \
      --channel-max 256 --r1-gamma 0.0016 --pl-weight 0 --lr 0.0005 --steps 16000 \
      --log-every 250 --fd-every 1000 --out docs/ada_1000faces_8px   # 128 epochs in 70 min

For each run it logs r_t = E[sign(D(real))] over time (without ADA: the D main phase's reals,
computed beside the step from the same D; with ADA: the heuristic the step adapts p with, on
augmented reals, and p), then scores the EMA generator with the trainer's evaluation: the
pixel Fréchet distance (16x16 pixels, tools/sample_quality.py's proxy) of 1,000 samples
against 1,000 test faces, beside the training faces' own distance (the floor), and the final
D's E[sign(D(x))] on the training faces and on unseen test faces (memorisation). Writes
OUT.json (curves and scores) and OUT.png (r_t and p against the step, drawn with PIL).

On a host without tensorflow or clu (the accelerator host), --rendered trains the same step
on faces rendered here instead of read from the TFDS build (examples 0 … N−1 of the train
split, pixel for pixel as the build stores them; TFDS's train[:N] may hold other
examples), in a plain loop without checkpoints, and also scores the pixel FD and D's
E[sign] on training and test faces every --fd-every steps (sample quality and memorisation
over the run; D's signs under the D after that step and the one it started from, since D's
level swings from step to step). Below 16 px the pixel FD takes every pixel:

  python tools/ada_experiment.py --rendered --batch 64 --steps 20000 --fd-every 1000 \
      --out runs/ada_rendered

ADA's speed is scaled to the budget: ada_kimg (thousands of images for p to move by one unit)
defaults to 4 here instead of the official 500, which assumes runs of 25,000 kimg.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from configs import stylegan2 as configs
from stylejax.train import loop
from stylejax.train import stylegan2 as trainer

COLOURS = ((200, 60, 40), (40, 90, 200), (40, 160, 80))  # without ADA, with ADA, p


def make_config(args, ada: bool):
    c = configs.get_config()
    c.data.split = f"train[:{args.images}]"
    c.num_steps = args.steps
    c.log_every = args.log_every
    c.checkpoint_every = args.steps
    c.sample_every = args.steps
    c.seed = args.seed
    if args.batch:
        c.batch_size = args.batch
    c.model.channel_base = args.channel_base
    c.model.channel_max = args.channel_max
    if args.resolution:
        c.model.resolution = args.resolution
        c.data.name = f"synthetic_faces/{args.resolution}"
    if args.r1_gamma is not None:
        c.train.r1_gamma = args.r1_gamma
    if args.pl_weight is not None:
        c.train.pl_weight = args.pl_weight
    if args.lr is not None:
        c.train.g_lr = c.train.d_lr = args.lr
    if ada:
        c.augment.preset = args.preset
        c.augment.ada_target = 0.6
        c.augment.ada_kimg = args.ada_kimg
    return c


def with_plain_signs(task, config):
    """The step plus metric "rt_plain": E[sign(D(real))] of the un-augmented batch under the
    D that the step's D main phase uses (the state's)."""
    _, D = trainer.build_models(config)

    def train_step(state, batch, *frozen):
        logits = D.apply(state["d"], batch["image"])
        state, metrics = task.train_step(state, batch, *frozen)
        return state, {**metrics, "rt_plain": jnp.mean(jnp.sign(logits))}

    return dataclasses.replace(task, train_step=train_step)


def run(args, ada: bool):
    config = make_config(args, ada)
    workdir = Path(args.workdir) / ("ada" if ada else "noaug")
    loop.setup_jax()
    task = with_plain_signs(trainer.make_task(config), config)
    data, tf_iterator = trainer.make_data(config)
    clock = []  # when each step's batch was taken: the run's wall time per step

    def timed(batches):
        for batch in batches:
            clock.append(time.time())
            yield batch

    state, history = loop.run(task, config, workdir, timed(data), tf_iterator)
    seconds = time.time() - clock[0]
    scores = score(config, state, workdir)
    curves = [
        {k: m[k] for k in ("rt_plain", "ada_rt", "augment_p", "d_loss") if k in m}
        | {"step": s, "seconds": round(clock[min(s, len(clock) - 1)] - clock[0], 1)}
        for s, m in history
        if "d_loss" in m
    ]
    return record(args, config, ada, state, seconds, scores, curves)


def record(args, config, ada, state, seconds, scores, curves, **extra) -> dict:
    """A run's entry of OUT.json."""
    return {
        "config": {
            "images": args.images,
            "resolution": config.model.resolution,
            "steps": args.steps,
            "batch": config.batch_size,
            "channel_base": config.model.channel_base,
            "channel_max": config.model.channel_max,
            "r1_gamma": config.train.r1_gamma,
            "pl_weight": config.train.pl_weight,
            "lr": config.train.d_lr,
            "augment": config.augment.preset or "off",
            "ada_kimg": config.augment.ada_kimg if ada else None,
            "seed": args.seed,
            **extra,
        },
        "seconds": round(seconds),
        "final_p": float(state["ada"]["p"]) if ada else None,
        "scores": scores,
        "curves": curves,
    }


def rendered_faces(split: str, n: int, resolution: int) -> np.ndarray:
    """[n, R, R, 3] float32 in [-1, 1]: examples 0 … n−1 of the synthetic faces' `split`,
    rendered in numpy (the TFDS build's pixels for those examples)."""
    from stylejax.data import face_renderer

    faces = [
        face_renderer.render_example(face_renderer.example_factors(0, split, i), resolution)
        for i in range(n)
    ]
    return np.stack([f["image"] for f in faces]).astype(np.float32) / 127.5 - 1.0


def batch_indices(seed: int, n: int, batch: int):
    """Epochs of the indices 0 … n−1, reshuffled each epoch, `batch` at a time."""
    order, queue = np.random.default_rng(seed), np.zeros(0, np.int64)
    while True:
        if len(queue) < batch:
            queue = np.concatenate([queue, order.permutation(n)])
        yield queue[:batch]
        queue = queue[batch:]


class _NoWriter:
    def write_scalars(self, step, scalars):
        pass


def run_rendered(args, ada: bool):
    """run() without tensorflow or clu: rendered faces, a plain loop, the pixel FD of the
    EMA generator every --fd-every steps, and the same scores at the end."""
    from stylejax import metrics

    config = make_config(args, ada)
    loop.setup_jax()
    task = with_plain_signs(trainer.make_task(config), config)
    G, D = trainer.build_models(config)
    res = config.model.resolution
    train = rendered_faces("train", args.images, res)
    test = rendered_faces("test", args.test_images, res)
    pixel_size = min(16, res)  # below 16 px the FD takes every pixel

    def features(images):
        return metrics.pixel_features(images, pixel_size)

    test_features = features(test)
    mesh = loop.make_mesh(axes=config.sharding.mesh)
    rng = jax.random.PRNGKey(config.seed)
    shardings = loop.state_sharding(config, mesh, jax.eval_shape(task.init_state, rng))
    state = jax.jit(task.init_state, out_shardings=shardings)(rng)
    step_fn = loop.compile_step(task, mesh, shardings)
    frozen = () if task.frozen is None else (jax.device_put(task.frozen, loop.replicated(mesh)),)
    sample = jax.jit(lambda v, z, k: G.apply(v, z, noise_mode="random", rngs={"noise": k}))
    d_signs = jax.jit(lambda v, x: jnp.sign(D.apply(v, x)))
    z_eval = jax.random.normal(jax.random.PRNGKey(config.seed + 2), (len(test), config.model.z_dim))

    def in_chunks(fn, xs):
        return np.concatenate([np.asarray(fn(xs[i : i + 100], i)) for i in range(0, len(xs), 100)])

    def pixel_fd(state):
        fakes = in_chunks(lambda z, i: sample(state["g_ema"], z, jax.random.PRNGKey(i)), z_eval)
        return metrics.frechet_distance(features(fakes), test_features)

    def d_sign_scores(state):
        """D's E[sign] on the un-augmented training faces and on unseen test faces: their gap
        is D's memorisation (one D, so one step's snapshot of its swinging level)."""
        return {
            f"d_sign_{name}": float(np.mean(in_chunks(lambda x, _: d_signs(state["d"], x), faces)))
            for name, faces in (("train", train), ("test", test))
        }

    log = loop.MetricsLog(_NoWriter(), args.log_every)
    order = batch_indices(args.seed, len(train), config.batch_size)
    curves = []
    t0 = time.time()
    for step in range(1, config.num_steps + 1):
        batch = loop.global_batch({"image": train[next(order)]}, mesh)
        scored = step % args.fd_every == 0 or step == config.num_steps
        # D's signs also under the D this step starts from (the state is donated to the
        # step): D's level swings from one step to the next.
        before = {f"{k}_step_before": v for k, v in d_sign_scores(state).items()} if scored else {}
        state, step_metrics = step_fn(state, batch, *frozen)
        summary = log.add(step, step_metrics)
        if summary is not None:
            keys = ("rt_plain", "ada_rt", "augment_p", "d_loss")
            entry = {k: summary[k] for k in keys if k in summary}
            entry |= {"step": step, "seconds": round(time.time() - t0, 1)}
            if scored:
                entry |= {"pixel_fd": pixel_fd(state), **d_sign_scores(state), **before}
            curves.append(entry)
            eta = (time.time() - t0) / step * (config.num_steps - step)
            print(
                f"{'ada' if ada else 'noaug'} step {step}/{config.num_steps} "
                f"{json.dumps(entry)} ETA {eta / 60:.1f} min",
                flush=True,
            )
    seconds = time.time() - t0
    scores = {
        "pixel_fd": pixel_fd(state),
        "pixel_fd_floor": metrics.frechet_distance(features(train), test_features),
        **d_sign_scores(state),
    }
    return record(
        args,
        config,
        ada,
        state,
        seconds,
        scores,
        curves,
        rendered=True,
        device=jax.devices()[0].device_kind,
    )


def score(config, state, workdir) -> dict:
    """The trainer's evaluation (pixel FD of 1,000 samples against 1,000 test faces, and the
    training faces' own distance), plus D's memorisation: E[sign(D(x))] on the training
    faces and on as many test faces, un-augmented (a D that has memorised its training set
    calls those real and the unseen test faces less so)."""
    from stylejax.data import pipeline

    scores = dict(trainer.evaluate(config, state, workdir))
    _, D = trainer.build_models(config)
    d_logits = jax.jit(D.apply)
    n = config.eval.num_examples  # 1,000: every training face of the default budget
    for name, split in (("train", config.data.split), ("test", "test")):
        signs = [
            np.sign(np.asarray(d_logits(state["d"], b["image"])))
            for b in pipeline.split_batches(
                config.data.name, split, ("image",), batch_size=100, limit=n
            )
        ]
        scores[f"d_sign_{name}"] = float(np.mean(np.concatenate(signs)))
    return scores


def rescore(args, name, results):
    """Scores a finished run again from its workdir's last checkpoint (the curves stay)."""
    config = make_config(args, name == "ada")
    workdir = Path(args.workdir) / name
    loop.setup_jax()
    abstract = jax.eval_shape(trainer.make_task(config).init_state, jax.random.PRNGKey(0))
    state, _ = loop.restore_checkpoint(workdir, abstract)
    results[name]["scores"] = {k: float(v) for k, v in score(config, state, workdir).items()}


def plot(results, path):
    """r_t (and ADA's p) against the step, ADA's target 0.6 dashed; with --rendered also
    PATH_fd.png, the pixel FD of both runs against the step."""
    series = {
        "r_t  without ADA": [(c["step"], c["rt_plain"]) for c in results["noaug"]["curves"]],
        "r_t  with ADA": [(c["step"], c["ada_rt"]) for c in results["ada"]["curves"]],
        "p  (ADA)": [(c["step"], c["augment_p"]) for c in results["ada"]["curves"]],
    }
    lo = min(0.0, np.floor(min(v for pts in series.values() for _, v in pts) * 5) / 5)
    draw(series, path, np.round(np.arange(lo, 1.01, 0.2), 1), target=0.6)
    fd = {
        f"pixel FD  {label}": [(c["step"], c["pixel_fd"]) for c in r["curves"] if "pixel_fd" in c]
        for label, r in (("without ADA", results["noaug"]), ("with ADA", results["ada"]))
    }
    if all(fd.values()):
        top = max(v for pts in fd.values() for _, v in pts)
        unit = 10 ** np.floor(np.log10(top))  # the axis to the next round value above
        draw(
            fd, path.with_name(path.stem + "_fd.png"), np.linspace(0, np.ceil(top / unit) * unit, 6)
        )


def draw(series, path, ticks, target=None, width=720, height=420):
    """Curves {label: [(step, value)]} against the step on a white canvas (PIL), the value
    axis spanning `ticks`, `target` dashed."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    canvas = ImageDraw.Draw(img)
    left, right, top, bottom = 60, width - 20, 20, height - 60
    steps = max(s for pts in series.values() for s, _ in pts)
    lo, hi = ticks[0], ticks[-1]

    def xy(step, value):
        x = left + (right - left) * step / steps
        y = bottom - (bottom - top) * (value - lo) / (hi - lo)
        return x, min(max(y, top), bottom)

    canvas.rectangle([left, top, right, bottom], outline="black")
    for v in ticks:
        _, y = xy(0, v)
        canvas.line([left - 4, y, left, y], fill="black")
        canvas.text((left - 40, y - 6), f"{v:.3g}", fill="black")
    if target is not None:
        _, y = xy(0, target)
        for x in range(left, right, 8):
            canvas.line([x, y, x + 4, y], fill=(150, 150, 150))
    for k in range(5):
        step = round(steps * k / 4)
        x, _ = xy(step, lo)
        canvas.line([x, bottom, x, bottom + 4], fill="black")
        canvas.text((x - 12, bottom + 8), str(step), fill="black")
    canvas.text(((left + right) // 2 - 15, bottom + 26), "step", fill="black")
    for i, (label, points) in enumerate(series.items()):
        colour = COLOURS[i]
        canvas.line([xy(s, v) for s, v in points], fill=colour, width=2)
        x0 = left + 10 + 220 * i
        canvas.line([x0, height - 14, x0 + 24, height - 14], fill=colour, width=3)
        canvas.text((x0 + 30, height - 20), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main(argv=None):
    logging.set_verbosity(logging.INFO)  # the loop's progress lines
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--images", type=int, default=1000, help="first N training faces")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--ada-kimg", type=float, default=4.0)
    parser.add_argument("--preset", default="bgc")
    parser.add_argument("--seed", type=int, default=0)
    defaults = configs.get_config().model
    parser.add_argument("--channel-base", type=int, default=defaults.channel_base)
    parser.add_argument(
        "--channel-max", type=int, default=defaults.channel_max, help="G's and D's widest layer"
    )
    parser.add_argument(
        "--resolution",
        type=int,
        help="image size (default: the config's 32; with --rendered any power of 2)",
    )
    parser.add_argument("--r1-gamma", type=float, help="R1 weight (default: the config's)")
    parser.add_argument(
        "--pl-weight", type=float, help="path length weight (default: the config's; 0: off)"
    )
    parser.add_argument(
        "--lr", type=float, help="G's and D's learning rate (default: the config's)"
    )
    parser.add_argument("--batch", type=int, help="batch size (default: the config's)")
    parser.add_argument(
        "--rendered",
        action="store_true",
        help="faces rendered here and a plain loop: no tensorflow or clu needed",
    )
    parser.add_argument("--fd-every", type=int, default=1000, help="--rendered: FD curve")
    parser.add_argument("--test-images", type=int, default=1000, help="--rendered: FD's")
    parser.add_argument("--workdir", default="runs/ada_experiment")
    parser.add_argument("--out", default="docs/ada", help="writes OUT.json and OUT.png")
    parser.add_argument("--only", choices=("noaug", "ada"), help="run one of the two")
    parser.add_argument(
        "--rescore", action="store_true", help="score the finished runs in --workdir again"
    )
    args = parser.parse_args(argv)
    if args.resolution and not args.rendered:
        from stylejax.data import synthetic_faces

        built = [c.resolution for c in synthetic_faces.SyntheticFaces.BUILDER_CONFIGS]
        if args.resolution not in built:
            parser.error(
                f"--resolution {args.resolution}: the synthetic_faces build has "
                f"{', '.join(map(str, built))} px; add --rendered for other sizes"
            )
    out = Path(args.out)
    results_path = out.with_suffix(".json")
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in ("noaug", "ada"):
        if args.only in (None, name):
            if args.rescore:
                rescore(args, name, results)
            elif args.rendered:
                results[name] = run_rendered(args, ada=name == "ada")
            else:
                results[name] = run(args, ada=name == "ada")
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1) + "\n")
            print(name, json.dumps({k: v for k, v in results[name].items() if k != "curves"}))
    if {"noaug", "ada"} <= set(results):
        plot(results, out.with_suffix(".png"))
        for name, r in results.items():
            last = r["curves"][-1]
            rt = last.get("ada_rt", last["rt_plain"])
            print(
                f"{name}: r_t {rt:.3f} at step {last['step']}, pixel FD "
                f"{r['scores']['pixel_fd']:.2f} (floor {r['scores']['pixel_fd_floor']:.2f})"
            )


if __name__ == "__main__":
    main()
