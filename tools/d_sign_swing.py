"""How far D's level swings from one step to the next, in stylejax and (with --ada DIR) in
NVIDIA's stylegan2-ada-pytorch at the same settings on the same faces: both train the same
StyleGAN2 without augmentation on the first 1,000 rendered synthetic faces for --steps
steps, then E[sign(D(x))] over all training faces is taken under each of the next
--consecutive discriminators. ADA's r_t is the mean of such signs over a window of steps, so
it can reach 1 only when the training faces' margin exceeds these swings.

  python tools/d_sign_swing.py --ada ~/stylegan2-ada-pytorch --lr 0.0005

Settings (tools/ada_experiment.py's 8 px pair): 8 px, 256 / 128 channels at 4 / 8 px, z and
w 64, a 2-layer mapping, batch 8, γ = 0.0002 · 8² / 8 (the official `auto` rule), no path
length, style mixing 0.9, Adam β (0, 0.99) at --lr with the official lazy-regularisation
factors (G 4/5, D 16/17), mbstd groups of 4; D's signs are taken in chunks of 100. DIR is a
local checkout of https://github.com/NVlabs/stylegan2-ada-pytorch, put on sys.path at run
time (nothing from it is copied here); torch runs on the CPU with --threads threads.
Prints one row per step and a summary (mean, range, mean change between consecutive steps,
and the in-step r_t over the last 250 steps).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

RES, IMAGES, CHUNK = 8, 1000, 100


def settings(args):
    return argparse.Namespace(
        images=IMAGES,
        steps=args.steps + args.consecutive,
        log_every=250,
        seed=args.seed,
        batch=8,
        channel_base=1024,
        channel_max=256,
        resolution=RES,
        r1_gamma=0.0002 * RES**2 / 8,
        pl_weight=0.0,
        lr=args.lr,
        preset="",
        ada_kimg=4.0,
    )


def stylejax_signs(args, train):
    """(in-step signs of each step's reals, E[sign] over `train` under each of the last
    --consecutive D states)."""
    import ada_experiment
    import jax
    import jax.numpy as jnp

    from stylejax.train import loop
    from stylejax.train import stylegan2 as trainer

    config = ada_experiment.make_config(settings(args), ada=False)
    loop.setup_jax()
    task = trainer.make_task(config)
    _, D = trainer.build_models(config)
    mesh = loop.make_mesh(axes=config.sharding.mesh)
    rng = jax.random.PRNGKey(config.seed)
    shardings = loop.state_sharding(config, mesh, jax.eval_shape(task.init_state, rng))
    state = jax.jit(task.init_state, out_shardings=shardings)(rng)
    step_fn = loop.compile_step(task, mesh, shardings)
    signs = jax.jit(lambda v, x: jnp.sign(D.apply(v, x)))
    in_step, swing = [], []
    order = ada_experiment.batch_indices(args.seed, len(train), 8)
    t0 = time.time()
    for step in range(args.steps + args.consecutive):
        real = train[next(order)]
        in_step.append(float(jnp.mean(signs(state["d"], real))))
        if step >= args.steps:
            chunks = [signs(state["d"], train[i : i + CHUNK]) for i in range(0, len(train), CHUNK)]
            swing.append(float(np.mean(np.concatenate([np.asarray(c) for c in chunks]))))
        state, _ = step_fn(state, loop.global_batch({"image": real}, mesh))
        progress(f"stylejax step {step + 1}", t0, step + 1, args.steps + args.consecutive)
    return in_step, swing


def official_signs(args, train):
    """The same for stylegan2-ada-pytorch: its Generator, Discriminator and StyleGAN2Loss,
    driven by its training loop's phase logic (Gmain; Greg every 4, empty without path length
    but keeping G's lazy factor; Dmain; Dreg every 16 with gain 16)."""
    import ada_experiment
    import torch
    from ada_torch_worker import _stub_missing, run_phases

    _stub_missing("requests")
    _stub_missing("distutils")
    _stub_missing("distutils.util", strtobool=lambda v: v.lower() in ("y", "yes", "true", "1"))
    sys.path.insert(0, str(Path(args.ada).resolve()))
    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    s = settings(args)
    common = dict(c_dim=0, img_resolution=RES, img_channels=3)
    arch = dict(channel_base=s.channel_base, channel_max=s.channel_max)
    arch.update(num_fp16_res=0, conv_clamp=None)
    G = Generator(
        z_dim=64, w_dim=64, **common, mapping_kwargs=dict(num_layers=2), synthesis_kwargs=arch
    )
    D = Discriminator(
        **common, **arch, architecture="resnet", epilogue_kwargs=dict(mbstd_group_size=4)
    )
    G, D = G.train().requires_grad_(False), D.train().requires_grad_(False)
    loss = StyleGAN2Loss(
        device=torch.device("cpu"),
        G_mapping=G.mapping,
        G_synthesis=G.synthesis,
        D=D,
        r1_gamma=s.r1_gamma,
        pl_weight=0,
        style_mixing_prob=0.9,
    )

    def lazy_adam(module, interval):
        c = interval / (interval + 1)
        return torch.optim.Adam(module.parameters(), lr=args.lr * c, betas=(0.0, 0.99**c), eps=1e-8)

    g_opt, d_opt = lazy_adam(G, 4), lazy_adam(D, 16)
    phases = [("Gmain", G, g_opt, 1), ("Dmain", D, d_opt, 1), ("Dreg", D, d_opt, 16)]
    x = torch.from_numpy(train).permute(0, 3, 1, 2).contiguous()
    no_labels = torch.zeros([s.batch, 0])

    def d_signs(img):
        with torch.no_grad():
            return D(img, None).sign()

    in_step, swing = [], []
    order = ada_experiment.batch_indices(args.seed, len(train), 8)
    t0 = time.time()
    for step in range(args.steps + args.consecutive):
        real = x[torch.from_numpy(next(order))]
        in_step.append(float(d_signs(real).mean()))
        if step >= args.steps:
            chunks = [d_signs(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)]
            swing.append(float(torch.cat(chunks).mean()))
        run_phases(loss, phases, real, no_labels, 64, step)
        progress(f"official step {step + 1}", t0, step + 1, args.steps + args.consecutive)
    return in_step, swing


def progress(what, t0, done, total):
    if done % 250 == 0 or done == total:
        rate = done / (time.time() - t0)
        print(
            f"{what}/{total}: {rate:.1f} steps/s, ETA {(total - done) / rate / 60:.1f} min",
            file=sys.stderr,
            flush=True,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ada", help="stylegan2-ada-pytorch checkout (omit: stylejax only)")
    parser.add_argument("--lr", type=float, default=0.0025, help="G's and D's Adam lr")
    parser.add_argument("--steps", type=int, default=1500, help="steps before the swing")
    parser.add_argument("--consecutive", type=int, default=40, help="D states scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    if args.consecutive < 2 or args.steps < 1:
        parser.error("--steps must be at least 1 and --consecutive at least 2")
    if args.ada and not (Path(args.ada) / "training" / "networks.py").is_file():
        parser.error(f"--ada {args.ada}: no training/networks.py (not a stylegan2-ada-pytorch)")
    from ada_experiment import rendered_faces

    train = rendered_faces("train", IMAGES, RES)
    runs = {"stylejax": stylejax_signs(args, train)}
    if args.ada:
        runs["stylegan2-ada-pytorch"] = official_signs(args, train)
    names = list(runs)
    print(f"E[sign D(x)] over {IMAGES} training faces, lr {args.lr}, after {args.steps} steps")
    print("| step | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for i in range(args.consecutive):
        row = " | ".join(f"{runs[n][1][i]:.3f}" for n in names)
        print(f"| {args.steps + i} | {row} |")
    summary = {
        "mean": lambda s, _: np.mean(s),
        "min": lambda s, _: np.min(s),
        "max": lambda s, _: np.max(s),
        "mean change between consecutive steps": lambda s, _: np.mean(np.abs(np.diff(s))),
        "in-step r_t, last 250 steps before the swing": lambda _, r: np.mean(
            r[max(args.steps - 250, 0) : args.steps]
        ),
    }
    for label, fn in summary.items():
        row = " | ".join(f"{fn(runs[n][1], runs[n][0]):.3f}" for n in names)
        print(f"| {label} | {row} |")


if __name__ == "__main__":
    main()
