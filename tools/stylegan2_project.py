"""Projects real images into a StyleGAN2 generator's latent space (StyleGAN2 paper, app. D).

  python tools/stylegan2_project.py face.png other.png --outdir out/proj --space w+ --steps 1000 \\
      --lpips converted/lpips_vgg

For each image (centre-cropped to a square and resized to the generator's resolution) the
latent code (W: one 512-d code; W+: one per layer) and the generator's noise maps are
optimised so that G(w) matches the image: LPIPS-VGG distance plus noise regularisation,
Adam with the paper's learning-rate ramp and decaying noise on w. All images are projected
together, each with its own latent; all steps run in one compiled loop.

Writes into --outdir:
  latents.npy       W+ codes [N, num_ws, w_dim] (feed to tools/stylegan2_edit.py or
                    tools/stylegan2_generate.py)
  noise.npz         the optimised noise maps (images re-create exactly with both files)
  <name>_proj.png   each projected image
  progress.png      one row per image: target, snapshots along the optimisation, result
  distances.txt     the distance of every image at every step

--lpips DIR is a converted LPIPS network (tools/convert_weights.py vgg.pth DIR
--lpips-backbone vgg16-397923af.pth, as in the paper). Without it the distance is the pixel
mean squared error (stated on the console): exact for images the generator made, blurrier
than LPIPS on photographs. Align faces first (tools/align_faces.py) for face generators.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stylejax import images, stylegan2_projection
from stylejax import stylegan2_generate as gen
from stylejax.metrics import psnr
from stylejax.model_format import CheckpointError, load_pretrained
from stylejax.models.lpips import LPIPS


def load_target(path, resolution: int) -> np.ndarray:
    """Image file → [R, R, 3] in [-1, 1]: centre square crop, Lanczos resize (as the official
    projector prepares its target)."""
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise FileNotFoundError(f"target image {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: cannot read as an image ({e})") from None
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(img, np.float32) / 127.5 - 1


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", nargs="+", help="image files (PNG, JPEG …) to project")
    parser.add_argument("--outdir", required=True, help="where the results go")
    parser.add_argument(
        "--network",
        default=str(gen.SHIPPED),
        help="converted generator directory (default: the shipped synthetic64 generator)",
    )
    parser.add_argument("--which", default=None, help="network in the checkpoint (default g_ema)")
    parser.add_argument("--space", default="w", choices=["w", "w+"], help="latent space")
    parser.add_argument("--steps", type=int, default=1000, help="optimisation steps")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    parser.add_argument("--lpips", metavar="DIR", help="converted LPIPS network (VGG)")
    parser.add_argument(
        "--no-noise", action="store_true", help="keep the generator's stored noise maps fixed"
    )
    parser.add_argument("--snapshots", type=int, default=8, help="images in the progress strip")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise maps")
    args = parser.parse_args(argv)
    try:
        run(args)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


def run(args):
    G, variables = gen.load_generator(args.network, args.which)
    lpips = None
    if args.lpips:
        lpips = load_pretrained(args.lpips)
        if not isinstance(lpips[0], LPIPS):
            raise ValueError(f"{args.lpips}: expected a converted LPIPS network, found {lpips[0]}")
        print(f"distance: LPIPS ({lpips[0].net}) from {args.lpips}")
    targets = np.stack([load_target(p, G.img_resolution) for p in args.targets])
    config = stylegan2_projection.ProjectionConfig(
        num_steps=args.steps,
        space=args.space,
        initial_learning_rate=args.lr,
        optimize_noise=not args.no_noise,
        num_snapshots=min(args.snapshots, args.steps),
    )
    bar = gen.Progress(args.steps, f"projecting {len(targets)} image(s)", "steps")

    def progress(step, dist):
        bar(int(step) + 1, extra=f"distance {float(np.mean(dist)):.4f}")

    result = stylegan2_projection.project(
        G, variables, targets, config, lpips, args.seed, progress=progress
    )
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    gen.save_npy(out / "latents.npy", result.ws)
    gen.save_npz(out / "noise.npz", result.noise)
    for path, img in zip(args.targets, images.to_uint8(result.images)):
        images.save_image(img, out / f"{Path(path).stem}_proj.png")
    rows = np.concatenate([targets[:, None], result.snapshots.transpose(1, 0, 2, 3, 4)], axis=1)
    rows = np.concatenate([rows, result.images[:, None]], axis=1)
    images.save_grid(rows.reshape(-1, *rows.shape[2:]), out / "progress.png", rows.shape[1], 1)
    lines = ["step " + " ".join(Path(p).stem for p in args.targets)]
    lines += [
        f"{i + 1} " + " ".join(f"{d:.6f}" for d in row) for i, row in enumerate(result.distances)
    ]
    (out / "distances.txt").write_text("\n".join(lines) + "\n")
    for path, d, p in zip(
        args.targets, result.distances[-1], np.asarray(psnr(result.images, targets))
    ):
        print(f"{path}: final {result.distance} distance {d:.4f}, PSNR {p:.2f} dB")
    print(f"wrote {out}/latents.npy, noise.npz, *_proj.png, progress.png, distances.txt")


if __name__ == "__main__":
    main()
