"""Runs a pSp model over a folder of images and writes the results.

  # reconstructions (or translations: sketch / label map / low-res → face)
  python tools/psp_inference.py --model runs/psp/model --images faces/ --out out/psp
  # and 5 multi-modal outputs per input, fine layers from random latents, blended 50 %
  python tools/psp_inference.py --model converted/psp_sketch --images sketches/ --out out/mm \\
      --multimodal 5 --latent-mask 8-17 --alpha 0.5

--model is a converted official checkpoint (tools/convert_weights.py psp_*.pt DIR) or the
`model` folder a pSp training run writes in its workdir. Inputs are read as the model expects
them (RGB faces, grayscale sketches, or label maps of class indices for segmentation models)
and resized to its input size (256 for the official models; align real faces first).

Writes, per input, <out>/<name>.png (the output), <out>/coupled/<name>.png (input | output
[| multi-modal outputs]), <out>/codes.npy (W+ codes [N, num_ws, w_dim], in file order) and
<out>/grid.png (inputs over outputs).
"""

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from stylejax import images, psp_inference
from stylejax.stylegan2_generate import Progress
from stylejax.train.psp_family import source_for_display


def parse_layers(text: str) -> list[int]:
    """'8-17' or '4,5,9' → layer indices."""
    layers = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        layers += list(range(int(lo), int(hi or lo) + 1))
    return layers


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="converted or trained pSp model folder")
    parser.add_argument("--images", required=True, help="folder of .png/.jpg inputs")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--full-size", action="store_true", help="keep the generator's size")
    parser.add_argument("--multimodal", type=int, default=0, help="random-style outputs per input")
    parser.add_argument("--latent-mask", default=None, help="layers to mix, e.g. 8-17")
    parser.add_argument("--alpha", type=float, default=None, help="blend instead of replace")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected latents")
    args = parser.parse_args(argv)

    try:
        model = psp_inference.load_psp(args.model)
        files = psp_inference.image_files(args.images)
        mask = parse_layers(args.latent_mask) if args.latent_mask else None
    except ValueError as e:
        parser.error(str(e))
    out = Path(args.out)
    (out / "coupled").mkdir(parents=True, exist_ok=True)
    task = {3: "encode", 1: "sketch_to_face"}.get(model.input_nc, "seg_to_face")
    progress = Progress(len(files), "pSp", "images")
    rng = jax.random.PRNGKey(args.seed)
    all_codes, grid_in, grid_out = [], [], []
    start = time.time()
    for i in range(0, len(files), args.batch):
        chunk = files[i : i + args.batch]
        x = psp_inference.load_images(chunk, model)
        outputs, codes = model.reconstruct(x, args.full_size)
        rows = [np.asarray(outputs)[:, None]]
        if args.multimodal:
            rng, key = jax.random.split(rng)
            mm = model.multimodal(x, key, args.multimodal, mask, args.alpha, args.full_size)
            rows.append(np.asarray(mm))
        outputs = np.concatenate(rows, axis=1)  # [n, 1 + multimodal, H, W, 3]
        shown = source_for_display(x, task)
        if shown.shape[1] != outputs.shape[2]:
            shown = np.asarray(jax.image.resize(shown, (len(x), *outputs.shape[2:]), "nearest"))
        for path, src, outs in zip(chunk, shown, outputs):
            images.save_image(images.to_uint8(outs[0]), out / f"{path.stem}.png")
            strip = np.concatenate([src[None], outs])
            images.save_grid(strip, out / "coupled" / f"{path.stem}.png", len(strip), 1)
        all_codes.append(np.asarray(codes))
        grid_in.append(shown[:16])
        grid_out.append(outputs[:16, 0])
        progress(min(i + args.batch, len(files)))
    np.save(out / "codes.npy", np.concatenate(all_codes))
    n = min(16, len(files))
    top, bottom = np.concatenate(grid_in)[:n], np.concatenate(grid_out)[:n]
    images.save_grid(np.concatenate([top, bottom]), out / "grid.png", n, 1)
    print(
        f"{len(files)} images in {time.time() - start:.1f}s → {out}/ (grid.png, coupled/, codes.npy)"
    )


if __name__ == "__main__":
    main()
