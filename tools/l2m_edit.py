"""Edits a folder of face images with an L2M-GAN model at several strengths.

  python tools/l2m_edit.py l2m_smile photos/ edited/ --source 0 --target 1
  python tools/l2m_edit.py runs/l2m/model photos/ edited/ --alphas 0,0.5,1,1.25
  python tools/l2m_edit.py l2m_smile photos/ edited/ --reference smiling.png --reference-domain 1

MODEL is a converted official checkpoint (tools/convert_weights.py on a *_nets_ema.ckpt) or
a training run's export (runs/l2m/model: written after training, or by `python -m
stylejax.main --config=configs/l2m.py --workdir=runs/l2m --mode=export`). Each input gets
a strip `<name>_strip.png`: the input, then its edits at every α (0 reconstructs, 1 is the
full edit). All strips also go into `strips.png`, one row per image. With --reference, the
attribute part of the reference image's style replaces each input's (`<name>_ref.png`:
input, reference, result). Images are centre-cropped and resized to the model's size.
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from stylejax import images
from stylejax.model_format import load_pretrained
from stylejax.models.l2m import L2MGAN

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def read_image(path: Path, size: int) -> np.ndarray:
    """Centre-cropped, resized (Lanczos) RGB image in [-1, 1], [size, size, 3]."""
    try:
        image = Image.open(path).convert("RGB")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
    return np.asarray(image, np.float32) / 127.5 - 1.0


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (expected a folder of images)")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
    if not paths:
        raise FileNotFoundError(f"{folder}: holds no images ({', '.join(EXTENSIONS)})")
    return paths


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="converted or exported L2M-GAN checkpoint")
    parser.add_argument("inputs", type=Path, help="folder of images to edit")
    parser.add_argument("output", type=Path, help="folder for the strips")
    parser.add_argument("--source", type=int, default=None, help="domain of the inputs")
    parser.add_argument("--target", type=int, default=None, help="domain to edit towards")
    parser.add_argument("--alphas", default="0.25,0.5,0.75,1", help="editing strengths")
    parser.add_argument("--reference", type=Path, default=None, help="reference image")
    parser.add_argument("--reference-domain", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model, variables = load_pretrained(args.model)
    if not isinstance(model, L2MGAN):
        raise SystemExit(f"{args.model}: holds a {type(model).__name__}, not an L2M-GAN model")
    domains = model.num_domains
    source, target = args.source, args.target
    if source is None or target is None:
        if domains != 2:
            raise SystemExit(f"this model has {domains} domains: give --source and --target")
        source = 1 - target if source is None and target is not None else source
        source = 0 if source is None else source
        target = 1 - source if target is None else target
    checks = [("--source", source), ("--target", target)]
    if args.reference_domain is not None:
        checks.append(("--reference-domain", args.reference_domain))
    for name, value in checks:
        if not 0 <= value < domains:
            raise SystemExit(f"{name} {value}: this model has domains 0 … {domains - 1}")
    alphas = tuple(float(a) for a in args.alphas.split(","))
    size = model.img_size
    sweep = jax.jit(lambda v, x, ys, yt: model.apply(v, x, ys, yt, alphas, method=model.sweep))
    reference = None
    if args.reference is not None:
        if args.reference_domain is None:
            raise SystemExit("--reference needs --reference-domain (the reference's domain)")
        reference = read_image(args.reference, size)
        ref_edit = jax.jit(
            lambda v, x, ys, xr, yr: model.apply(v, x, ys, xr, yr, method=model.reference_edit)
        )
    paths = list_images(args.inputs)
    rows = []
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start : start + args.batch_size]
        x = jnp.asarray(np.stack([read_image(p, size) for p in chunk]))
        n = len(chunk)
        y_src = jnp.full((n,), source, jnp.int32)
        edits = np.asarray(sweep(variables, x, y_src, jnp.full((n,), target, jnp.int32)))
        for path, image, strip in zip(chunk, np.asarray(x), edits):
            row = np.concatenate([image[None], strip])
            rows.append(row)
            images.save_grid(row, args.output / f"{path.stem}_strip.png", cols=len(row), pad=1)
        if reference is not None:
            x_ref = jnp.asarray(np.broadcast_to(reference, x.shape))
            y_ref = jnp.full((n,), args.reference_domain, jnp.int32)
            out = np.asarray(ref_edit(variables, x, y_src, x_ref, y_ref))
            for path, image, result in zip(chunk, np.asarray(x), out):
                trio = np.stack([image, reference, result])
                images.save_grid(trio, args.output / f"{path.stem}_ref.png", cols=3, pad=1)
        print(f"edited {min(start + n, len(paths))}/{len(paths)} images", flush=True)
    grid = np.concatenate(rows)
    images.save_grid(grid, args.output / "strips.png", cols=1 + len(alphas), pad=1)
    print(f"wrote {len(paths)} strips (input, α = {', '.join(map(str, alphas))}) to {args.output}")


if __name__ == "__main__":
    main()
