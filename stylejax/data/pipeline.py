"""Per-process input pipeline: each process reads only its part of a TFDS split, shuffles
it with a seed, flips, applies a task transform, batches and prefetches; `global_batch`
turns the per-process numpy batches into one sharded jax.Array per feature.

    ds = make_dataset("synthetic_faces/64", global_batch_size=32, seed=0, task="encode")
    mesh = jax.sharding.Mesh(jax.devices(), ("data",))
    for batch in tfds.as_numpy(ds):
      batch = global_batch(batch, mesh)      # {"source": f32[32, 64, 64, 3], ...}

Values: RGB images (image, frontal, smile_flipped) become float32 in [-1, 1], NHWC;
segmentation becomes int32 (H, W) class indices; sketch becomes float32 in [0, 1] with one
channel. Everything else (attributes, factors, index) passes through.
"""

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from stylejax.data import image_folder
from stylejax.data import tasks as task_lib
from stylejax.data.labels import FLIP_LABELS

RGB_KEYS = ("image", "frontal", "smile_flipped")
SPATIAL_KEYS = RGB_KEYS + ("segmentation", "sketch")


def process_split(split, process_index=None, process_count=None):
    """This process's part of `split`: equal, disjoint parts that together cover the split."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    return tfds.even_splits(split, n=count)[index]


def _prepared_builder(name, data_dir, builder_kwargs, folder=None):
    """The TFDS builder, built first if needed (synthetic_faces builds offline; the real data
    sets need their manual_dir). data_dir None: $TFDS_DATA_DIR, else ~/tensorflow_datasets.
    folder: the images image_folder/<res> is built from, in a data_dir of their own under
    data_dir (image_folder.prepare); a data_dir made so finds its folder without it."""
    if folder is None and image_folder.is_image_folder(name):
        folder = image_folder.source_folder(data_dir)
    if folder:
        return image_folder.prepare(name, folder, data_dir, builder_kwargs)
    builder = tfds.builder(name, data_dir=data_dir, **(builder_kwargs or {}))
    builder.download_and_prepare()
    return builder


def _read(builder, split, keys, shuffle_seed, process_index, process_count, decode_images):
    features = builder.info.features
    keys = list(keys or features.keys())
    images = {
        k: tfds.decode.SkipDecoding()
        for k in keys
        if isinstance(features[k], tfds.features.Image) and not decode_images
    }
    decoders = tfds.decode.PartialDecoding({k: True for k in keys}, decoders=images)
    return builder.as_dataset(
        split=process_split(split, process_index, process_count),
        decoders=decoders,
        shuffle_files=shuffle_seed is not None,
        read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed),
    )


def load(
    name,
    split="train",
    *,
    keys=None,
    data_dir=None,
    process_index=None,
    process_count=None,
    builder_kwargs=None,
    folder=None,
):
    """This process's part of a split as a tf.data.Dataset of decoded (uint8) examples in
    the stored order. `keys` restricts reading to those top-level features."""
    builder = _prepared_builder(name, data_dir, builder_kwargs, folder)
    return _read(builder, split, keys, None, process_index, process_count, decode_images=True)


def image_size(name: str, data_dir=None) -> int:
    """The side of `name`'s square images as its builder declares them: metadata from the
    builder's code or dataset_info.json, no example read and nothing prepared."""
    shape = tfds.builder(name, data_dir=data_dir).info.features["image"].shape
    return int(shape[0])


def to_float(example):
    """uint8 features -> the model-facing value ranges described in the module docstring."""
    out = dict(example)
    for key in RGB_KEYS:
        if key in out:
            out[key] = tf.cast(out[key], tf.float32) / 127.5 - 1.0
    if "segmentation" in out:
        out["segmentation"] = tf.cast(out["segmentation"][..., 0], tf.int32)
    if "sketch" in out:
        out["sketch"] = tf.cast(out["sketch"], tf.float32) / 255.0
    return out


def random_flip(example, seed):
    """Mirrors all spatial features together with probability 1/2; left/right part labels are
    swapped so that they stay the subject's left and right. Sets `flipped`. Non-spatial
    features (factors such as yaw, attributes) describe the unflipped image."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    out = dict(example, flipped=flip)

    def mirror(key, value):
        value = tf.reverse(value, axis=[1])
        if key == "segmentation":
            value = tf.gather(tf.constant(FLIP_LABELS, tf.int32), value)
        return value

    for key in SPATIAL_KEYS:
        if key in out:
            value = out[key]
            out[key] = tf.cond(flip, lambda k=key, v=value: mirror(k, v), lambda v=value: v)
    return out


def make_dataset(
    name,
    *,
    global_batch_size,
    split="train",
    seed=0,
    task=None,
    task_options=None,
    keys=None,
    flip=True,
    shuffle=True,
    repeat=True,
    shuffle_buffer=10_000,
    data_dir=None,
    process_index=None,
    process_count=None,
    builder_kwargs=None,
    folder=None,
):
    """Batches of this process's part: global_batch_size / process_count examples each.

    task: a name from tasks.TASKS (adds `source` and `target`), or None for raw features.
    keys: features to keep; by default those the task reads, or all features without one.
    seed: drives file order, shuffling, flips and the task's randomness; None for a fixed
    order without shuffling (evaluation).
    folder: your own images, for name image_folder/<resolution> (image_folder.prepare).
    """
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if global_batch_size % count:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be divisible by the "
            f"number of processes ({count})."
        )
    transform = None
    if task is not None:
        if task not in task_lib.TASKS:
            raise ValueError(f"task={task!r}: expected one of {sorted(task_lib.TASKS)}.")
        transform, task_keys = task_lib.TASKS[task]
        keys = keys or task_keys
    shuffle = shuffle and seed is not None
    builder = _prepared_builder(name, data_dir, builder_kwargs, folder)
    features = builder.info.features
    missing = [k for k in keys or () if k not in features]
    if missing:
        raise ValueError(
            f"{name} has no feature {missing} (task={task!r} reads {list(keys)}); "
            f"its features are {list(features.keys())}."
        )
    # Images stay encoded through the shuffle buffer (a fraction of the memory) and are
    # decoded in the parallel map below.
    ds = _read(
        builder, split, keys, seed + index if shuffle else None, index, count, decode_images=False
    )
    encoded = [k for k in ds.element_spec if isinstance(features[k], tfds.features.Image)]
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed + index, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # One stateless seed per example, split between the flip and the task.
    seeds = tf.data.Dataset.random(seed=(seed or 0) + index).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds)

    def prepare(example, example_seed):
        flip_seed, task_seed = tf.unstack(tf.random.experimental.stateless_split(example_seed, 2))
        example = dict(example, **{k: features[k].decode_example(example[k]) for k in encoded})
        example = to_float(example)
        if flip:
            example = random_flip(example, flip_seed)
        if transform is not None:
            example = transform(example, task_seed, **(task_options or {}))
        return example

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(global_batch_size // count, drop_remainder=repeat)
    return ds.prefetch(tf.data.AUTOTUNE)


def split_batches(name, split, keys, batch_size=64, *, limit=0, data_dir=None, folder=None):
    """Numpy batches (dicts of `keys`) of a whole split in stored order, unflipped, read by
    this process alone (evaluation passes); stops after `limit` examples when it is > 0."""
    ds = make_dataset(
        name,
        global_batch_size=batch_size,
        split=split,
        seed=None,
        keys=tuple(keys),
        flip=False,
        repeat=False,
        data_dir=data_dir,
        process_index=0,
        process_count=1,
        folder=folder,
    )
    count = 0
    for batch in ds.as_numpy_iterator():
        if limit:
            batch = jax.tree_util.tree_map(lambda v, n=limit - count: v[:n], batch)
        yield batch
        count += len(jax.tree_util.tree_leaves(batch)[0])
        if limit and count >= limit:
            return


def batch_sharding(mesh, axis=None):
    """Shards the leading (batch) dimension over `axis` (default: the mesh's first axis)."""
    axis = axis or mesh.axis_names[0]
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))


def global_batch(batch, sharding):
    """Per-process numpy batch -> dict of global jax.Arrays whose batch dimension is the
    concatenation of all processes' batches. `sharding`: a Mesh (batch over its first axis)
    or a Sharding. Non-numeric features (text) are dropped."""
    if isinstance(sharding, jax.sharding.Mesh):
        sharding = batch_sharding(sharding)

    def to_global(x):
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            return None
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(to_global, batch)
