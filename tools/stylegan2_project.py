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

--test-faces N (a generator taught the renderer, configs/stylegan2.py:synthetic64) projects
the first N test faces of synthetic_faces/<res> (--data) instead of files and measures the
recovery of their true latents (stylejax.ground_truth.projection_scores): the projected W+
codes' distance to the true codes G.map(factors_to_z(factors)) (mean over the layers of the
L2 distance; the projection's start w_avg as the baseline), PSNR/SSIM against the target and
those of G(true code), printed and written to truth.json:

  python tools/stylegan2_project.py --test-faces 16 --outdir out/proj_truth --steps 500

--lpips DIR is a converted LPIPS network (tools/convert_weights.py vgg.pth DIR
--lpips-backbone vgg16-397923af.pth, as in the paper). Without it the distance is the pixel
mean squared error (stated on the console): exact for images the generator made, blurrier
than LPIPS on photographs. Align faces first (tools/align_faces.py) for face generators.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stylejax import files, ground_truth, images, stylegan2_projection
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
    parser.add_argument("targets", nargs="*", help="image files (PNG, JPEG …) to project")
    parser.add_argument(
        "--test-faces",
        type=int,
        metavar="N",
        help="project the first N synthetic test faces and score against their true latents",
    )
    parser.add_argument("--data", help="with --test-faces: TFDS name (synthetic_faces/<res>)")
    parser.add_argument("--data-dir", help="with --test-faces: TFDS data directory")
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
    names, factors = synthetic_test_faces(args, G) if args.test_faces else (args.targets, None)
    if factors is None and not args.targets:
        raise ValueError("pass image files to project, or --test-faces N")
    config = stylegan2_projection.ProjectionConfig(
        num_steps=args.steps,
        space=args.space,
        initial_learning_rate=args.lr,
        optimize_noise=not args.no_noise,
        num_snapshots=min(args.snapshots, args.steps),
    )
    bar = gen.Progress(args.steps, f"projecting {len(names)} image(s)", "steps")

    def progress(step, dist):
        bar(int(step) + 1, extra=f"distance {float(np.mean(dist)):.4f}")

    if factors is None:
        targets = np.stack([load_target(p, G.img_resolution) for p in args.targets])
        result = stylegan2_projection.project(
            G, variables, targets, config, lpips, args.seed, progress=progress
        )
    else:
        targets = ground_truth.render(factors, G.img_resolution)
        means, per_face, result = ground_truth.projection_recovery(
            G, variables, factors, config, lpips, args.seed, progress
        )
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    gen.save_npy(out / "latents.npy", result.ws)
    gen.save_npz(out / "noise.npz", result.noise)
    for path, img in zip(names, images.to_uint8(result.images)):
        images.save_image(img, out / f"{Path(path).stem}_proj.png")
    rows = np.concatenate([targets[:, None], result.snapshots.transpose(1, 0, 2, 3, 4)], axis=1)
    rows = np.concatenate([rows, result.images[:, None]], axis=1)
    images.save_grid(rows.reshape(-1, *rows.shape[2:]), out / "progress.png", rows.shape[1], 1)
    lines = ["step " + " ".join(Path(p).stem for p in names)]
    lines += [
        f"{i + 1} " + " ".join(f"{d:.6f}" for d in row) for i, row in enumerate(result.distances)
    ]
    (out / "distances.txt").write_text("\n".join(lines) + "\n")
    for path, d, p in zip(names, result.distances[-1], np.asarray(psnr(result.images, targets))):
        print(f"{path}: final {result.distance} distance {d:.4f}, PSNR {p:.2f} dB")
    print(f"wrote {out}/latents.npy, noise.npz, *_proj.png, progress.png, distances.txt")
    if factors is not None:
        report = {
            "network": str(args.network),
            "faces": len(factors),
            "space": args.space,
            "steps": args.steps,
            "distance": result.distance,
            "metrics": means,
            "per_face": {k: np.asarray(v).tolist() for k, v in per_face.items()},
        }
        files.write_json(out / "truth.json", report)
        print(f"recovery of the true latents ({len(factors)} test faces, means):")
        for name, value in means.items():
            print(f"  {name:<26} {value:.4f}")
        print(f"wrote {out}/truth.json")


def synthetic_test_faces(args, G):
    """(names, factors) of the first --test-faces faces of the synthetic test split."""
    if args.targets:
        raise ValueError("pass image files or --test-faces, not both")
    res = G.img_resolution
    factors = ground_truth.tool_test_factors(
        args.network, res, args.test_faces, args.data, args.data_dir
    )
    return [f"test_{i:04d}" for i in range(len(factors))], factors


if __name__ == "__main__":
    main()
