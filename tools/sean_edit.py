"""SEAN editing grids: reconstruction, per-region style transfer, mask painting, region-style
interpolation and per-ResBlk style crossover, on two images A and B of a data set.

  python tools/sean_edit.py --a 3 --b 7 --regions hair,u_lip --outdir out/sean_edit
  python tools/sean_edit.py --network runs/sean/model --a 3 --b 7
  python tools/sean_edit.py --network sean_celeba --data celeba_mask_hq/256 --a 0 --b 1

--network is the shipped 64 px synthetic-faces model (the default: stylejax/pretrained/
sean_synthetic64, trained by configs/sean.py), a directory made by tools/convert_weights.py
from the official latest_net_G.pth, or a training run's export (runs/sean/model: written
after training, or by `python -m stylejax.main --config=configs/sean.py --workdir=runs/sean
--mode=export`).
Writes into --outdir:
  transfer.png     per region: A's mask | A | B | G(A) | G(A with B's region style)
  interpolate.png  the chosen regions' style from A to B in --steps steps
  paint.png        A | G(A) | A's mask with the --paint box set to --paint-class | G(edit)
  crossover.png    G(A) with B's codes in the first k styled blocks, k = 0 … 6
and prints the region-transfer scores (how far A's region colour moved to B's, and the
PSNR of the rest of the image against G(A)).
"""

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import stylejax
from stylejax import images
from stylejax.data.labels import LABEL
from stylejax.model_format import load_pretrained
from stylejax.models import sean
from stylejax.train import sean as train_sean

SHIPPED = Path(stylejax.__file__).parent / "pretrained" / "sean_synthetic64"


def parse_regions(text: str) -> list[int]:
    out = []
    for name in filter(None, text.split(",")):
        if name.isdigit():
            out.append(int(name))
        elif name in LABEL:
            out.append(LABEL[name])
        else:
            raise SystemExit(f"--regions: unknown class {name!r}; use indices or {list(LABEL)}")
    return out


def load_examples(data: str, split: str, indices, data_dir=None):
    """Examples `indices` of a data set's split (image, segmentation), unshuffled."""
    from stylejax.data import pipeline

    ds = pipeline.make_dataset(
        data,
        global_batch_size=1,
        split=split,
        seed=None,
        keys=("image", "segmentation"),
        flip=False,
        repeat=False,
        data_dir=data_dir,
        process_index=0,
        process_count=1,
    )
    wanted, found = set(indices), {}
    for i, ex in enumerate(ds):
        if i in wanted:
            found[i] = {k: np.asarray(ex[k][0]) for k in ("image", "segmentation")}
        if len(found) == len(wanted):
            break
    missing = sorted(wanted - set(found))
    if missing:
        raise SystemExit(f"{data}/{split} has no example {missing} (it has {i + 1})")
    return [found[i] for i in indices]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--network",
        default=str(SHIPPED),
        help="converted / exported SEAN generator dir (default: the shipped synthetic-faces model)",
    )
    p.add_argument("--data", default="synthetic_faces/64")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--a", type=int, default=0, help="index of image A (content and mask)")
    p.add_argument("--b", type=int, default=1, help="index of image B (style donor)")
    p.add_argument("--regions", default="hair,u_lip,l_lip,skin", help="classes to transfer")
    p.add_argument("--steps", type=int, default=6, help="interpolation steps")
    p.add_argument("--paint-class", default="hair", help="class painted by --paint")
    p.add_argument("--paint", default="0,0.25,0,1", help="box y0,y1,x0,x1 (fractions)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (the same for every image)")
    p.add_argument("--outdir", default="out/sean_edit")
    args = p.parse_args(argv)

    G, variables = load_pretrained(args.network)
    if not isinstance(G, sean.Generator):
        raise SystemExit(f"{args.network}: holds a {type(G).__name__}, not a SEAN generator")
    a, b = load_examples(args.data, args.split, [args.a, args.b], args.data_dir)
    regions = parse_regions(args.regions)
    outdir = Path(args.outdir)
    noise = jax.random.PRNGKey(args.seed)
    label_nc = G.label_nc

    encode = jax.jit(
        lambda img, lab: G.apply(variables, img, sean.one_hot(lab, label_nc), method=G.encode)
    )
    synth = jax.jit(
        lambda lab, codes: G.apply(
            variables, sean.one_hot(lab, label_nc), style_codes=codes, rngs={"noise": noise}
        )
    )

    def batch(ex):
        return ex["image"][None], ex["segmentation"][None]

    img_a, lab_a = batch(a)
    img_b, lab_b = batch(b)
    codes_a, _ = encode(img_a, lab_a)
    codes_b, present_b = encode(img_b, lab_b)
    recon_a = synth(lab_a, codes_a)
    mask_a = train_sean.colorize(lab_a)

    # Region transfer, one row per region.
    rows = []
    for r in regions:
        edited = synth(lab_a, sean.transfer_regions(codes_a, codes_b, [r], present_b))
        rows += [mask_a, img_a, img_b, recon_a, edited]
    images.save_grid(jnp.concatenate(rows), outdir / "transfer.png", cols=5, pad=1)

    # Interpolation of the chosen regions' styles.
    strip = [
        synth(lab_a, sean.interpolate_regions(codes_a, codes_b, t, regions))
        for t in np.linspace(0, 1, args.steps)
    ]
    images.save_grid(jnp.concatenate(strip), outdir / "interpolate.png", cols=args.steps, pad=1)

    # Mask painting: a box of one class, re-synthesised with A's styles (a class absent from
    # A gets B's style for it).
    y0, y1, x0, x1 = (float(v) for v in args.paint.split(","))
    h, w = lab_a.shape[1:]
    box = np.zeros((1, h, w), bool)
    box[:, int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = True
    painted = sean.paint(lab_a, box, parse_regions(args.paint_class)[0])
    painted_codes = sean.transfer_regions(
        codes_b, codes_a, range(label_nc), encode(img_a, lab_a)[1]
    )
    edit = synth(painted, painted_codes)
    panels = [img_a, recon_a, train_sean.colorize(painted), edit]
    images.save_grid(jnp.concatenate(panels), outdir / "paint.png", cols=4, pad=1)

    # Per-block crossover: B's codes in the first k styled blocks.
    blocks = sean.STYLED_BLOCKS
    cross = [
        synth(lab_a, sean.crossover(codes_a, codes_b, blocks[:k])) for k in range(len(blocks) + 1)
    ]
    images.save_grid(jnp.concatenate(cross), outdir / "crossover.png", cols=len(cross), pad=1)

    scores = {
        sean_name(r): train_sean.region_transfer_scores(
            G, variables, lab_a, img_a, lab_b, img_b, r, noise
        )
        for r in regions
    }
    print(json.dumps(scores, indent=2))
    print(f"grids in {outdir}/: transfer.png interpolate.png paint.png crossover.png")


def sean_name(r: int) -> str:
    names = {v: k for k, v in LABEL.items()}
    return names.get(r, str(r))


if __name__ == "__main__":
    main()
