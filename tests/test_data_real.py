"""Real-data builders, each built through the TFDS build path from a tiny fake copy of the
real folder layout; wrong folders and corrupt files."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import stylejax.data  # noqa: F401  (registers the builders)
from stylejax.data import real_faces
from stylejax.data.building import CorruptImageError
from stylejax.data.labels import LABEL

NUM_FAKE = 6
TEST_INDICES = (1, 4)  # fake CelebA-HQ images whose CelebA original is in CelebA's test set


def _colour(i):
    return (40 * i, 255 - 30 * i, 100)


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _solid(size, i):
    return np.full((size, size, 3), _colour(i), np.uint8)


def _build(name, manual_dir, data_dir, **kwargs):
    builder = tfds.builder(name, data_dir=str(data_dir), **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    return builder


def _examples(builder, split):
    return sorted(tfds.as_numpy(builder.as_dataset(split=split)), key=lambda e: e["index"])


@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setattr(real_faces.Ffhq, "NUM_IMAGES", NUM_FAKE)
    monkeypatch.setattr(real_faces.CelebaHq, "NUM_IMAGES", NUM_FAKE)


@pytest.fixture
def fake_celeba(tmp_path):
    """CelebAMask-HQ's layout: images, attribute and mapping files, per-part masks."""
    root = tmp_path / "CelebAMask-HQ"
    attributes = ["6", " ".join(real_faces.CELEBA_ATTRIBUTES)]
    mapping = ["idx orig_idx orig_file"]
    for i in range(NUM_FAKE):
        _save(root / "CelebA-HQ-img" / f"{i}.jpg", _solid(40, i))
        smiling = i % 2 == 0
        values = [
            "1" if (name == "Smiling" and smiling) else "-1"
            for name in real_faces.CELEBA_ATTRIBUTES
        ]
        attributes.append(f"{i}.jpg " + " ".join(values))
        orig = real_faces.CELEBA_FIRST_TEST_INDEX + i if i in TEST_INDICES else 1000 + i
        mapping.append(f"{i} {orig} {orig + 1:06d}.jpg")
        masks = root / "CelebAMask-HQ-mask-anno" / "0"
        full = np.full((32, 32), 255)
        top = np.zeros((32, 32))
        top[:8] = 255  # hair over the top quarter, drawn over the skin
        eye = np.zeros((32, 32))
        eye[12:16, 20:24] = 255
        for part, mask in (("skin", full), ("hair", top), ("l_eye", eye)):
            _save(masks / f"{i:05d}_{part}.png", mask)
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(attributes) + "\n")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    return root


def test_ffhq_from_official_subfolders(tmp_path, small_counts):
    manual = tmp_path / "ffhq"
    for i in range(NUM_FAKE):
        _save(manual / "images1024x1024" / "00000" / f"{i:05d}.png", _solid(48, i))
    builder = _build("ffhq/64", manual, tmp_path / "data")
    examples = _examples(builder, "train")
    assert [e["index"] for e in examples] == list(range(NUM_FAKE))
    for e in examples:
        assert e["image"].shape == (64, 64, 3)
        np.testing.assert_allclose(e["image"][32, 32], _colour(e["index"]), atol=2)


def test_ffhq_incomplete_folder_names_the_missing_files(tmp_path, small_counts):
    manual = tmp_path / "ffhq"
    for i in range(NUM_FAKE - 1):
        _save(manual / f"{i:05d}.png", _solid(16, i))
    with pytest.raises(real_faces.FolderError) as error:
        _build("ffhq/64", manual, tmp_path / "data")
    message = str(error.value)
    assert f"{NUM_FAKE - 1:05d}.png" in message and str(manual) in message
    assert "1 of 6 are missing" in message


def test_celeba_hq_split_and_attributes(tmp_path, small_counts, fake_celeba):
    builder = _build("celeba_hq/64", fake_celeba, tmp_path / "data")
    train, test = _examples(builder, "train"), _examples(builder, "test")
    assert [e["index"] for e in test] == list(TEST_INDICES)
    assert [e["index"] for e in train] == [i for i in range(NUM_FAKE) if i not in TEST_INDICES]
    for e in train + test:
        assert e["attributes"]["Smiling"] == (e["index"] % 2 == 0)
        assert not e["attributes"]["Eyeglasses"]
        np.testing.assert_allclose(e["image"][32, 32], _colour(e["index"]), atol=4)  # JPEG


def test_celeba_mask_hq_merges_part_masks_in_official_order(tmp_path, small_counts, fake_celeba):
    builder = _build("celeba_mask_hq/64", fake_celeba, tmp_path / "data")
    examples = _examples(builder, "train") + _examples(builder, "test")
    assert len(examples) == NUM_FAKE
    labels = examples[0]["segmentation"][..., 0]
    assert labels.shape == (64, 64)
    assert (labels[:16] == LABEL["hair"]).all()  # hair overwrites skin
    assert (labels[24:32, 40:48] == LABEL["l_eye"]).all()
    assert (labels[40:] == LABEL["skin"]).all()
    assert set(np.unique(labels)) == {LABEL["skin"], LABEL["hair"], LABEL["l_eye"]}


def test_celeba_wrong_folder_says_what_was_expected_where(tmp_path, small_counts):
    manual = tmp_path / "ffhq_instead"
    _save(manual / "00000.png", _solid(16, 0))
    with pytest.raises(real_faces.FolderError) as error:
        _build("celeba_hq/64", manual, tmp_path / "data")
    message = str(error.value)
    assert "CelebA-HQ-img" in message and "0.jpg" in message and "00000.png" in message


def test_celeba_mask_hq_without_masks_fails_clearly(tmp_path, small_counts, fake_celeba):
    for path in (fake_celeba / "CelebAMask-HQ-mask-anno" / "0").glob("00003_*.png"):
        path.unlink()
    with pytest.raises(real_faces.FolderError, match="00003_skin.png"):
        _build("celeba_mask_hq/64", fake_celeba, tmp_path / "data")


def test_image_folder_with_class_subfolders(tmp_path):
    manual = tmp_path / "pets"
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = (200, 10, 10)  # the centre square is red, the sides black
    _save(manual / "cats" / "a.png", wide)
    _save(manual / "dogs" / "b.jpg", _solid(30, 2))
    _save(manual / "top.png", _solid(30, 3))
    (manual / "notes.txt").write_text("not an image")
    builder = _build("image_folder/32", manual, tmp_path / "data")
    examples = {e["filename"].decode(): e for e in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert sorted(examples) == sorted(
        str(manual / p) for p in ("cats/a.png", "dogs/b.jpg", "top.png")
    )
    labels = {
        name.split("/")[-1]: (int(e["label"]), e["class_name"].decode())
        for name, e in examples.items()
    }
    assert labels == {"a.png": (0, "cats"), "b.jpg": (1, "dogs"), "top.png": (-1, "")}
    assert builder.info.metadata["num_classes"] == 2
    assert builder.info.metadata["skipped_files"] == [
        f"{manual / 'notes.txt'}: not an image (.png, .jpg, .jpeg, .bmp, .webp)"
    ]
    cat = examples[str(manual / "cats" / "a.png")]["image"]
    assert cat.shape == (32, 32, 3)
    np.testing.assert_allclose(cat[4:-4, 4:-4].reshape(-1, 3).mean(0), (200, 10, 10), atol=3)


def _folder_with_corrupt_files(root):
    _save(root / "good0.png", _solid(16, 0))
    _save(root / "good1.png", _solid(16, 1))
    _save(root / "truncated.png", _solid(64, 2))
    data = (root / "truncated.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "garbage.jpg").write_bytes(b"this is not a jpeg")
    return root


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    manual = _folder_with_corrupt_files(tmp_path / "images")
    builder = _build("image_folder/32", manual, tmp_path / "data", on_corrupt="skip")
    assert builder.info.splits["train"].num_examples == 2
    reloaded = tfds.builder("image_folder/32", data_dir=str(tmp_path / "data"))
    skipped = reloaded.info.metadata["skipped_files"]
    assert len(skipped) == 2
    assert any(str(manual / "truncated.png") in s for s in skipped)
    assert any(str(manual / "garbage.jpg") in s for s in skipped)


def test_corrupt_image_stops_the_build_when_asked(tmp_path):
    manual = _folder_with_corrupt_files(tmp_path / "images")
    with pytest.raises(CorruptImageError) as error:
        _build("image_folder/32", manual, tmp_path / "data", on_corrupt="stop")
    assert str(manual / "garbage.jpg") in str(error.value)
    assert "on_corrupt='skip'" in str(error.value)
    with pytest.raises(ValueError, match="on_corrupt"):
        tfds.builder("image_folder/32", data_dir=str(tmp_path / "data"), on_corrupt="ignore")


def test_image_folder_with_a_named_config(tmp_path):
    manual = tmp_path / "cats"
    _save(manual / "a.png", _solid(20, 1))
    config = real_faces.ResolutionConfig(name="cats16", resolution=16)
    builder = real_faces.ImageFolder(config=config, data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    (example,) = tfds.as_numpy(builder.as_dataset(split="train"))
    assert example["image"].shape == (16, 16, 3)
    assert builder.data_path.parent.parent.name == "image_folder"
    assert builder.data_path.parent.name == "cats16"
