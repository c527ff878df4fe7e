"""FFHQ-style face alignment (the crop FFHQ, pSp, ReStyle and e4e expect).

  # landmarks from dlib's 68-point predictor (optional extra: pip install "stylejax[align]")
  python tools/align_faces.py photo.jpg group.png --outdir aligned --size 256
  # landmarks from a file: .npy [68, 2] / [F, 68, 2] or text rows "x y" (68 per face)
  python tools/align_faces.py photo.jpg --landmarks photo_landmarks.txt --outdir aligned

Each face becomes <name>_aligned.png (<name>_face<K>.png with --all-faces; the largest face
otherwise). The crop is the published FFHQ recipe: an oriented square from the eye centres
and mouth corners, reflection padding where it leaves the photo, quad resampling at
--transform-size (default 4 × --size) and an antialiased resize to --size. Without dlib and
without --landmarks the tool says how to install the detector.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stylejax import align
from stylejax import stylegan2_generate as gen
from stylejax.images import save_image


def load_image(path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: cannot read as an image ({e})") from None
    return img.convert("RGB")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", help="photos to align")
    parser.add_argument("--outdir", required=True, help="where the aligned faces go")
    parser.add_argument("--size", type=int, default=1024, help="output size (256 for pSp)")
    parser.add_argument("--transform-size", type=int, help="quad resampling size (4 × --size)")
    parser.add_argument("--landmarks", help="landmark file for a single input image")
    parser.add_argument("--all-faces", action="store_true", help="align every detected face")
    parser.add_argument("--no-padding", action="store_true", help="no reflection padding")
    parser.add_argument("--save-landmarks", action="store_true", help="write <name>_lm.npy")
    args = parser.parse_args(argv)
    try:
        run(args)
    except (align.AlignmentError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


def run(args):
    if args.landmarks and len(args.images) != 1:
        raise ValueError("--landmarks describes one image: pass exactly one image with it")
    out = Path(args.outdir)
    bar = gen.Progress(len(args.images), "aligning", "images")
    written = 0
    for i, path in enumerate(args.images):
        img = load_image(path)
        if args.landmarks:
            faces = align.read_landmarks(args.landmarks)
        else:
            faces = align.detect_landmarks(img)
            if len(faces) == 0:
                raise align.AlignmentError(
                    f"{path}: no face found (dlib's detector needs a roughly frontal face; "
                    "give the landmarks with --landmarks instead)"
                )
        faces = faces if args.all_faces else faces[:1]
        stem = Path(path).stem
        for k, lm in enumerate(faces):
            face = align.align_face(
                img, lm, args.size, args.transform_size, enable_padding=not args.no_padding
            )
            name = f"{stem}_face{k}" if args.all_faces else f"{stem}_aligned"
            save_image(np.asarray(face), out / f"{name}.png")
            if args.save_landmarks:
                gen.save_npy(out / f"{name}_lm.npy", lm)
            written += 1
        bar(i + 1)
    print(f"wrote {written} aligned face(s) of {args.size} px to {out}")


if __name__ == "__main__":
    main()
