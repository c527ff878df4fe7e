"""synthetic_faces: determinism, label/image alignment, counterfactuals, the TFDS build."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import stylejax.data  # noqa: F401  (registers the builders)
from stylejax.data import face_renderer as fr
from stylejax.data.labels import CLASS_NAMES, LABEL
from stylejax.data.synthetic_faces import (
    SyntheticFaces,
    SyntheticFacesConfig,
    example_factors,
    make_example,
)

TINY = SyntheticFacesConfig(name="tiny32", resolution=32, num_train=12, num_test=4)


def _factors(index, **overrides):
    return dict(fr.sample_factors(np.random.default_rng([7, index])), **overrides)


def _dilate(mask, steps=1):
    """Grows a boolean mask by `steps` pixels in all eight directions."""
    for _ in range(steps):
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        mask = grown.copy()
        mask[:, 1:] |= grown[:, :-1]
        mask[:, :-1] |= grown[:, 1:]
    return mask


def _build(config, data_dir):
    builder = SyntheticFaces(config=config, data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder


def test_registered_configs_and_split_sizes(tmp_path):
    builder = tfds.builder("synthetic_faces/64", data_dir=str(tmp_path))
    assert isinstance(builder, SyntheticFaces)
    assert [c.name for c in SyntheticFaces.BUILDER_CONFIGS] == ["32", "64", "128", "256"]
    assert (builder.builder_config.num_train, builder.builder_config.num_test) == (20_000, 2_000)
    assert builder.info.features["image"].shape == (64, 64, 3)


def test_same_seed_same_bytes(tmp_path):
    first, second = _build(TINY, tmp_path / "a"), _build(TINY, tmp_path / "b")
    files = sorted(p.name for p in first.data_path.iterdir() if "tfrecord" in p.name)
    assert files
    for name in files:
        assert (first.data_path / name).read_bytes() == (second.data_path / name).read_bytes()
    # A different index or split draws a different face.
    assert (
        make_example(0, "train", 32, 3)[1]["image"] != make_example(0, "train", 32, 4)[1]["image"]
    )
    assert make_example(0, "train", 32, 3)[1]["image"] != make_example(0, "test", 32, 3)[1]["image"]


def test_tfds_load_gives_all_features_consistent_with_factors(tmp_path):
    ds = tfds.load(
        "synthetic_faces", split="train", data_dir=str(tmp_path), builder_kwargs={"config": TINY}
    )
    examples = list(tfds.as_numpy(ds))
    assert sorted(int(e["index"]) for e in examples) == list(range(TINY.num_train))
    for example in examples:
        factors = fr.vector_to_factors(example["factors"])
        expected = make_example(TINY.seed, "train", 32, int(example["index"]))[1]
        np.testing.assert_array_equal(example["factors"], expected["factors"])
        image, labels = fr.render(factors, 32)
        np.testing.assert_array_equal(example["image"], image)
        np.testing.assert_array_equal(example["segmentation"][..., 0], labels)
        attributes = example["attributes"]
        assert attributes["Smiling"] == (factors["smile"] > 0.5)
        assert attributes["Eyeglasses"] == (factors["eyeglasses"] > 0.5)
        assert attributes["hair_color"] == int(factors["hair_color"])
        bucket, yaw = fr.YAW_BUCKETS[attributes["yaw_bucket"]], factors["yaw"]
        assert (bucket == "frontal") == (abs(yaw) < 12)
        assert bucket.startswith("left") == (yaw >= 12)  # turned towards the subject's left
        assert bucket.endswith("profile") == (abs(yaw) >= 35)


@pytest.mark.parametrize("index", range(6))
def test_labelled_parts_differ_from_background(index):
    """Masks align with images: wherever a part is labelled, the renderer drew something
    other than the background, and unlabelled pixels away from part edges are background."""
    factors = _factors(index)
    image, labels = fr.render(factors, 64)
    background = fr.background(factors, 64).astype(int)
    distance = np.abs(image.astype(int) - background).max(axis=-1)
    for label in np.unique(labels[labels > 0]):
        region = labels == label
        assert (distance[region] > 20).mean() > 0.97, CLASS_NAMES[label]
    interior_background = ~_dilate(labels > 0, 1)
    assert interior_background.any()
    assert distance[interior_background].max() <= 1


def test_parts_present_follow_the_factors():
    front = dict(yaw=0.0, roll=0.0)
    _, labels = fr.render(_factors(0, eyeglasses=1.0, smile=0.9, **front), 64)
    present = set(np.unique(labels))
    for part in (
        "skin",
        "nose",
        "eye_g",
        "l_eye",
        "r_eye",
        "l_brow",
        "r_brow",
        "mouth",
        "u_lip",
        "l_lip",
        "hair",
        "neck",
        "cloth",
    ):
        assert LABEL[part] in present, part
    _, labels = fr.render(_factors(0, eyeglasses=0.0, smile=0.1, **front), 64)
    assert LABEL["eye_g"] not in labels and LABEL["mouth"] not in labels
    # The subject's left eye is on the image's right when facing the camera.
    cols = np.arange(64)[None, :]
    assert (cols * (labels == LABEL["l_eye"])).sum() / (labels == LABEL["l_eye"]).sum() > 32
    assert (cols * (labels == LABEL["r_eye"])).sum() / (labels == LABEL["r_eye"]).sum() < 32


@pytest.mark.parametrize("index", range(6))
def test_smile_flip_changes_the_mouth_and_nothing_else(index):
    factors = _factors(index)
    flipped = fr.smile_flipped(factors)
    assert fr.attributes(flipped)["Smiling"] != fr.attributes(factors)["Smiling"]
    example = fr.render_example(factors, 64)
    image, labels = fr.render(factors, 64)
    flipped_image, flipped_labels = fr.render(flipped, 64)
    # The stored counterfactual is a full render of the flipped factors.
    np.testing.assert_array_equal(example["smile_flipped"], flipped_image)
    mouth_parts = [LABEL["mouth"], LABEL["u_lip"], LABEL["l_lip"]]
    mouth = np.isin(labels, mouth_parts) | np.isin(flipped_labels, mouth_parts)
    changed = (image != flipped_image).any(axis=-1)
    if mouth.any():  # the mouth can be hidden in a strong profile
        assert changed.any()
    # Anti-aliasing of thin lip corners reaches at most two pixels beyond the labels.
    near_mouth = _dilate(mouth, 2)
    assert not (changed & ~near_mouth).any()
    for part in ("hair", "l_eye", "r_eye", "nose", "background"):
        assert not changed[labels == LABEL[part]].any(), part
    np.testing.assert_array_equal(flipped_labels[~near_mouth], labels[~near_mouth])


def test_frontal_is_the_same_face_at_zero_yaw_and_roll():
    factors = _factors(3, yaw=40.0, roll=10.0)
    example = fr.render_example(factors, 64)
    frontal_image, frontal_labels = fr.render(dict(factors, yaw=0.0, roll=0.0), 64)
    np.testing.assert_array_equal(example["frontal"], frontal_image)
    assert (example["frontal"] != example["image"]).any()
    # Frontal eyes sit at mirrored columns on the same row.
    rows, cols = np.indices(frontal_labels.shape)
    centre = {}
    for part in ("l_eye", "r_eye"):
        region = frontal_labels == LABEL[part]
        centre[part] = rows[region].mean(), cols[region].mean()
    assert abs(centre["l_eye"][0] - centre["r_eye"][0]) < 0.5
    assert abs((centre["l_eye"][1] + centre["r_eye"][1]) / 2 - 31.5) < 0.5
    # An already frontal face is its own frontal render.
    still = fr.render_example(dict(factors, yaw=0.0, roll=0.0), 64)
    np.testing.assert_array_equal(still["image"], still["frontal"])


def test_sketch_marks_exactly_the_part_boundaries():
    labels = fr.render(_factors(1), 64)[1]
    sketch = fr.sketch(labels)[..., 0]
    boundary = np.zeros_like(labels, bool)
    boundary[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    boundary[1:] |= labels[1:] != labels[:-1]
    np.testing.assert_array_equal(sketch == 0, boundary)
    assert set(np.unique(sketch)) == {0, 255}
    assert (fr.sketch(labels, line_width=2) == 0).sum() > boundary.sum()


def test_example_grid_has_one_row_per_example_and_five_panels():
    from stylejax.data.visualize import COLUMNS, example_grid

    grid = example_grid(rows=2, resolution=32)
    assert grid.shape == (16 + 2 * 32, len(COLUMNS) * 32, 3) and grid.dtype == np.uint8
    first = fr.render_example(example_factors(TINY.seed, "train", 0), 32)
    np.testing.assert_array_equal(grid[16:48, :32], first["image"])
    np.testing.assert_array_equal(grid[16:48, 4 * 32 :], first["smile_flipped"])
