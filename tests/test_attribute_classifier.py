"""The attribute classifier that measures edits: it learns a visible attribute of the
synthetic faces, is cached with its settings, retrains when they change, and names a missing
attribute."""

import json

import jax
import numpy as np
import pytest
from conftest import build_synthetic_faces

from stylejax import attribute_classifier as ac
from stylejax.data.synthetic_faces import SyntheticFacesConfig

DATA = SyntheticFacesConfig(name="classifier32", resolution=32, num_train=256, num_test=64)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return build_synthetic_faces(DATA, tmp_path_factory.mktemp("tfds"))


def settings(data_dir, **fields):
    base = dict(
        data=f"synthetic_faces/{DATA.name}",
        attributes=("Eyeglasses",),
        img_size=32,
        steps=150,
        batch_size=16,
        dim_in=8,
        max_conv_dim=32,
        data_dir=data_dir,
    )
    return ac.Settings(**{**base, **fields})


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    return folder, ac.load_or_train(settings(data_dir), folder)


def test_learns_eyeglasses_and_records_its_settings(trained, data_dir):
    folder, clf = trained
    # 150 steps of batch 16 on 256 faces: 0.98 measured; chance is about 0.5.
    assert clf.test_accuracy["Eyeglasses"] >= 0.9
    record = json.loads((folder / "classifier.json").read_text())
    assert record["settings"]["attributes"] == ["Eyeglasses"]
    assert record["test_accuracy"] == clf.test_accuracy
    # predict() agrees with the recorded accuracy on the test split.
    hits = total = 0
    for x, labels in ac.batches(clf.settings, "test", 64, train=False):
        hits += int(np.sum(clf.predict(x) == labels.astype(bool)))
        total += len(x)
    assert total == DATA.num_test
    assert hits / total == pytest.approx(clf.test_accuracy["Eyeglasses"])


def test_cached_weights_are_reused_and_other_settings_retrain(trained, data_dir, monkeypatch):
    folder, clf = trained
    calls = []
    monkeypatch.setattr(ac, "train", lambda s: calls.append(s) or clf.params)
    again = ac.load_or_train(settings(data_dir), folder)
    assert calls == []
    leaves = (jax.tree_util.tree_leaves(p) for p in (clf.params, again.params))
    for a, b in zip(*leaves):
        np.testing.assert_array_equal(a, b)
    ac.load_or_train(settings(data_dir, steps=151), folder)
    assert len(calls) == 1 and calls[0].steps == 151


def test_a_missing_attribute_is_named(data_dir, tmp_path):
    with pytest.raises(
        ValueError, match=r"synthetic_faces/classifier32: no attribute 'Bald' \(it has"
    ):
        ac.load_or_train(settings(data_dir, attributes=("Bald",), steps=1), tmp_path)


def test_class_attributes_become_one_vs_rest_labels(data_dir):
    s = settings(data_dir, attributes=("Smiling", "hair_color=2", "hair_color=0"), steps=1)
    labels = ac.labels_of(s, {"Smiling": np.array([True, False]), "hair_color": np.array([2, 0])})
    np.testing.assert_array_equal(labels, [[1, 1, 0], [0, 0, 1]])
