"""CelebAMask-HQ face-part classes, shared by the synthetic renderer and the real builders."""

import numpy as np

# Index = label value in the 19-class map; the order of the official CelebAMask-HQ merge
# script (later parts overwrite earlier ones). `l_`/`r_` are the subject's left/right.
CLASS_NAMES = (
    "background",
    "skin",
    "nose",
    "eye_g",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "l_ear",
    "r_ear",
    "mouth",
    "u_lip",
    "l_lip",
    "hair",
    "hat",
    "ear_r",
    "neck_l",
    "neck",
    "cloth",
)
NUM_CLASSES = len(CLASS_NAMES)
LABEL = {name: index for index, name in enumerate(CLASS_NAMES)}

# A mirror image turns the subject's left parts into right parts.
FLIP_LABELS = np.arange(NUM_CLASSES, dtype=np.uint8)
for _left, _right in (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear")):
    FLIP_LABELS[LABEL[_left]], FLIP_LABELS[LABEL[_right]] = LABEL[_right], LABEL[_left]

# Colours for visualising label maps, one RGB triple per class.
PALETTE = np.array(
    [
        (0, 0, 0),
        (204, 0, 0),
        (76, 153, 0),
        (204, 204, 0),
        (51, 51, 255),
        (204, 0, 204),
        (0, 255, 255),
        (255, 204, 204),
        (102, 51, 0),
        (255, 0, 0),
        (102, 204, 0),
        (255, 255, 0),
        (0, 0, 153),
        (0, 0, 204),
        (255, 51, 153),
        (0, 204, 204),
        (0, 51, 0),
        (255, 153, 51),
        (0, 204, 0),
    ],
    dtype=np.uint8,
)


def colorize(segmentation):
    """Label map (H, W) or (H, W, 1) -> RGB uint8 image (H, W, 3)."""
    return PALETTE[np.asarray(segmentation).reshape(np.shape(segmentation)[:2])]


# Eyes, brows, nose, mouth, lips and glasses: a few percent of the pixels that carry the
# identity and the Smiling attribute; the losses that weigh them more (the renderer
# objective's train.feature_weight, the encoders' loss.part_weight) use this mask.
FEATURE_PARTS = ("nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip")
MOUTH_PARTS = ("mouth", "u_lip", "l_lip")


def part_mask(labels, parts) -> np.ndarray:
    """[..., H, W] bool: where part labels ([..., H, W]) are one of `parts` (class names)."""
    return np.isin(labels, [LABEL[part] for part in parts])


def grow(mask, pixels: int) -> np.ndarray:
    """A [..., H, W] bool mask grown by `pixels` steps to the 4 neighbours."""
    for _ in range(pixels):
        grown = mask.copy()
        grown[..., 1:, :] |= mask[..., :-1, :]
        grown[..., :-1, :] |= mask[..., 1:, :]
        grown[..., 1:] |= mask[..., :-1]
        grown[..., :-1] |= mask[..., 1:]
        mask = grown
    return mask


def feature_mask(labels) -> np.ndarray:
    """True where part labels ([..., H, W]) are one of FEATURE_PARTS, with a trailing
    channel axis ([..., H, W, 1]) to weigh images by."""
    return part_mask(labels, FEATURE_PARTS)[..., None]


def feature_weights(labels, weight: float) -> np.ndarray:
    """float32 [..., H, W, 1] per-pixel loss weights: `weight` on FEATURE_PARTS, 1 elsewhere."""
    return np.where(feature_mask(labels), weight, 1.0).astype(np.float32)
