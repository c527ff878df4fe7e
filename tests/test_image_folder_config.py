"""config.data.folder: your own folder of images built as image_folder/<res> in a data_dir of
its own (stylejax.data.image_folder), reached through pipeline.make_dataset(folder=...), a
data_dir made for the folder, and stylejax.main's resolve_config for every trainer."""

import importlib
import json
import logging
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import stylejax.data  # noqa: F401  (registers the builders)
from stylejax.data import image_folder, pipeline
from stylejax.data.real_faces import FolderError

METHODS = ("stylegan2", "psp", "restyle", "e4e", "sean", "l2m")


def _image(path, value, size=20, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path, format=fmt)


def _folder(root, n=3):
    for i in range(n):
        _image(root / f"img{i}.png", 30 * i)
    _image(root / "photo.jpg", 200, fmt="JPEG")
    return root


def _examples(folder, data_dir, keys=("image", "label", "filename")):
    ds = pipeline.load("image_folder/32", data_dir=str(data_dir), folder=folder, keys=keys)
    return sorted(tfds.as_numpy(ds), key=lambda e: e["filename"])


def test_a_folder_builds_with_progress_and_reports_corrupt_files(tmp_path, caplog):
    folder = _folder(tmp_path / "mine")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"hidden: ignored")
    with caplog.at_level(logging.INFO):
        examples = _examples(folder, tmp_path / "data")
    assert [e["filename"].decode() for e in examples] == [
        str(folder.resolve() / n) for n in ("img0.png", "img1.png", "img2.png", "photo.jpg")
    ]
    assert examples[0]["image"].shape == (32, 32, 3)
    assert {int(e["label"]) for e in examples} == {-1}  # no class sub-folders
    log = caplog.text
    assert "image_folder/32: read 5 of 5 images, 4 written" in log  # the build's progress
    assert "skipped 2 file(s)" in log
    assert f"{folder.resolve() / 'broken.png'}: cannot decode" in log
    assert f"{folder.resolve() / 'notes.txt'}: not an image" in log
    builder = image_folder.prepare("image_folder/32", folder, str(tmp_path / "data"))
    skipped = builder.info.metadata["skipped_files"]
    assert len(skipped) == 2 and not any(".DS_Store" in s for s in skipped)
    assert builder.info.metadata["num_classes"] == 0


def test_empty_missing_or_unreadable_folders_fail_naming_the_folder(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FolderError, match=f"data.folder={empty}: the folder is empty"):
        image_folder.prepare("image_folder/32", empty, str(tmp_path / "data"))
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(FolderError, match=f"in {empty}, found none"):
        image_folder.prepare("image_folder/32", empty, str(tmp_path / "data"))
    with pytest.raises(FolderError, match=f"data.folder={tmp_path / 'nowhere'}: no such folder"):
        image_folder.prepare("image_folder/32", tmp_path / "nowhere", str(tmp_path / "data"))
    with pytest.raises(FolderError, match="not a folder"):
        image_folder.prepare("image_folder/32", empty / "readme.txt", str(tmp_path / "data"))

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(image_folder.os, "listdir", denied)
    with pytest.raises(FolderError, match=f"data.folder={empty}: cannot read this folder"):
        image_folder.prepare("image_folder/32", empty, str(tmp_path / "data"))


def test_two_folders_do_not_share_a_cache_and_a_changed_folder_is_rebuilt(tmp_path):
    data = tmp_path / "data"
    a, b = _folder(tmp_path / "a", n=1), _folder(tmp_path / "b", n=3)
    dir_a, dir_b = (image_folder.folder_data_dir(f, str(data)) for f in (a, b))
    assert dir_a != dir_b and {os.path.dirname(d) for d in (dir_a, dir_b)} == {
        str(data / "image_folders")
    }
    assert len(_examples(a, data)) == 2 and len(_examples(b, data)) == 4
    assert len(_examples(a, data)) == 2  # reads its own build again
    # The folder's data_dir alone finds the folder (what trainers pass after resolve_config).
    assert image_folder.folder_data_dir(a, dir_a) == dir_a
    assert len(_examples(None, dir_a)) == 2
    _image(a / "new.png", 99)
    assert len(_examples(a, data)) == 3  # rebuilt: the folder's files changed


def test_class_subfolders_become_labels(tmp_path):
    folder = tmp_path / "pets"
    _image(folder / "dogs" / "d0.png", 10)
    _image(folder / "cats" / "c0.png", 20)
    _image(folder / "cats" / "c1.jpg", 30, fmt="JPEG")
    _image(folder / "cats" / "kittens" / "deep.png", 40)  # deeper than one level: skipped
    examples = _examples(
        folder, tmp_path / "data", keys=("image", "label", "class_name", "filename")
    )
    labels = {os.path.basename(e["filename"].decode()): int(e["label"]) for e in examples}
    assert labels == {"c0.png": 0, "c1.jpg": 0, "d0.png": 1}
    assert {e["class_name"].decode() for e in examples} == {"cats", "dogs"}
    meta = image_folder.prepare("image_folder/32", folder, str(tmp_path / "data")).info.metadata
    assert (meta["num_classes"], meta["class_names"]) == (2, ["cats", "dogs"])
    assert any("kittens/: a folder deeper than one class level" in s for s in meta["skipped_files"])
    # The training pipeline passes the integer label on with the images.
    ds = pipeline.make_dataset(
        "image_folder/32",
        global_batch_size=3,
        seed=None,
        repeat=False,
        keys=("image", "label"),
        data_dir=str(tmp_path / "data"),
        folder=folder,
    )
    batch = next(ds.as_numpy_iterator())
    assert batch["image"].shape == (3, 32, 32, 3) and sorted(batch["label"]) == [0, 0, 1]


def test_stylegan2_ada_dataset_json_labels(tmp_path):
    folder = tmp_path / "ada"
    _image(folder / "00000" / "img00000000.png", 10)
    _image(folder / "00000" / "img00000001.png", 20)
    labels = [["00000/img00000000.png", 2], ["00000/img00000001.png", 0]]
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    examples = _examples(folder, tmp_path / "data")
    assert [int(e["label"]) for e in examples] == [2, 0]  # not the chunk folder 00000/
    meta = image_folder.prepare("image_folder/32", folder, str(tmp_path / "data")).info.metadata
    assert meta["num_classes"] == 3 and meta["skipped_files"] == []


@pytest.mark.parametrize("method", METHODS)
def test_every_method_config_has_the_folder_field(method):
    assert importlib.import_module(f"configs.{method}").get_config().data.folder == ""


def test_the_config_field_reaches_a_trainer_through_data_directory(tmp_path):
    from configs import stylegan2 as stylegan2_config
    from stylejax.train import stylegan2

    folder = _folder(tmp_path / "mine")
    config = stylegan2_config.get_config()
    image_folder.resolve_config(config)  # no folder: nothing changes
    assert config.data.directory == ""
    config.data.name, config.data.folder = "image_folder/32", str(folder)
    config.data.directory, config.batch_size = str(tmp_path / "data"), 2
    image_folder.resolve_config(config)  # what stylejax.main does first
    assert config.data.directory == image_folder.folder_data_dir(folder, str(tmp_path / "data"))
    batches, _ = stylegan2.make_data(config)  # the trainer's own unchanged call
    assert next(iter(batches))["image"].shape == (2, 32, 32, 3)
    config.data.name = "ffhq/64"
    with pytest.raises(ValueError, match="needs config.data.name=image_folder/<resolution>"):
        image_folder.resolve_config(config)
