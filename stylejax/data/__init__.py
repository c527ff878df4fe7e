"""Data: TFDS builders (synthetic faces, FFHQ, CelebA-HQ, CelebAMask-HQ, image folders),
task transforms and the per-process input pipeline. Importing this package registers the
builders with TFDS."""

from stylejax.data import (
    real_faces,  # noqa: F401  (ffhq, celeba_hq, celeba_mask_hq, image_folder)
    synthetic_faces,  # noqa: F401  (registers synthetic_faces)
)
