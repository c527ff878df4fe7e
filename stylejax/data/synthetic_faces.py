"""`synthetic_faces`: procedural cartoon faces with ground truth no real data set has.

    import stylejax.data, tensorflow_datasets as tfds
    ds = tfds.load("synthetic_faces/64", split="train")   # builds on first use, offline

Every example is a pure function of (config seed, split, index), so two builds give the
same bytes. See docs/data.md for the features.
"""

import dataclasses
import functools

import numpy as np
import tensorflow_datasets as tfds

from stylejax.data import face_renderer as renderer
from stylejax.data import labels
from stylejax.data.building import default_num_workers, encode_png, map_in_workers
from stylejax.data.face_renderer import example_factors
from stylejax.data.labels import CLASS_NAMES


@dataclasses.dataclass
class SyntheticFacesConfig(tfds.core.BuilderConfig):
    resolution: int = 64
    num_train: int = 20_000
    num_test: int = 2_000
    seed: int = 0


def _config(resolution, num_train, num_test):
    return SyntheticFacesConfig(
        name=str(resolution),
        resolution=resolution,
        num_train=num_train,
        num_test=num_test,
        description=f"{resolution}x{resolution} px, {num_train} train / {num_test} test.",
    )


def make_example(seed, split, resolution, index):
    """One example as TFDS wants it (images as PNG bytes). Runs in build workers."""
    factors = example_factors(seed, split, index)
    rendered = renderer.render_example(factors, resolution)
    example = {key: encode_png(value) for key, value in rendered.items()}
    example.update(
        index=index,
        factors=renderer.factors_to_vector(factors),
        attributes=renderer.attributes(factors),
    )
    return index, example


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
    """Deterministic procedural faces with labels, sketches and counterfactual renders."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        _config(32, 20_000, 2_000),
        _config(64, 20_000, 2_000),
        _config(128, 10_000, 1_000),
        _config(256, 5_000, 500),
    ]
    num_workers = default_num_workers()  # build processes; tests may set 1

    def _info(self):
        r = self.builder_config.resolution
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(r, r, 3)),
                    # Label values index CLASS_NAMES (the CelebAMask-HQ order).
                    "segmentation": tfds.features.Image(shape=(r, r, 1)),
                    "sketch": tfds.features.Image(shape=(r, r, 1)),
                    "frontal": tfds.features.Image(shape=(r, r, 3)),
                    "smile_flipped": tfds.features.Image(shape=(r, r, 3)),
                    "factors": tfds.features.Tensor(
                        shape=(len(renderer.FACTOR_NAMES),), dtype=np.float32
                    ),
                    "attributes": tfds.features.FeaturesDict(
                        {
                            "Smiling": tfds.features.Scalar(dtype=np.bool_),
                            "Eyeglasses": tfds.features.Scalar(dtype=np.bool_),
                            "hair_color": tfds.features.ClassLabel(names=renderer.HAIR_COLORS),
                            "hair_style": tfds.features.ClassLabel(names=renderer.HAIR_STYLES),
                            "yaw_bucket": tfds.features.ClassLabel(names=renderer.YAW_BUCKETS),
                        }
                    ),
                    "index": np.int64,
                }
            ),
            metadata=tfds.core.MetadataDict(
                factor_names=list(renderer.FACTOR_NAMES), class_names=list(CLASS_NAMES)
            ),
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.num_train),
            "test": self._generate_examples("test", config.num_test),
        }

    def _generate_examples(self, split, num_examples):
        config = self.builder_config
        make = functools.partial(make_example, config.seed, split, config.resolution)
        yield from map_in_workers(make, range(num_examples), self.num_workers)


def smile_region(segmentation, image, flipped, dilate=2):
    """[N, H, W] bool: the lips and mouth of `image`, and every pixel its `smile_flipped`
    render redraws, grown by `dilate` pixels: the region an ideal Smiling edit changes."""
    lips = labels.part_mask(segmentation, labels.MOUTH_PARTS)
    return labels.grow(lips | np.any(np.abs(image - flipped) > 1e-6, axis=-1), dilate)
