"""Data: TFDS builders (synthetic faces, FFHQ, CelebA-HQ, CelebAMask-HQ, image folders),
task transforms and the per-process input pipeline. Importing this package registers the
builders with TFDS. Without TFDS (an accelerator host that only trains the renderer-taught
generator, tools/train_renderer_device.py) the renderer and the factor map still import."""

try:
    import tensorflow_datasets  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    from stylejax.data import (
        real_faces,  # noqa: F401  (ffhq, celeba_hq, celeba_mask_hq, image_folder)
        synthetic_faces,  # noqa: F401  (registers synthetic_faces)
    )
