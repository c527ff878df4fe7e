"""e4e's editing proof (train/e4e.py: edit_consistency) on tiny synthetic faces, with an
encoder whose codes are the pixels: the fitted boundary, the move to a fixed
distance, the classifier's accuracies and the PSNRs against smile_flipped are checked against
direct computations."""

from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import build_synthetic_faces
from PIL import Image

import stylejax
from configs import e4e as e4e_configs
from stylejax import attribute_classifier, metrics, stylegan2_editing
from stylejax.data import synthetic_faces
from stylejax.data.synthetic_faces import SyntheticFacesConfig
from stylejax.train import e4e as e4e_train

RES = 16
DATA = SyntheticFacesConfig(name="edit16", resolution=RES, num_train=96, num_test=24)


class PixelCodes:
    """An exact 'encoder': W+ codes [N, 1, H·W·3] are the images' pixels."""

    input_size = RES

    def encode(self, x):
        return np.asarray(x).reshape(len(x), 1, -1)

    def decode(self, codes):
        return np.asarray(codes).reshape(len(codes), RES, RES, 3)

    def reconstruct(self, x):
        return np.asarray(x), self.encode(x)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = build_synthetic_faces(DATA, tmp_path_factory.mktemp("tfds"))
    config = e4e_configs.get_config()
    config.data.name = f"synthetic_faces/{DATA.name}"
    config.data.directory = directory
    config.edit.fit_on = "encoded"  # the pixel codes of training faces
    config.edit.fit_examples = 64  # of 96: the limit is honoured
    config.edit.distance = 3.0
    config.edit.num_examples = 1000  # more than the split: all 24
    settings = attribute_classifier.Settings(
        data=config.data.name,
        attributes=("Smiling",),
        img_size=RES,
        steps=20,
        batch_size=16,
        dim_in=8,
        max_conv_dim=16,
        data_dir=directory,
    )
    folder = tmp_path_factory.mktemp("edit")
    clf = attribute_classifier.load_or_train(settings, folder)
    report = e4e_train.edit_consistency(config, PixelCodes(), folder, clf=clf)
    return config, clf, folder, report


def split(config, name, keys, limit):
    batches = list(e4e_train._examples(config, name, keys, limit))
    return jax.tree_util.tree_map(lambda *v: np.concatenate(v), *batches)


def test_move_to_distance_lands_on_the_target_distances():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(5, 3, 4)).astype(np.float32)
    direction = rng.normal(size=(3, 4))
    direction /= np.linalg.norm(direction)
    boundary = stylegan2_editing.Boundary(direction.astype(np.float32), 0.3, 1.0)
    target = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    moved = e4e_train.move_to_distance(codes, boundary, target)
    np.testing.assert_allclose(e4e_train.boundary_distance(moved, boundary), target, atol=1e-5)
    # Only the component along the normal changes.
    step = moved - codes
    along = np.einsum("nkd,kd->n", step, direction)
    np.testing.assert_allclose(step, np.einsum("n,kd->nkd", along, direction), atol=1e-5)


def test_a_w_boundary_moves_every_layer_of_w_plus_codes_alike():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(4, 3, 5)).astype(np.float32)
    direction = rng.normal(size=5)
    direction /= np.linalg.norm(direction)
    boundary = stylegan2_editing.Boundary(direction.astype(np.float32), -0.2, 1.0)
    per_layer = np.einsum("nkd,d->nk", codes, direction) - 0.2
    np.testing.assert_allclose(
        e4e_train.boundary_distance(codes, boundary), per_layer.mean(1), atol=1e-5
    )
    target = np.array([-1.0, 0.0, 0.5, 3.0])
    moved = e4e_train.move_to_distance(codes, boundary, target)
    np.testing.assert_allclose(e4e_train.boundary_distance(moved, boundary), target, atol=1e-5)
    step = moved - codes
    np.testing.assert_allclose(step, np.broadcast_to(step[:, :1], step.shape), atol=1e-6)


class RednessClassifier:
    """A stand-in attribute classifier: logit = the mean red minus the mean blue."""

    def logits(self, images):
        images = np.asarray(images)
        return (images[..., 0].mean((1, 2)) - images[..., 2].mean((1, 2)))[:, None]


def test_classified_samples_are_the_generators_w_labelled_by_the_classifier():
    from stylejax import stylegan2_generate
    from stylejax.model_format import load_pretrained

    G, variables = load_pretrained(
        Path(stylejax.__file__).parent / "pretrained" / "synthetic64_gan"
    )
    w, labels = stylegan2_editing.classified_samples(G, variables, RednessClassifier(), 150, 3)
    z, want_w = stylegan2_editing.sample_w(G, variables, 150, 3)
    np.testing.assert_allclose(w, want_w, rtol=1e-6)
    images = stylegan2_generate.generate(G, variables, z, batch_size=50)
    want = RednessClassifier().logits(images)[:, 0] > 0
    np.testing.assert_array_equal(labels, want)
    assert 0 < labels.mean() < 1  # both classes: the test can tell a wrong labelling


def test_report_counts_and_the_fitted_boundary(setup):
    config, _clf, _folder, report = setup
    assert report["attribute"] == "Smiling"
    assert report["fit_examples"] == 64 and report["test_examples"] == DATA.num_test
    train = split(config, "train", ("image", "attributes"), 64)
    labels = train["attributes"]["Smiling"].astype(bool)
    boundary = stylegan2_editing.mean_difference(train["image"].reshape(64, 1, -1), labels)
    assert report["boundary_train_accuracy"] == pytest.approx(boundary.accuracy)
    distance = e4e_train.boundary_distance(train["image"].reshape(64, 1, -1), boundary)
    want = [distance[~labels].mean(), distance[labels].mean()]
    np.testing.assert_allclose(report["class_mean_distance"], want, rtol=1e-4)
    assert want[0] < 0 < want[1]  # the direction points towards Smiling


def test_accuracies_and_psnrs_match_direct_computations(setup):
    config, clf, folder, report = setup
    keys = ("image", "attributes", "segmentation", "smile_flipped")
    test = split(config, "test", keys, 1000)
    x, label = test["image"], test["attributes"]["Smiling"].astype(bool)
    # The pixel encoder reconstructs exactly: its accuracy is the classifier's own.
    direct = np.mean(clf.predict(x)[:, 0] == label)
    assert report["classifier_accuracy_reconstruction"] == pytest.approx(direct)
    region = synthetic_faces.smile_region(test["segmentation"], x, test["smile_flipped"])
    psnr = metrics.MaskedPSNR()
    psnr.add("mouth", x, test["smile_flipped"], region)
    assert report["psnr_mouth_reconstruction"] == pytest.approx(psnr.result()["mouth"], rel=1e-6)
    # The edits, rebuilt from the fitted boundary: their accuracy and score shift.
    train = split(config, "train", ("image", "attributes"), 64)
    train_codes = train["image"].reshape(64, 1, -1)
    train_labels = train["attributes"]["Smiling"].astype(bool)
    boundary = stylegan2_editing.mean_difference(train_codes, train_labels)
    codes = x.reshape(len(x), 1, -1)
    target = np.where(label, -config.edit.distance, config.edit.distance)
    edit = e4e_train.move_to_distance(codes, boundary, target)
    edit = edit.reshape(x.shape)
    edit_score = np.asarray(clf.logits(edit))[:, 0]
    assert report["classifier_accuracy_edit"] == pytest.approx(np.mean((edit_score > 0) == ~label))
    shift = np.where(label, -1.0, 1.0) * (edit_score - np.asarray(clf.logits(x))[:, 0])
    assert report["score_shift_to_target"] == pytest.approx(shift.mean(), rel=1e-4, abs=1e-5)
    assert report["fraction_moved_to_target"] == pytest.approx(np.mean(shift > 0))
    assert np.isfinite(report["psnr_mouth_edit"]) and np.isfinite(report["psnr_outside_mouth_edit"])
    psnr.add("outside", edit, x, ~region)
    want = psnr.result()["outside"]
    assert report["psnr_outside_mouth_vs_reconstruction"] == pytest.approx(want, rel=1e-6)
    grid = np.asarray(Image.open(folder / "edit_Smiling.png"))
    assert grid.shape == (4 * RES + 3, 8 * RES + 7, 3)  # input, reconstruction, edit, truth
