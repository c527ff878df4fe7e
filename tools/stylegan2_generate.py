"""Images from a StyleGAN2 generator (any converted or trained checkpoint directory).

  # one PNG per seed plus a grid, truncation ψ = 0.7 on the first 8 W+ entries
  python tools/stylegan2_generate.py images --seeds 0-15 --trunc 0.7 --trunc-cutoff 8 \\
      --outdir out/gen --grid out/gen_grid.png
  # latents from a file: z [N, z_dim] or W+ [N, num_ws, w_dim] (.npy, or .npz with z/w/ws)
  python tools/stylegan2_generate.py images --latents projected/latents.npy --outdir out/from_file
  # style mixing: rows × columns, W+ entries 0-6 taken from the column seeds
  python tools/stylegan2_generate.py mix --rows 0-3 --cols 10-14 --layers 0-6 --out out/mix.png
  # interpolation strip through seeds 1, 2, 3: lerp in W (or --space z: slerp in Z)
  python tools/stylegan2_generate.py interp --seeds 1,2,3 --steps 8 --space w --out out/interp.png

--network defaults to the shipped 64 px synthetic-faces generator; pass any directory made
by tools/convert_weights.py (e.g. the official FFHQ config-f). Seeds give the same z as
stylegan2-ada's generate.py. --noise-mode const (default) uses the generator's stored noise
maps (repeatable images), random draws fresh noise (from --seed), none switches noise off.
Conditional generators need --class.
"""

import argparse
from pathlib import Path

from stylejax import images
from stylejax import stylegan2_generate as gen
from stylejax.model_format import CheckpointError


def add_common(parser):
    parser.add_argument(
        "--network",
        default=str(gen.SHIPPED),
        help="converted generator directory (default: the shipped synthetic64 generator)",
    )
    parser.add_argument("--which", default=None, help="network in the checkpoint (default g_ema)")
    parser.add_argument(
        "--trunc", type=float, default=1.0, help="truncation ψ (1 = none, 0.7 typical)"
    )
    parser.add_argument(
        "--trunc-cutoff", type=int, default=None, help="truncate only the first N W+ entries"
    )
    parser.add_argument("--class", dest="class_idx", type=int, help="class label (conditional G)")
    parser.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    parser.add_argument("--seed", type=int, default=0, help="seed of random noise maps")
    parser.add_argument("--batch", type=int, default=16, help="images per device batch")


def cmd_images(args, G, variables):
    if (args.seeds is None) == (args.latents is None):
        raise ValueError("pass exactly one of --seeds and --latents")
    if args.seeds is not None:
        seeds = gen.parse_range(args.seeds)
        latents, space = gen.z_from_seeds(seeds, G.z_dim), "z"
        names = [f"seed{s:04d}.png" for s in seeds]
    else:
        latents, space = gen.load_latents(args.latents, G)
        names = [f"latent{i:04d}.png" for i in range(len(latents))]
    c = gen.class_labels(G, args.class_idx, len(latents))
    imgs = gen.generate(
        G,
        variables,
        latents,
        space,
        c,
        args.trunc,
        args.trunc_cutoff,
        args.noise_mode,
        args.seed,
        args.batch,
        progress=gen.Progress(len(latents), "generating", "images"),
    )
    if args.outdir:
        for name, img in zip(names, images.to_uint8(imgs)):
            images.save_image(img, Path(args.outdir) / name)
        print(f"wrote {len(names)} images to {args.outdir}")
    if args.grid:
        images.save_grid(imgs, args.grid, cols=args.cols, pad=1)
        print(f"wrote {args.grid}")
    if not args.outdir and not args.grid:
        raise ValueError("nothing to write: pass --outdir and/or --grid")


def cmd_mix(args, G, variables):
    rows, cols = gen.parse_range(args.rows), gen.parse_range(args.cols)
    c = gen.class_labels(G, args.class_idx, 1)
    tiles = gen.style_mixing_grid(
        G,
        variables,
        rows,
        cols,
        gen.parse_range(args.layers),
        args.trunc,
        args.noise_mode,
        c,
        args.batch,
    )
    images.save_grid(tiles.reshape(-1, *tiles.shape[2:]), args.out, cols=len(cols) + 1, pad=1)
    print(f"wrote {args.out}: {len(rows)} rows × {len(cols)} columns, W+ entries {args.layers}")


def cmd_interp(args, G, variables):
    seeds = gen.parse_range(args.seeds)
    c = gen.class_labels(G, args.class_idx, 1)
    frames = gen.interpolate(
        G,
        variables,
        gen.z_from_seeds(seeds, G.z_dim),
        args.steps,
        args.space,
        c,
        args.trunc,
        args.noise_mode,
        args.batch,
    )
    images.save_grid(frames, args.out, cols=args.cols or len(frames), pad=1)
    if args.frames_dir:
        for i, img in enumerate(images.to_uint8(frames)):
            images.save_image(img, Path(args.frames_dir) / f"frame{i:04d}.png")
    print(f"wrote {args.out}: {len(frames)} frames ({args.space} interpolation)")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("images", help="one image per seed or latent; PNG files and/or a grid")
    add_common(p)
    p.add_argument("--seeds", help="seeds, e.g. 0-15 or 1,5,9")
    p.add_argument("--latents", help=".npy/.npz file with z [N, z_dim] or W+ latents")
    p.add_argument("--outdir", help="write seedNNNN.png / latentNNNN.png files here")
    p.add_argument("--grid", help="write all images as one grid PNG")
    p.add_argument("--cols", type=int, default=None, help="grid columns (default √N)")
    p.set_defaults(run=cmd_images)

    p = sub.add_parser("mix", help="style-mixing grid: row seeds × column seeds")
    add_common(p)
    p.add_argument("--rows", required=True, help="row seeds (keep their other W+ entries)")
    p.add_argument("--cols", required=True, help="column seeds (give the --layers entries)")
    p.add_argument("--layers", default="0-6", help="W+ entries taken from the columns")
    p.add_argument("--out", required=True, help="grid PNG to write")
    p.set_defaults(run=cmd_mix)

    p = sub.add_parser("interp", help="interpolation strip through keyframe seeds")
    add_common(p)
    p.add_argument("--seeds", required=True, help="keyframe seeds, at least two")
    p.add_argument("--steps", type=int, default=8, help="frames per segment")
    p.add_argument("--space", default="w", choices=["w", "z"], help="lerp in W or slerp in Z")
    p.add_argument("--out", required=True, help="strip PNG to write")
    p.add_argument("--cols", type=int, default=None, help="wrap the strip after N frames")
    p.add_argument("--frames-dir", help="also write each frame as a PNG here")
    p.set_defaults(run=cmd_interp)

    args = parser.parse_args(argv)
    try:
        G, variables = gen.load_generator(args.network, args.which)
        args.run(args, G, variables)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
