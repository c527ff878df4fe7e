"""Image grids: model outputs (NHWC, [-1, 1]) to uint8 tiles and PNG files."""

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from stylejax import files


def to_uint8(images) -> np.ndarray:
    """[-1, 1] floats → uint8, rounding half up like the official samplers; 1 channel → RGB."""
    images = np.asarray(images, np.float32)
    images = np.clip(np.rint((images + 1) * 127.5), 0, 255).astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def make_grid(images, cols: int | None = None, pad: int = 0) -> np.ndarray:
    """Tiles N images [N, H, W, C] row-major into one [rows·H, cols·W, C] uint8 array."""
    images = to_uint8(images) if np.asarray(images).dtype != np.uint8 else np.asarray(images)
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), 255, np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = image
    return grid


def save_image(array: np.ndarray, path) -> Path:
    """Writes a uint8 HWC array as PNG atomically."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return files.write_atomic(path, buffer.getvalue())


def save_grid(images, path, cols: int | None = None, pad: int = 0) -> Path:
    return save_image(make_grid(images, cols, pad), path)
