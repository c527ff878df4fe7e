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
  python tools/convert_weights.py ffhq_ros ffhq.pt --to rosinality              # export
  python tools/convert_weights.py psp_ffhq psp_ffhq_encode.pt --to psp          # export

The format and every architecture hyper-parameter are detected from the file. Neither
torch nor tensorflow is needed, and the file is read with a restricted unpickler: a
checkpoint that references anything but tensors and the known containers is refused.
With --ref REF.npz (arrays named as in the reference-output fixtures: z, w / ws, img_z,
ws, img_const for G_ema, z, img_g for G, d_in, d_out (and c when conditional) for D; x, codes,
img for pSp; x0, x1, {net}_x_distance for LPIPS) every converted network is checked against
the original's outputs, one line per output; an output off by more than 1e-5 relative fails
the run, naming it. LPIPS needs two files: the `lpips` package's
linear heads (weights/v0.1/alex.pth or vgg.pth) as SRC and torchvision's backbone weights.

--to rosinality goes the other way: SRC is a stylejax StyleGAN2 model folder (converted, or
trained here) and OUT a rosinality/stylegan2-pytorch .pt (g_ema, latent_avg, plus g and d
when the folder holds them), written without torch; pSp, e4e and ReStyle load the same file.
--to psp writes a pSp, e4e or ReStyle model folder as the official coaches' checkpoint
(state_dict with encoder.* and decoder.*, opts, latent_avg).
"""

import argparse

import jax
import numpy as np

from stylejax.convert import convert
from stylejax.convert.export import to_psp, to_rosinality
from stylejax.model_format import CheckpointError, load_pretrained, read_config


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
    lines += [f"  note: {note}" for note in meta.get("notes", ())]
    return "\n".join(lines)


# Relative L2 error allowed per output: float32 reaches ~1e-6 at 32 px and ~3e-6 at 256 px.
PARITY_BOUND = 1e-5
# Reference arrays of each StyleGAN2 network, named as in the reference-output fixtures:
# output -> the input array it is computed from (plus c when the file holds labels).
STYLEGAN2_OUTPUTS = {
    "g_ema": {"w": "z", "ws": "z", "img_z": "z", "img_const": "ws"},
    "g": {"img_g": "z"},
    "d": {"d_out": "d_in"},
}


def stylegan2_output(module, variables, key, ref):
    """Our value of reference array `key` (one of STYLEGAN2_OUTPUTS)."""
    c = ref.get("c")
    if key == "d_out":
        return module.apply(variables, ref["d_in"].transpose(0, 2, 3, 1), c)
    if key == "img_const":
        return module.apply(variables, ref["ws"], input_space="w+", noise_mode="const")
    if key in ("w", "ws"):
        ws = module.apply(variables, ref["z"], c, method=module.map)
        return ws[:, 0] if key == "w" else ws
    return module.apply(variables, ref["z"], c, noise_mode="const")  # img_z, img_g


def reference_outputs(out_dir, ref):
    """Our outputs for the arrays of `ref`: ([(network, output name, value)], {network not
    converted: the outputs of `ref` that belong to it})."""
    networks = read_config(out_dir)["networks"]
    if any(net["kind"] in ("generator", "discriminator") for net in networks.values()):
        outputs, not_converted = [], {}
        for name, inputs in STYLEGAN2_OUTPUTS.items():
            keys = [key for key, needs in inputs.items() if key in ref and needs in ref]
            if keys and name not in networks:
                not_converted[name] = keys
            elif keys:
                module, variables = load_pretrained(out_dir, name)
                outputs += [(name, k, stylegan2_output(module, variables, k, ref)) for k in keys]
        return outputs, not_converted
    name = next(iter(networks))
    G, variables = load_pretrained(out_dir, name)
    if "x" in ref and "codes" in ref:  # pSp fixtures: NCHW input, codes and images
        run = jax.jit(lambda v, x: G.apply(v, x, return_latents=True))  # eager is slow
        img, codes = run(variables, ref["x"].transpose(0, 2, 3, 1))
        return [(name, "codes", codes), (name, "img", img)], {}
    if "x0" in ref and f"{getattr(G, 'net', '')}_x_distance" in ref:  # LPIPS fixture
        x0, x1 = (ref[k].transpose(0, 2, 3, 1) for k in ("x0", "x1"))
        return [(name, f"{G.net}_x_distance", G.apply(variables, x0, x1))], {}
    return [], {}


def check_reference(out_dir, ref_path):
    """Compares every converted network with the reference outputs that belong to it and
    prints one line per output (outputs of networks not converted included); returns
    [(network, output, relative error)]."""
    ref = dict(np.load(ref_path))
    outputs, not_converted = reference_outputs(out_dir, ref)
    if not outputs:
        raise SystemExit(
            f"{ref_path}: no output of the converted networks; expected z+w, z+ws, z+img_z, "
            "ws+img_const, z+img_g, d_in+d_out, x+codes+img or x0+x1+{net}_x_distance"
        )
    errors = []
    for name, key, got in outputs:
        got = np.asarray(got)
        got = got.transpose(0, 3, 1, 2) if got.ndim == 4 else got  # images NHWC → NCHW
        rel = np.linalg.norm(got - ref[key]) / np.linalg.norm(ref[key])
        print(
            f"  {name:6s} {key}: relative error {rel:.2e}, "
            f"max-abs {np.abs(got - ref[key]).max():.2e}"
        )
        errors.append((name, key, rel))
    for name, keys in not_converted.items():
        print(f"  {name:6s} {', '.join(keys)}: not checked ({name} not converted; see --which)")
    return errors


def export(model_dir, out_path, overwrite, to="rosinality"):
    """--to rosinality: writes the file and says how rosinality's Generator loads it;
    --to psp: writes the pSp / e4e / ReStyle checkpoint and says which encoder it holds."""
    try:
        info = (to_psp if to == "psp" else to_rosinality)(model_dir, out_path, overwrite)
    except (CheckpointError, FileExistsError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    if to == "psp":
        print(
            f"exported {model_dir} -> {out_path} (official {info['family']} layout): "
            f"{', '.join(info['keys'])}; encoder_type={info['encoder_type']}"
        )
        return
    print(f"exported {model_dir} -> {out_path} (rosinality layout): {', '.join(info['networks'])}")
    m = info["channel_multiplier"]
    print(
        f"  load with Generator(size={info['size']}, style_dim={info['style_dim']}, "
        f"n_mlp={info['n_mlp']}, channel_multiplier={m if m else '?'}, "
        f"blur_kernel={info['blur_kernel']})"
    )
    if m is None:
        print(
            f"  note: channels {info['channels']} follow no channel_multiplier: "
            "edit rosinality's Generator.channels to match"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "src",
        help="rosinality .pt, stylegan2-ada-pytorch .pkl, TF .pkl, pSp .pt, ArcFace .pth or "
        "LPIPS heads .pth",
    )
    parser.add_argument("out_dir", help="output directory (--to: output file), written atomically")
    parser.add_argument("--which", default="g_ema", choices=["g_ema", "g", "d", "all"])
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--ref", help="reference outputs .npz to check parity against")
    parser.add_argument(
        "--lpips-backbone",
        metavar="PATH",
        help="torchvision backbone weights for an LPIPS heads SRC "
        "(alexnet-owt-7be5be79.pth or vgg16-397923af.pth)",
    )
    parser.add_argument(
        "--to",
        choices=["rosinality", "psp"],
        help="export: SRC is a stylejax model folder (StyleGAN2 for rosinality; pSp, e4e or "
        "ReStyle for psp), OUT_DIR the .pt file to write",
    )
    args = parser.parse_args(argv)
    if args.to:
        export(args.src, args.out_dir, args.overwrite, args.to)
        return
    try:
        meta = convert(args.src, args.out_dir, args.which, args.overwrite, args.lpips_backbone)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(summarize(args.out_dir, meta))
    if args.ref:
        errors = check_reference(args.out_dir, args.ref)
        failed = [f"{key} of {name} {rel:.2e}" for name, key, rel in errors if rel > PARITY_BOUND]
        if failed:
            raise SystemExit(
                f"parity check failed, relative error > {PARITY_BOUND:g}: {'; '.join(failed)}"
            )
        networks = sorted({name for name, _, _ in errors})
        print(f"parity check passed for {', '.join(networks)} (relative error <= {PARITY_BOUND:g})")


if __name__ == "__main__":
    main()
