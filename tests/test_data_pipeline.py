"""Input pipeline: per-process parts, seeded shuffling, flips, value ranges, task
transforms and global arrays on an 8-device mesh."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from stylejax.data import pipeline
from stylejax.data.labels import FLIP_LABELS, NUM_CLASSES
from stylejax.data.synthetic_faces import SyntheticFaces, SyntheticFacesConfig

TINY = SyntheticFacesConfig(name="pipeline32", resolution=32, num_train=24, num_test=4)
NAME = "synthetic_faces/pipeline32"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("tfds"))
    SyntheticFaces(config=TINY, data_dir=directory).download_and_prepare()
    return directory


def _one_batch(data_dir, **kwargs):
    kwargs.setdefault("global_batch_size", TINY.num_train)
    ds = pipeline.make_dataset(NAME, data_dir=data_dir, repeat=False, **kwargs)
    return next(iter(tfds.as_numpy(ds)))


def _raw_by_index(data_dir):
    ds = pipeline.load(NAME, data_dir=data_dir, process_index=0, process_count=1)
    return {int(e["index"]): e for e in tfds.as_numpy(ds)}


@pytest.mark.parametrize("count", [1, 3, 5])
def test_process_parts_are_disjoint_and_cover_the_split(data_dir, count):
    parts = []
    for index in range(count):
        ds = pipeline.load(
            NAME, keys=("index",), data_dir=data_dir, process_index=index, process_count=count
        )
        parts.append([int(e["index"]) for e in tfds.as_numpy(ds)])
    flat = [i for part in parts for i in part]
    assert sorted(flat) == list(range(TINY.num_train))  # covering, no duplicates
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_seeded_shuffle_is_reproducible_and_seed_dependent(data_dir):
    def order(seed):
        ds = pipeline.make_dataset(
            NAME, global_batch_size=8, seed=seed, keys=("index",), flip=False, data_dir=data_dir
        )
        batches = [b["index"] for _, b in zip(range(6), tfds.as_numpy(ds))]
        return np.concatenate(batches)

    first = order(3)
    np.testing.assert_array_equal(first, order(3))
    assert not np.array_equal(first, order(4))
    for epoch in (first[:24], first[24:]):  # each epoch is a permutation of the split
        assert sorted(epoch) == list(range(TINY.num_train))
    assert not np.array_equal(first[:24], first[24:])  # reshuffled every epoch
    unshuffled = _one_batch(data_dir, seed=None, keys=("index",))["index"]
    np.testing.assert_array_equal(
        unshuffled, _one_batch(data_dir, seed=None, keys=("index",))["index"]
    )


def test_values_and_flips(data_dir):
    batch = _one_batch(data_dir, seed=1, flip=True)
    raw = _raw_by_index(data_dir)
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (24, 32, 32, 3)
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
    assert batch["segmentation"].dtype == np.int32 and batch["segmentation"].shape == (24, 32, 32)
    assert batch["sketch"].min() == 0.0 and batch["sketch"].max() == 1.0
    assert 0 < batch["flipped"].sum() < 24
    for i, index in enumerate(batch["index"]):
        ref = raw[int(index)]
        mirror = (lambda x: x[:, ::-1]) if batch["flipped"][i] else (lambda x: x)
        for key in ("image", "frontal", "smile_flipped"):
            np.testing.assert_allclose(batch[key][i], mirror(ref[key]) / 127.5 - 1.0, atol=1e-6)
        labels = mirror(ref["segmentation"][..., 0])
        if batch["flipped"][i]:
            labels = FLIP_LABELS[labels]  # the subject's left eye is still labelled l_eye
        np.testing.assert_array_equal(batch["segmentation"][i], labels)
        np.testing.assert_array_equal(batch["factors"][i], ref["factors"])


def test_super_resolution_degrades_by_the_chosen_factor(data_dir):
    same = _one_batch(data_dir, task="super_resolution", task_options={"factors": (1,)})
    np.testing.assert_allclose(same["source"], same["target"], atol=1e-5)
    flat = _one_batch(data_dir, task="super_resolution", task_options={"factors": (32,)})
    # Down to a single pixel and back: each source is one flat colour.
    assert np.ptp(flat["source"], axis=(1, 2)).max() < 1e-5
    mixed = _one_batch(data_dir, task="super_resolution", seed=0)
    assert set(mixed["sr_factor"]) <= {1, 2, 4, 8, 16, 32} and len(set(mixed["sr_factor"])) > 2
    for i, factor in enumerate(mixed["sr_factor"]):
        detail = lambda x: np.abs(np.diff(x, axis=0)).mean()
        if factor >= 4:
            assert detail(mixed["source"][i]) < detail(mixed["target"][i])


def test_seg_to_face_one_hot_and_label_range(data_dir):
    batch = _one_batch(data_dir, task="seg_to_face")
    assert batch["source"].shape == (24, 32, 32, NUM_CLASSES)
    np.testing.assert_array_equal(batch["source"].sum(-1), 1.0)
    np.testing.assert_array_equal(batch["source"].argmax(-1), batch["segmentation"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="label_nc=5"):
        _one_batch(data_dir, task="seg_to_face", task_options={"label_nc": 5})


def test_inpainting_masks(data_dir):
    batch = _one_batch(data_dir, task="inpainting", seed=5)
    mask = batch["mask"]
    assert set(np.unique(mask)) == {0.0, 1.0}
    holes = mask.mean(axis=(1, 2, 3))
    assert (holes > 0).all() and (holes <= 0.75).all() and len(set(holes)) > 1
    np.testing.assert_array_equal(batch["source"], batch["target"] * (1.0 - mask))
    np.testing.assert_array_equal(mask, _one_batch(data_dir, task="inpainting", seed=5)["mask"])


def test_sketch_and_frontalization_pairs(data_dir):
    sketch = _one_batch(data_dir, task="sketch_to_face")
    assert sketch["source"].shape == (24, 32, 32, 1)
    np.testing.assert_array_equal(sketch["source"], sketch["sketch"])
    frontal = _one_batch(data_dir, task="frontalization")
    np.testing.assert_array_equal(frontal["target"], frontal["frontal"])
    np.testing.assert_array_equal(frontal["source"], frontal["image"])


def test_task_on_a_data_set_without_its_features_fails_clearly(tmp_path):
    from PIL import Image

    manual = tmp_path / "photos"
    manual.mkdir()
    Image.new("RGB", (8, 8)).save(manual / "a.png")
    tfds.builder("image_folder/32", data_dir=str(tmp_path)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    with pytest.raises(ValueError, match=r"image_folder/32 has no feature \['frontal'\]"):
        pipeline.make_dataset(
            "image_folder/32", global_batch_size=1, task="frontalization", data_dir=str(tmp_path)
        )


def test_per_process_batch_size(data_dir):
    batch = _one_batch(
        data_dir, global_batch_size=8, process_index=1, process_count=2, keys=("index",)
    )
    assert batch["index"].shape == (4,)
    with pytest.raises(ValueError, match="divisible"):
        pipeline.make_dataset(
            NAME, global_batch_size=7, process_count=2, process_index=0, data_dir=data_dir
        )


GLOBAL_BATCH_CHECK = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import Mesh, PartitionSpec
    from stylejax.data import pipeline
    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    batch = {"image": np.arange(16 * 2 * 2 * 3, dtype=np.float32).reshape(16, 2, 2, 3),
             "segmentation": np.arange(16 * 4, dtype=np.int32).reshape(16, 2, 2),
             "filename": np.array([b"x"] * 16, dtype=object),
             "attributes": {"Smiling": np.arange(16) % 2 == 0}}
    out = pipeline.global_batch(batch, mesh)
    assert out["filename"] is None
    for key, value in (("image", batch["image"]), ("segmentation", batch["segmentation"]),
                       ("Smiling", batch["attributes"]["Smiling"])):
      array = out["attributes"][key] if key == "Smiling" else out[key]
      assert array.shape == value.shape and array.sharding.spec == PartitionSpec("data")
      np.testing.assert_array_equal(np.asarray(array), value)
      for shard in array.addressable_shards:  # 4 rows per 'data' slice, replicated on 'model'
        assert shard.data.shape[0] == 4
        np.testing.assert_array_equal(np.asarray(shard.data), value[shard.index])
    print("OK")
""")


def test_global_batch_on_an_8_device_mesh():
    if jax.device_count() == 8:
        exec(GLOBAL_BATCH_CHECK, {})
        return
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    result = subprocess.run(
        [sys.executable, "-c", GLOBAL_BATCH_CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_benchmark_measures_throughput(data_dir):
    from stylejax.data.benchmark import measure

    assert measure(NAME, "encode", batch_size=4, batches=3, data_dir=data_dir, warmup=1) > 0
