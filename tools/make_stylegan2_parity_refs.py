"""Genuine stylegan2-ada-pytorch snapshots and their reference outputs, per resolution, to
measure the converter's float32 parity (the figures in README.md's import section).

  TORCH_PYTHON tools/make_stylegan2_parity_refs.py --ada DIR --out /tmp/parity --res 32 64 256
  TORCH_PYTHON tools/make_stylegan2_parity_refs.py --ada DIR --out /tmp/parity --res 256 \
      --channel-base 32768 --channel-max 512                  # config-f widths at 256 px
  python tools/convert_weights.py /tmp/parity/ada_s256_c64.pkl /tmp/parity/s256 --which all \
      --ref /tmp/parity/ada_s256_c64_ref.npz

Runs under a Python with torch (stylejax is not imported). DIR is a local checkout of
https://github.com/NVlabs/stylegan2-ada-pytorch, put on sys.path at run time; nothing from it
is copied here. For each resolution it builds the official Generator and Discriminator (z/w
dims = channel_max, 8 mapping layers, channels min(channel_base // res, channel_max): by default 64 in every
block, conv_clamp 256, fp32, G skip / D resnet), perturbs every parameter and buffer away from its
initial value (G a second time, so G and G_ema differ), and writes:

- ada_s{res}_c{channel_max}.pkl: the snapshot exactly as training_loop.py pickles it (G, D, G_ema,
  augment_pipe, training_set_kwargs; persistent classes with their embedded source);
- ada_s{res}_c{channel_max}_ref.npz (float32, NCHW, batch 4): z, ws = G_ema.mapping(z), img_const =
  G_ema.synthesis(ws, noise_mode='const'), img_g = G(z, noise_mode='const'), d_in, d_out = D(d_in).

A float64 run of the official modules is not possible without editing them: the mapping and
every synthesis block cast their input to float32.
"""

import argparse
import copy
import pickle
import sys
import types
from pathlib import Path

import numpy as np


def perturb(module, gen, scale=0.1):
    """Adds scale·N(0, 1) to every floating parameter and buffer except the FIR filters, so a
    wrongly mapped tensor shows up (biases, noise strengths, w_avg become non-zero)."""
    import torch

    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.is_floating_point() and not name.endswith("resample_filter"):
                t.add_(scale * torch.randn(t.shape, generator=gen))


def make(res, out, channel_base, channel_max, batch=4):
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ada", required=True, help="stylegan2-ada-pytorch checkout")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--res", type=int, nargs="+", default=[32, 64, 256])
    parser.add_argument("--channel-base", type=int, default=16384)
    parser.add_argument("--channel-max", type=int, default=64)
    args = parser.parse_args()
    # dnnlib/util.py imports `requests` (only for downloads, never made here).
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    sys.path.insert(0, str(args.ada))
    args.out.mkdir(parents=True, exist_ok=True)
    for res in args.res:
        make(res, args.out, args.channel_base, args.channel_max)


if __name__ == "__main__":
    main()
