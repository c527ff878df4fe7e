"""Task transforms for the encoders: each turns one example into a (source, target) pair.

They run inside tf.data on float examples (RGB in [-1, 1], see pipeline.py) and draw their
randomness from a per-example stateless seed, so a seeded pipeline is reproducible.
"""

import tensorflow as tf

from stylejax.data.labels import NUM_CLASSES

SUPER_RESOLUTION_FACTORS = (1, 2, 4, 8, 16, 32)


def encode(example, seed):
    del seed
    return dict(example, source=example["image"], target=example["image"])


def super_resolution(example, seed, factors=SUPER_RESOLUTION_FACTORS):
    """Down-samples by a random factor and back, as pSp: anti-aliased bicubic (a = -0.5)
    down, bilinear up. `factors` with one entry gives a fixed degradation for evaluation."""
    image = example["image"]
    size = tf.shape(image)[0]
    pick = tf.random.stateless_uniform([], seed, 0, len(factors), dtype=tf.int32)
    factor = tf.gather(tf.constant(factors, tf.int32), pick)
    low = tf.maximum(size // factor, 1)
    small = tf.image.resize(image, [low, low], method="bicubic", antialias=True)
    source = tf.image.resize(small, [size, size], method="bilinear")
    return dict(example, source=tf.clip_by_value(source, -1.0, 1.0), target=image, sr_factor=factor)


def sketch_to_face(example, seed):
    """Source: the sketch in [0, 1], one channel (pSp feeds sketches unnormalised)."""
    del seed
    return dict(example, source=example["sketch"], target=example["image"])


def seg_to_face(example, seed, label_nc=NUM_CLASSES):
    """Source: the label map one-hot encoded into label_nc channels."""
    del seed
    labels = example["segmentation"]
    check = tf.debugging.assert_less(
        labels,
        label_nc,
        message=f"segmentation holds a label >= label_nc={label_nc}; expected class indices "
        f"0..{label_nc - 1}",
    )
    with tf.control_dependencies([check]):
        source = tf.one_hot(labels, label_nc, dtype=tf.float32)
    return dict(example, source=source, target=example["image"])


def inpainting_mask(size, seed, max_boxes=3):
    """Random hole mask (size, size, 1), 1 inside the holes: 1..max_boxes boxes whose sides
    are between 1/8 and 1/2 of the image."""
    seeds = tf.random.experimental.stateless_split(seed, max_boxes + 1)
    count = tf.random.stateless_uniform([], seeds[0], 1, max_boxes + 1, dtype=tf.int32)
    coords = tf.range(size)
    mask = tf.zeros([size, size], tf.bool)
    for box in range(max_boxes):
        s = tf.random.experimental.stateless_split(seeds[box + 1], 3)
        h, w = tf.unstack(
            tf.random.stateless_uniform([2], s[0], size // 8, size // 2 + 1, dtype=tf.int32)
        )
        top = tf.random.stateless_uniform([], s[1], 0, size - h + 1, dtype=tf.int32)
        left = tf.random.stateless_uniform([], s[2], 0, size - w + 1, dtype=tf.int32)
        rows = (coords >= top) & (coords < top + h)
        cols = (coords >= left) & (coords < left + w)
        mask |= (rows[:, None] & cols[None, :]) & (box < count)
    return tf.cast(mask, tf.float32)[..., None]


def inpainting(example, seed):
    """Source: the image with random holes set to 0 (mid grey); `mask` marks the holes."""
    image = example["image"]
    mask = inpainting_mask(tf.shape(image)[0], seed)
    return dict(example, source=image * (1.0 - mask), mask=mask, target=image)


def frontalization(example, seed):
    """Source: the posed face; target: the same face rendered frontally (synthetic_faces)."""
    del seed
    return dict(example, source=example["image"], target=example["frontal"])


# name -> (transform, features it reads)
TASKS = {
    "encode": (encode, ("image",)),
    "super_resolution": (super_resolution, ("image",)),
    "sketch_to_face": (sketch_to_face, ("image", "sketch")),
    "seg_to_face": (seg_to_face, ("image", "segmentation")),
    "inpainting": (inpainting, ("image",)),
    "frontalization": (frontalization, ("image", "frontal")),
}
