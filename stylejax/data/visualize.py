"""Example grid of synthetic_faces: image, colourised segmentation, sketch, frontal and
smile_flipped, one example per row.

    python -m stylejax.data.visualize docs/synthetic_faces.png [--rows 6] [--resolution 128]
"""

import argparse

import numpy as np
from PIL import Image, ImageDraw

from stylejax.data import face_renderer
from stylejax.data.labels import colorize
from stylejax.data.synthetic_faces import SyntheticFacesConfig, example_factors

COLUMNS = ("image", "segmentation", "sketch", "frontal", "smile_flipped")


def example_grid(rows=6, resolution=128, seed=SyntheticFacesConfig.seed, split="train"):
    """uint8 grid (header + rows x 5 panels) of the first `rows` examples of a split."""
    header = Image.new("RGB", (resolution * len(COLUMNS), 16), "white")
    draw = ImageDraw.Draw(header)
    for column, name in enumerate(COLUMNS):
        draw.text((column * resolution + 4, 2), name, fill="black")
    lines = [np.asarray(header)]
    for index in range(rows):
        example = face_renderer.render_example(example_factors(seed, split, index), resolution)
        panels = dict(
            example,
            segmentation=colorize(example["segmentation"]),
            sketch=np.repeat(example["sketch"], 3, axis=-1),
        )
        lines.append(np.concatenate([panels[name] for name in COLUMNS], axis=1))
    return np.concatenate(lines, axis=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output")
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args(argv)
    Image.fromarray(example_grid(args.rows, args.resolution)).save(args.output)


if __name__ == "__main__":
    main()
