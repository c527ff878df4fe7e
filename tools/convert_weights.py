"""Imports official checkpoints into stylejax (orbax checkpoint + config.json).

  python tools/convert_weights.py stylegan2-ffhq-config-f.pkl ffhq_f            # TF pickle
  python tools/convert_weights.py ffhq.pkl ffhq_ada --which all                 # ada-pytorch
  python tools/convert_weights.py 550000.pt ffhq_ros --which g_ema              # rosinality
  python tools/convert_weights.py psp_ffhq_encode.pt psp_ffhq                   # pSp
  python tools/convert_weights.py model_ir_se50.pth arcface                     # ArcFace (ID loss)
  python tools/convert_weights.py alex.pth lpips_alex \
      --lpips-backbone alexnet-owt-7be5be79.pth                                 # LPIPS (AlexNet)
  python tools/convert_weights.py vgg.pth lpips_vgg --lpips-backbone vgg16-397923af.pth
  python tools/convert_weights.py pt_inception-2015-12-05-6726825d.pth inception  # FID

The format and every architecture hyper-parameter are detected from the file. Neither
torch nor tensorflow is needed, and the file is read with a restricted unpickler: a
checkpoint that references anything but tensors and the known containers is refused.
With --ref REF.npz (arrays named as in the reference-output fixtures: z, img_z / ws,
img_const …; x, codes, img for pSp; x0, x1, {net}_x_distance for LPIPS) the converted
model is checked against the original's outputs. LPIPS needs two files: the `lpips` package's
linear heads (weights/v0.1/alex.pth or vgg.pth) as SRC and torchvision's backbone weights.
"""

import argparse

import jax
import numpy as np

from stylejax.convert import convert
from stylejax.model_format import CheckpointError, load_pretrained


def summarize(out_dir, meta):
    lines = [f"converted {meta['format']} checkpoint {meta['source']} -> {out_dir}"]
    for name, net in meta["networks"].items():
        module, variables = load_pretrained(out_dir, name)
        n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables["params"]))
        cfg = net["config"]
        if net["kind"] in ("psp", "restyle", "e4e"):
            lines.append(
                f"  {name}: {cfg['encoder_type']} ({cfg['encoder']}, {cfg['input_nc']} input "
                f"channels) + {cfg['decoder']['img_resolution']} px decoder, {n:,} parameters"
            )
            continue
        if net["kind"] == "arcface":
            lines.append(f"  {name}: IR-SE ArcFace {cfg}, {n:,} parameters")
            continue
        if net["kind"] == "inception":
            lines.append(f"  {name}: FID Inception-v3 (pytorch-fid), {n:,} parameters")
            continue
        if net["kind"].startswith("sean_"):
            lines.append(f"  {name}: SEAN {net['kind'][5:]} {cfg}, {n:,} parameters")
            continue
        if net["kind"] == "lpips":
            lines.append(f"  {name}: LPIPS v0.1 with {cfg['net']} features, {n:,} parameters")
            continue
        if net["kind"] == "l2m":
            lines.append(f"  {name}: L2M-GAN {cfg}, {n:,} parameters")
            continue
        lines.append(
            f"  {name:6s} {net['kind']:13s} {cfg['img_resolution']} px, "
            f"channels {cfg['channels']}, {n:,} trainable parameters"
        )
    return "\n".join(lines)


def check_reference(out_dir, ref_path):
    """Compares the converted G_ema (or pSp) with reference outputs; returns the worst
    relative error."""
    ref = np.load(ref_path)
    G, variables = load_pretrained(out_dir)
    c = ref["c"] if "c" in ref else None
    checks = []
    if "x" in ref and "codes" in ref:  # pSp fixtures: NCHW input, codes and images
        run = jax.jit(lambda v, x: G.apply(v, x, return_latents=True))  # eager is slow
        img, codes = run(variables, ref["x"].transpose(0, 2, 3, 1))
        checks += [("codes", codes), ("img", img)]
    elif "x0" in ref and f"{getattr(G, 'net', '')}_x_distance" in ref:  # LPIPS fixture
        x0, x1 = (ref[k].transpose(0, 2, 3, 1) for k in ("x0", "x1"))
        checks.append((f"{G.net}_x_distance", G.apply(variables, x0, x1)))
    elif "ws" in ref and "img_const" in ref:  # stylegan2-ada fixtures
        checks.append(
            ("img_const", G.apply(variables, ref["ws"], input_space="w+", noise_mode="const"))
        )
    if "z" in ref and "img_z" in ref:  # rosinality fixtures
        checks.append(("img_z", G.apply(variables, ref["z"], c, noise_mode="const")))
    if not checks:
        raise SystemExit(f"{ref_path}: expected arrays ws+img_const, z+img_z or x+codes+img")
    worst = 0.0
    for key, got in checks:
        got = np.asarray(got)
        got = got.transpose(0, 3, 1, 2) if got.ndim == 4 else got  # images NHWC → NCHW
        rel = np.linalg.norm(got - ref[key]) / np.linalg.norm(ref[key])
        print(f"  {key}: relative error {rel:.2e}, max-abs {np.abs(got - ref[key]).max():.2e}")
        worst = max(worst, rel)
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "src",
        help="rosinality .pt, stylegan2-ada-pytorch .pkl, TF .pkl, pSp .pt, ArcFace .pth or "
        "LPIPS heads .pth",
    )
    parser.add_argument("out_dir", help="output directory (written atomically)")
    parser.add_argument("--which", default="g_ema", choices=["g_ema", "g", "d", "all"])
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--ref", help="reference outputs .npz to check parity against")
    parser.add_argument(
        "--lpips-backbone",
        metavar="PATH",
        help="torchvision backbone weights for an LPIPS heads SRC "
        "(alexnet-owt-7be5be79.pth or vgg16-397923af.pth)",
    )
    args = parser.parse_args(argv)
    try:
        meta = convert(args.src, args.out_dir, args.which, args.overwrite, args.lpips_backbone)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(summarize(args.out_dir, meta))
    if args.ref:
        worst = check_reference(args.out_dir, args.ref)
        if worst > 1e-5:
            raise SystemExit(f"parity check failed: relative error {worst:.2e} > 1e-5")
        print("parity check passed (relative error <= 1e-5)")


if __name__ == "__main__":
    main()
