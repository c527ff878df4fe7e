"""Helpers shared by the TFDS builders: a worker pool, PNG encoding, image reading and the
corrupt-file policy. No TensorFlow here: build workers run only numpy and PIL."""

import io
import logging
import multiprocessing
import os

import numpy as np
from PIL import Image

ON_CORRUPT = ("skip", "stop")


class CorruptImageError(ValueError):
    """An image file that cannot be decoded."""


def default_num_workers():
    return os.cpu_count() or 1


def map_in_workers(fn, items, num_workers):
    """`map(fn, items)` in order, spread over `num_workers` forked processes."""
    if num_workers <= 1:
        yield from map(fn, items)
        return
    # fork, not spawn/forkserver: those re-run the user's main script in every worker (a
    # script without a __main__ guard would build recursively). JAX warns about forking a
    # multithreaded process because a child that used JAX could deadlock; these workers
    # never call JAX or TensorFlow, only numpy, PIL and pickle.
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        yield from pool.imap(fn, items, chunksize=8)


def encode_png(array):
    """uint8 HxW, HxWx1 or HxWx3 array -> PNG bytes (deterministic)."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png", compress_level=1)  # fast; ~20% larger
    return buffer.getvalue()


def open_image(path, mode):
    """Fully decodes an image file into a PIL image of `mode`; CorruptImageError otherwise."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now: truncated files fail here, not later in training
            return image.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise CorruptImageError(
            f"{path}: cannot decode this image ({type(error).__name__}: {error}); expected a "
            "readable PNG or JPEG. Replace or delete the file, or build with "
            "on_corrupt='skip' to skip such files and count them."
        ) from None


def read_square_image(path, size):
    """Reads an RGB image, centre-crops it to a square and resizes it to size x size."""
    image = open_image(path, "RGB")
    width, height = image.size
    side = min(width, height)
    if width != height:
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.LANCZOS)
    return np.asarray(image, np.uint8)


class CorruptFileLog:
    """Applies the on_corrupt policy: 'stop' raises at once, 'skip' warns and counts."""

    def __init__(self, policy):
        if policy not in ON_CORRUPT:
            raise ValueError(f"on_corrupt={policy!r}: expected one of {ON_CORRUPT}.")
        self.policy = policy
        self.skipped = []

    def report(self, error):
        if self.policy == "stop":
            raise error
        self.skip(str(error))

    def skip(self, message):
        """Records a file left out whatever the policy (not an image, nested too deep)."""
        logging.warning("Skipping %s", message)
        self.skipped.append(message)
