"""Genuine stylegan2-ada-pytorch snapshots and rosinality checkpoints and their reference
outputs, per resolution, to measure the converter's float32 parity (the figures in README.md's
import section).

  TORCH_PYTHON tools/make_stylegan2_parity_refs.py --ada DIR --out /tmp/parity --res 32 64 256
  TORCH_PYTHON tools/make_stylegan2_parity_refs.py --ada DIR --out /tmp/parity --res 256 \
      --channel-base 32768 --channel-max 512                  # config-f widths at 256 px
  python tools/convert_weights.py /tmp/parity/ada_s256_c64.pkl /tmp/parity/s256 --which all \
      --ref /tmp/parity/ada_s256_c64_ref.npz
  TORCH_PYTHON tools/make_stylegan2_parity_refs.py --rosinality DIR --out /tmp/parity --res 256
  python tools/convert_weights.py /tmp/parity/rosinality_s256_train.pt /tmp/parity/r256 \
      --which all --ref /tmp/parity/rosinality_s256_ref.npz

Runs under a Python with torch (stylejax is not imported). DIR is a local checkout of
https://github.com/NVlabs/stylegan2-ada-pytorch or https://github.com/rosinality/stylegan2-pytorch,
put on sys.path at run time; nothing from it is copied here.

--ada: for each resolution it builds the official Generator and Discriminator (z/w
dims = channel_max, 8 mapping layers, channels min(channel_base // res, channel_max): by default 64 in every
block, conv_clamp 256, fp32, G skip / D resnet), perturbs every parameter and buffer away from its
initial value (G a second time, so G and G_ema differ), and writes:

- ada_s{res}_c{channel_max}.pkl: the snapshot exactly as training_loop.py pickles it (G, D, G_ema,
  augment_pipe, training_set_kwargs; persistent classes with their embedded source);
- ada_s{res}_c{channel_max}_ref.npz (float32, NCHW, batch 4): z, ws = G_ema.mapping(z), img_const =
  G_ema.synthesis(ws, noise_mode='const'), img_g = G(z, noise_mode='const'), d_in, d_out = D(d_in).

A float64 run of the official modules is not possible without editing them: the mapping and
every synthesis block cast their input to float32.

--rosinality: for each resolution it builds rosinality's Generator(res, 512, 8,
channel_multiplier=2) and Discriminator(res, channel_multiplier=2) (config-f widths: 512
channels up to 32 px, then 256, 128, ...) from a fixed seed, perturbs them the same way, runs
one Adam step of zero gradients with train.py's optimisers (which fills their state and leaves
the weights as they are) and writes:

- rosinality_s{res}_train.pt: what train.py saves (g, d, g_ema, g_optim, d_optim, args,
  ada_aug_p; no latent_avg);
- rosinality_s{res}.pt: the layout of its convert_weight.py (g_ema, latent_avg = the mean
  mapping output of 4,096 seeded z, shape (512,));
- rosinality_s{res}_ref.npz (float32, NCHW, batch 4): z, w = g_ema.style(z), ws (the W+ codes
  of g_ema([z], return_latents=True)), img_z = g_ema([z], randomize_noise=False), img_const =
  g_ema([ws], input_is_latent=True, randomize_noise=False), img_g = g([z],
  randomize_noise=False), d_in, d_out = d(d_in), latent_avg;
- rosinality_s{res}_ref64.npz: the same inputs and the outputs of model.double() (the same
  weights in float64); --ref against it gives our distance to float64, and the float32 torch
  outputs' distance to it is printed here.

rosinality's op/ package compiles CUDA extensions when imported. Its pure-torch CPU paths
(upfirdn2d / upfirdn2d_native, FusedLeakyReLU / fused_leaky_relu: bias add, leaky ReLU 0.2,
times sqrt(2)) are taken from its own source at run time and put in sys.modules as op.upfirdn2d
and op.fused_act, so the package imports without compiling; its files are not edited.
"""

import argparse
import ast
import copy
import pickle
import sys
import types
from pathlib import Path

import numpy as np


def perturb(module, gen, scale=0.1):
    """Adds scale·N(0, 1) to every floating parameter and buffer except the FIR filters (ada's
    resample_filter, rosinality's kernel), so a wrongly mapped tensor shows up (biases, noise
    strengths, w_avg become non-zero)."""
    import torch

    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.is_floating_point() and not name.endswith(("resample_filter", "kernel")):
                t.add_(scale * torch.randn(t.shape, generator=gen))


def make_ada(res, out, channel_base, channel_max, batch=4):
    import torch
    from training.networks import Discriminator, Generator

    gen = torch.Generator().manual_seed(res)
    arch = dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=0, conv_clamp=256)
    common = dict(c_dim=0, img_resolution=res, img_channels=3)
    G_ema = Generator(
        z_dim=channel_max,
        w_dim=channel_max,
        **common,
        mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=arch,
    )
    D = Discriminator(
        **common, **arch, architecture="resnet", epilogue_kwargs=dict(mbstd_group_size=4)
    )
    perturb(G_ema, gen)
    perturb(D, gen)
    G = copy.deepcopy(G_ema)
    perturb(G, gen, scale=0.02)
    snapshot = dict(training_set_kwargs=None, augment_pipe=None)
    for name, module in [("G", G), ("D", D), ("G_ema", G_ema)]:
        snapshot[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    name = f"ada_s{res}_c{channel_max}"
    with open(out / f"{name}.pkl", "wb") as f:
        pickle.dump(snapshot, f)

    z = torch.randn([batch, channel_max], generator=gen)
    d_in = torch.rand([batch, 3, res, res], generator=gen) * 2 - 1

    with torch.no_grad():
        ws = G_ema.mapping(z, None)
        ref = {
            "ws": ws,
            "img_const": G_ema.synthesis(ws, noise_mode="const"),
            "img_g": G(z, None, noise_mode="const"),
            "d_out": D(d_in, None),
        }
    ref = {k: v.numpy() for k, v in ref.items()}
    np.savez(out / f"{name}_ref.npz", z=z.numpy(), d_in=d_in.numpy(), **ref)
    print(f"wrote {out / name}.pkl and {name}_ref.npz")


def cpu_module(path, name, defs):
    """A module holding only the top-level definitions `defs` of the source file `path`
    (their pure-torch CPU paths), without the statements that compile CUDA extensions."""
    from collections import abc

    import torch
    from torch import nn
    from torch.nn import functional as F

    tree = ast.parse(Path(path).read_text())
    body = [n for n in tree.body if getattr(n, "name", None) in defs]
    missing = set(defs) - {n.name for n in body}
    if missing:
        raise SystemExit(f"{path}: no {', '.join(sorted(missing))} (another rosinality version?)")
    module = types.ModuleType(name)
    module.__dict__.update(abc=abc, torch=torch, nn=nn, F=F, __file__=str(path))
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), module.__dict__)
    return module


def import_rosinality(root):
    """rosinality's model.py, its op/ package importing without compiling anything."""
    op = Path(root) / "op"
    sys.modules["op.fused_act"] = cpu_module(
        op / "fused_act.py", "op.fused_act", {"FusedLeakyReLU", "fused_leaky_relu"}
    )
    sys.modules["op.upfirdn2d"] = cpu_module(
        op / "upfirdn2d.py", "op.upfirdn2d", {"upfirdn2d", "upfirdn2d_native"}
    )
    sys.path.insert(0, str(root))
    import model

    return model


def train_args(res):
    """The argparse.Namespace that rosinality's train.py stores (its defaults)."""
    return argparse.Namespace(
        path="lmdb", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=res, r1=10,
        path_regularize=2, path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9,
        ckpt=None, lr=0.002, channel_multiplier=2, wandb=False, local_rank=0, augment=False,
        augment_p=0, ada_target=0.6, ada_length=500000, ada_every=256, distributed=False,
        latent=512, n_mlp=8, start_iter=0,
    )  # fmt: skip


def adam_step(module, lr, reg_every):
    """train.py's optimiser after one step of zero gradients: its state is filled (step,
    exp_avg, exp_avg_sq) and the weights stay as they are (the update is 0 / (0 + eps))."""
    import torch

    ratio = reg_every / (reg_every + 1)
    opt = torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=(0**ratio, 0.99**ratio))
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    before = [p.detach().clone() for p in module.parameters()]
    opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, module.parameters()))
    module.zero_grad(set_to_none=True)
    return opt.state_dict()


def rosinality_outputs(g_ema, g, d, z, d_in):
    """The reference outputs named as convert_weights.py --ref reads them (stored noise)."""
    import torch

    with torch.no_grad():
        img_z, ws = g_ema([z], return_latents=True, randomize_noise=False)
        return {
            "w": g_ema.style(z),
            "ws": ws,
            "img_z": img_z,
            "img_const": g_ema([ws], input_is_latent=True, randomize_noise=False)[0],
            "img_g": g([z], randomize_noise=False)[0],
            "d_out": d(d_in),
        }


def make_rosinality(model, res, out, batch=4):
    import torch

    torch.manual_seed(res)
    gen = torch.Generator().manual_seed(res)
    g_ema = model.Generator(res, 512, 8, channel_multiplier=2).eval()
    d = model.Discriminator(res, channel_multiplier=2).eval()
    perturb(g_ema, gen)
    perturb(d, gen)
    g = copy.deepcopy(g_ema)
    perturb(g, gen, scale=0.02)
    args = train_args(res)
    g_optim = adam_step(g, args.lr, args.g_reg_every)
    d_optim = adam_step(d, args.lr, args.d_reg_every)
    with torch.no_grad():
        latent_avg = g_ema.style(torch.randn([4096, 512], generator=gen)).mean(0)

    name = f"rosinality_s{res}"
    train = dict(g=g.state_dict(), d=d.state_dict(), g_ema=g_ema.state_dict())
    train.update(g_optim=g_optim, d_optim=d_optim, args=args, ada_aug_p=0.0)
    torch.save(train, out / f"{name}_train.pt")
    torch.save({"g_ema": g_ema.state_dict(), "latent_avg": latent_avg}, out / f"{name}.pt")

    z = torch.randn([batch, 512], generator=gen)
    d_in = torch.rand([batch, 3, res, res], generator=gen) * 2 - 1
    inputs = dict(z=z.numpy(), d_in=d_in.numpy(), latent_avg=latent_avg.numpy())
    ref = rosinality_outputs(g_ema, g, d, z, d_in)
    ref64 = rosinality_outputs(g_ema.double(), g.double(), d.double(), z.double(), d_in.double())
    np.savez(out / f"{name}_ref.npz", **inputs, **{k: v.numpy() for k, v in ref.items()})
    inputs64 = {k: np.float64(v) for k, v in inputs.items()}
    ref64 = {k: v.numpy() for k, v in ref64.items()}
    np.savez(out / f"{name}_ref64.npz", **inputs64, **ref64)
    print(f"wrote {out / name}_train.pt, {name}.pt, {name}_ref.npz and {name}_ref64.npz")
    print("rosinality's float32 outputs against model.double() on the same weights and inputs:")
    for key, want in ref64.items():
        diff = np.float64(ref[key].numpy()) - want
        rel = np.linalg.norm(diff) / np.linalg.norm(want)
        print(f"  {key}: relative error {rel:.2e}, max-abs {np.abs(diff).max():.2e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ada", help="stylegan2-ada-pytorch checkout")
    source.add_argument("--rosinality", help="rosinality/stylegan2-pytorch checkout")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--res", type=int, nargs="+", default=[32, 64, 256])
    parser.add_argument("--channel-base", type=int, default=16384)
    parser.add_argument("--channel-max", type=int, default=64)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.rosinality:
        model = import_rosinality(args.rosinality)
        for res in args.res:
            make_rosinality(model, res, args.out)
        return
    # dnnlib/util.py imports `requests` (only for downloads, never made here).
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    sys.path.insert(0, str(args.ada))
    for res in args.res:
        make_ada(res, args.out, args.channel_base, args.channel_max)


if __name__ == "__main__":
    main()
