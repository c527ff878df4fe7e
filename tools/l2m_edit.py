"""Edits face images with an L2M-GAN model at several strengths.

  python tools/l2m_edit.py                                   # shipped model, 8 test faces
  python tools/l2m_edit.py --inputs photos/ --outdir edited/ --source 0 --target 1
  python tools/l2m_edit.py --model runs/l2m/model --inputs photos/ --alphas 0,0.5,1,1.25
  python tools/l2m_edit.py --model l2m_smile --inputs photos/ --reference smiling.png \
      --reference-domain 1

--model is the shipped 64 px synthetic-faces Smiling model (the default: stylejax/pretrained/
l2m_synthetic64, trained by configs/l2m.py), a converted official checkpoint
(tools/convert_weights.py on a *_nets_ema.ckpt) or a training run's export (runs/l2m/model:
written after training, or by `python -m stylejax.main --config=configs/l2m.py
--workdir=runs/l2m --mode=export`). Without --inputs the first --faces synthetic test faces
are rendered and each is edited from its own Smiling value to the other one. Each input gets
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

import stylejax
from stylejax import images
from stylejax.model_format import load_pretrained
from stylejax.models.l2m import L2MGAN

SHIPPED = Path(stylejax.__file__).parent / "pretrained" / "l2m_synthetic64"
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


def test_faces(count: int, size: int):
    """(names, images [N, size, size, 3] in [-1, 1], Smiling 0/1 [N]) of the first `count`
    synthetic test faces, rendered (no data set build needed)."""
    from stylejax.data import face_renderer, synthetic_faces

    factors = [synthetic_faces.example_factors(0, "test", i) for i in range(count)]
    faces = np.stack([face_renderer.render(f, size)[0] for f in factors]).astype(np.float32)
    smiling = np.asarray([face_renderer.attributes(f)["Smiling"] for f in factors], np.int32)
    return [f"face{i:03d}" for i in range(count)], faces / 127.5 - 1.0, smiling


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model", default=str(SHIPPED), help="L2M-GAN dir (default: the shipped model)"
    )
    parser.add_argument("--inputs", type=Path, default=None, help="folder of images to edit")
    parser.add_argument("--faces", type=int, default=8, help="test faces without --inputs")
    parser.add_argument("--outdir", type=Path, default=Path("out/l2m_edit"))
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
    size = model.img_size
    source, target = args.source, args.target
    for name, value in (
        ("--source", source),
        ("--target", target),
        ("--reference-domain", args.reference_domain),
    ):
        if value is not None and not 0 <= value < domains:
            raise SystemExit(f"{name} {value}: this model has domains 0 … {domains - 1}")
    if args.inputs is None:
        if domains != 2:
            raise SystemExit(f"this model has {domains} domains: give --inputs and --source")
        names, faces, smiling = test_faces(args.faces, size)
        sources = smiling if source is None else np.full(len(faces), source, np.int32)
    else:
        paths = list_images(args.inputs)
        names = [p.stem for p in paths]
        if source is None or target is None:
            if domains != 2:
                raise SystemExit(f"this model has {domains} domains: give --source and --target")
            source = 1 - target if source is None and target is not None else source
            source = 0 if source is None else source
        sources = np.full(len(paths), source, np.int32)
    targets = 1 - sources if target is None else np.full(len(sources), target, np.int32)
    alphas = tuple(float(a) for a in args.alphas.split(","))
    sweep = jax.jit(lambda v, x, ys, yt: model.apply(v, x, ys, yt, alphas, method=model.sweep))
    reference = None
    if args.reference is not None:
        if args.reference_domain is None:
            raise SystemExit("--reference needs --reference-domain (the reference's domain)")
        reference = read_image(args.reference, size)
        ref_edit = jax.jit(
            lambda v, x, ys, xr, yr: model.apply(v, x, ys, xr, yr, method=model.reference_edit)
        )
    rows = []
    for start in range(0, len(names), args.batch_size):
        chunk = slice(start, start + args.batch_size)
        if args.inputs is None:
            x = jnp.asarray(faces[chunk])
        else:
            x = jnp.asarray(np.stack([read_image(p, size) for p in paths[chunk]]))
        y_src, y_trg = jnp.asarray(sources[chunk]), jnp.asarray(targets[chunk])
        edits = np.asarray(sweep(variables, x, y_src, y_trg))
        for name, image, strip in zip(names[chunk], np.asarray(x), edits):
            row = np.concatenate([image[None], strip])
            rows.append(row)
            images.save_grid(row, args.outdir / f"{name}_strip.png", cols=len(row), pad=1)
        if reference is not None:
            x_ref = jnp.asarray(np.broadcast_to(reference, x.shape))
            y_ref = jnp.full((len(x),), args.reference_domain, jnp.int32)
            out = np.asarray(ref_edit(variables, x, y_src, x_ref, y_ref))
            for name, image, result in zip(names[chunk], np.asarray(x), out):
                trio = np.stack([image, reference, result])
                images.save_grid(trio, args.outdir / f"{name}_ref.png", cols=3, pad=1)
        print(f"edited {min(start + len(x), len(names))}/{len(names)} images", flush=True)
    grid = np.concatenate(rows)
    images.save_grid(grid, args.outdir / "strips.png", cols=1 + len(alphas), pad=1)
    print(f"wrote {len(names)} strips (input, α = {', '.join(map(str, alphas))}) to {args.outdir}")


if __name__ == "__main__":
    main()
