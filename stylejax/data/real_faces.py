"""TFDS builders that read the user's local copy of the real face data sets.

Nothing is downloaded: put the files in the builder's manual_dir (by default
`<data_dir>/downloads/manual/`, or pass `download_config=tfds.download.DownloadConfig(
manual_dir=...)`). Every builder checks the folder first and names the files it expected,
where, and what it found. Unreadable images are skipped and counted (`on_corrupt="skip"`,
the count is in the dataset's metadata) or stop the build (`on_corrupt="stop"`):

    tfds.builder("celeba_mask_hq/256", on_corrupt="stop").download_and_prepare(...)
"""

import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from stylejax.data import building
from stylejax.data.labels import CLASS_NAMES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
# CelebA's own partition: original images from this index on (0-based, as in the mapping
# file) are its test set. Applied to CelebA-HQ it gives the official CelebAMask-HQ test
# split of 2,824 images; the remaining 27,176 (CelebA train + val) form our train split.
CELEBA_FIRST_TEST_INDEX = 182_638
MASKS_PER_FOLDER = 2_000  # CelebAMask-HQ-mask-anno/<index // 2000>/


class FolderError(FileNotFoundError):
    """The manual folder does not hold what the builder expects."""


def _listing(folder, limit=8):
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} does not exist"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{folder} holds {names[:limit] or 'nothing'}{more}"


def _missing_error(dataset, what, where, missing, total):
    shown = ", ".join(str(m) for m in missing[:5])
    return FolderError(
        f"{dataset}: expected {what} in {where}; {len(missing)} of {total} are missing "
        f"(first: {shown}). Found: {_listing(where)}. Point manual_dir at the folder that "
        "holds the complete extracted data set."
    )


@dataclasses.dataclass
class ResolutionConfig(tfds.core.BuilderConfig):
    resolution: int = 256


def _resolution_configs(resolutions):
    return [
        ResolutionConfig(name=str(r), resolution=r, description=f"{r}x{r} px") for r in resolutions
    ]


def _read_image_example(size, index_and_path):
    index, path = index_and_path
    try:
        return {"image": building.read_square_image(path, size), "index": index}
    except building.CorruptImageError as error:
        return error


class _ManualImageBuilder(tfds.core.GeneratorBasedBuilder):
    """Common part: resolution from the config, on_corrupt policy, parallel decoding."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    num_workers = building.default_num_workers()

    def __init__(self, *, on_corrupt="skip", **kwargs):
        self._corrupt = building.CorruptFileLog(on_corrupt)
        super().__init__(**kwargs)

    @property
    def resolution(self):
        return self.builder_config.resolution

    def _image_features(self, **extra):
        r = self.resolution
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(r, r, 3)), "index": np.int64, **extra}
            ),
            metadata=tfds.core.MetadataDict(skipped_files=[]),
        )

    def _generate_examples(self, read_fn, items):
        """Yields (key, example) for items read by read_fn in workers, applying on_corrupt,
        and logs the progress every tenth of the items and the skipped files at the end.
        read_fn returns an example dict, or the CorruptImageError it hit."""
        keys = [key for key, _ in items]
        results = building.map_in_workers(read_fn, [item for _, item in items], self.num_workers)
        name, every, written = (
            f"{self.name}/{self.builder_config.name}",
            max(1, len(items) // 10),
            0,
        )
        for done, (key, result) in enumerate(zip(keys, results), start=1):
            if isinstance(result, building.CorruptImageError):
                self._corrupt.report(result)
                self.info.metadata["skipped_files"] = list(self._corrupt.skipped)
            else:
                written += 1
                yield key, result
            if done % every == 0 or done == len(items):
                logging.info(
                    "%s: read %d of %d images, %d written", name, done, len(items), written
                )
        if self._corrupt.skipped:
            logging.warning("%s: %s", name, skipped_report(self._corrupt.skipped))


def skipped_report(skipped, limit=20):
    """One line naming the skipped files (`path: reason` each) and their count."""
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return (
        f"skipped {len(skipped)} file(s) (listed in the data set's "
        f"metadata['skipped_files']): {'; '.join(skipped[:limit])}{more}"
    )


def _check_dir(dataset, folder, expected):
    if not Path(folder).is_dir():
        raise FolderError(
            f"{dataset}: expected {expected} in {folder}, but that folder does "
            f"not exist. Found: {_listing(Path(folder).parent)}."
        )


class Ffhq(_ManualImageBuilder):
    """FFHQ from a folder of its PNGs (any published resolution), resized to the config's."""

    BUILDER_CONFIGS = _resolution_configs((64, 128, 256, 512, 1024))
    NUM_IMAGES = 70_000
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the FFHQ PNGs 00000.png ... 69999.png in manual_dir, flat or in the official "
        "sub-folders (images1024x1024/00000/00000.png, thumbnails128x128/..., ...)."
    )

    def _info(self):
        return self._image_features()

    def _split_generators(self, dl_manager):
        folder = Path(dl_manager.manual_dir)
        _check_dir("ffhq", folder, "the FFHQ PNGs 00000.png ... 69999.png")
        found = {}  # several copies: the first in path order (images1024x1024 before thumbnails)
        for path in sorted(folder.rglob("*.png")):
            if re.fullmatch(r"\d{5}", path.stem):
                found.setdefault(int(path.stem), path)
        missing = [f"{i:05d}.png" for i in range(self.NUM_IMAGES) if i not in found]
        if missing:
            raise _missing_error(
                "ffhq",
                f"the FFHQ PNGs 00000.png ... {self.NUM_IMAGES - 1:05d}.png",
                folder,
                missing,
                self.NUM_IMAGES,
            )
        items = [(i, (i, found[i])) for i in range(self.NUM_IMAGES)]
        return {
            "train": self._generate_examples(
                functools.partial(_read_image_example, self.resolution), items
            )
        }


def _read_celeba_hq_index(folder, num_images):
    """Reads the attribute and mapping files of an extracted CelebAMask-HQ folder.
    Returns (attributes: {index: {name: bool}}, is_test: {index: bool})."""
    attribute_file = folder / "CelebAMask-HQ-attribute-anno.txt"
    mapping_file = folder / "CelebA-HQ-to-CelebA-mapping.txt"
    for path in (attribute_file, mapping_file):
        if not path.is_file():
            raise FolderError(
                f"celeba_hq: expected the file {path.name} in {folder} (it comes "
                f"with CelebAMask-HQ). Found: {_listing(folder)}."
            )
    lines = attribute_file.read_text().split("\n")
    names = tuple(lines[1].split()) if len(lines) > 1 else ()
    if names != CELEBA_ATTRIBUTES:
        raise FolderError(
            f"{attribute_file}: expected the 40 CelebA attribute names on line 2, "
            f"found {names[:5]}... ({len(names)} names)."
        )
    attributes = {}
    for line in lines[2:]:
        fields = line.split()
        if fields:
            values = fields[1:]
            if len(values) != len(names):
                raise FolderError(
                    f"{attribute_file}: expected '<n>.jpg' and 40 values of 1/-1 "
                    f"per line, found {line!r}."
                )
            attributes[int(Path(fields[0]).stem)] = {n: v == "1" for n, v in zip(names, values)}
    is_test = {}
    for line in mapping_file.read_text().split("\n")[1:]:
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
            raise FolderError(
                f"{mapping_file}: expected lines 'idx orig_idx orig_file', found {line!r}."
            )
        is_test[int(fields[0])] = int(fields[1]) >= CELEBA_FIRST_TEST_INDEX
    for what, table, path in (
        ("attributes", attributes, attribute_file),
        ("a mapping", is_test, mapping_file),
    ):
        missing = [i for i in range(num_images) if i not in table]
        if missing:
            raise FolderError(
                f"{path}: expected {what} for images 0 ... {num_images - 1}, "
                f"{len(missing)} missing (first: {missing[:5]})."
            )
    return attributes, is_test


class CelebaHq(_ManualImageBuilder):
    """CelebA-HQ images with the 40 CelebA attributes; train 27,176 / test 2,824."""

    BUILDER_CONFIGS = _resolution_configs((64, 128, 256, 512, 1024))
    NUM_IMAGES = 30_000
    WITH_MASKS = False
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Extract CelebAMask-HQ.zip into manual_dir, so that it holds CelebA-HQ-img/0.jpg ... "
        "29999.jpg, CelebAMask-HQ-attribute-anno.txt and CelebA-HQ-to-CelebA-mapping.txt."
    )

    def _info(self):
        r = self.resolution
        # Label values index CLASS_NAMES.
        masks = {"segmentation": tfds.features.Image(shape=(r, r, 1))} if self.WITH_MASKS else {}
        return self._image_features(
            attributes=tfds.features.FeaturesDict(
                {name: tfds.features.Scalar(dtype=np.bool_) for name in CELEBA_ATTRIBUTES}
            ),
            **masks,
        )

    def _image_paths(self, folder):
        images = folder / "CelebA-HQ-img"
        expected = f"the images 0.jpg ... {self.NUM_IMAGES - 1}.jpg"
        _check_dir(self.name, images, expected)
        paths = [images / f"{i}.jpg" for i in range(self.NUM_IMAGES)]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise _missing_error(self.name, expected, images, missing, self.NUM_IMAGES)
        return paths

    def _split_generators(self, dl_manager):
        folder = Path(dl_manager.manual_dir)
        paths = self._image_paths(folder)
        attributes, is_test = _read_celeba_hq_index(folder, self.NUM_IMAGES)
        read = functools.partial(_read_celeba_example, self.resolution, folder, self.WITH_MASKS)
        splits = {}
        for split, test in (("train", False), ("test", True)):
            items = [
                (i, (i, paths[i], attributes[i]))
                for i in range(self.NUM_IMAGES)
                if is_test[i] == test
            ]
            splits[split] = self._generate_examples(read, items)
        return splits


def _read_celeba_example(size, folder, with_masks, item):
    index, path, attributes = item
    example = _read_image_example(size, (index, path))
    if isinstance(example, building.CorruptImageError):
        return example
    example["attributes"] = attributes
    if with_masks:
        mask_dir = folder / "CelebAMask-HQ-mask-anno" / str(index // MASKS_PER_FOLDER)
        try:
            example["segmentation"] = merge_part_masks(mask_dir, index, size)
        except building.CorruptImageError as error:
            return error
    return example


def merge_part_masks(mask_dir, index, size):
    """Merges CelebAMask-HQ's per-part masks `<index:05d>_<part>.png` into one label map
    (size x size x 1, uint8), later parts overwriting earlier ones as in the official script."""
    labels = None
    for label, part in enumerate(CLASS_NAMES[1:], start=1):
        path = Path(mask_dir) / f"{index:05d}_{part}.png"
        if path.is_file():
            mask = np.asarray(building.open_image(path, "L")) > 0
            labels = np.zeros(mask.shape, np.uint8) if labels is None else labels
            labels[mask] = label
    if labels is None:
        raise FolderError(
            f"celeba_mask_hq: expected part masks {index:05d}_<part>.png in {mask_dir}, found none."
        )
    image = Image.fromarray(labels)
    if image.size != (size, size):
        image = image.resize((size, size), Image.NEAREST)
    return np.asarray(image)[..., None]


class CelebaMaskHq(CelebaHq):
    """CelebAMask-HQ: CelebA-HQ images, attributes and the 19-class part label map."""

    BUILDER_CONFIGS = _resolution_configs((64, 128, 256, 512))
    WITH_MASKS = True
    MANUAL_DOWNLOAD_INSTRUCTIONS = CelebaHq.MANUAL_DOWNLOAD_INSTRUCTIONS + (
        " The part masks must be in CelebAMask-HQ-mask-anno/<index // 2000>/<index:05d>_<part>.png."
    )

    def _image_paths(self, folder):
        masks = folder / "CelebAMask-HQ-mask-anno"
        _check_dir(self.name, masks, "the part-mask folders 0/ ... 14/")
        missing = [
            f"{i // MASKS_PER_FOLDER}/{i:05d}_skin.png"
            for i in range(self.NUM_IMAGES)
            if not (masks / str(i // MASKS_PER_FOLDER) / f"{i:05d}_skin.png").is_file()
        ]
        if missing:
            raise _missing_error(
                self.name, "a skin mask for every image", masks, missing, self.NUM_IMAGES
            )
        return super()._image_paths(folder)


def _read_folder_example(size, item):
    path, label, class_name = item
    try:
        return {
            "image": building.read_square_image(path, size),
            "label": label,
            "class_name": class_name,
            "filename": str(path),
        }
    except building.CorruptImageError as error:
        return error


# stylegan2-ada's dataset_tool writes it: {"labels": [["00000/img00000000.png", 6], ...] or null}.
LABELS_FILE = "dataset.json"
FOLDER_HINT = "Point data.folder (--config.data.folder=DIR) or manual_dir at your images."


def walk_folder(folder):
    """(files, skipped): the files at the top of `folder` and in its sub-folders (not deeper),
    as sorted relative Paths, hidden names ('.*') left out; and a `path: reason` line for
    each sub-folder that could not be listed or lies deeper than one level."""
    folder = Path(folder)
    files, skipped = [], []

    def unreadable(error):
        skipped.append(f"{error.filename}: cannot list this folder ({error.strerror})")

    # followlinks: symlinked class folders are read; loops cannot arise at depth 1.
    for root, dirs, names in os.walk(folder, onerror=unreadable, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if Path(root) != folder:
            skipped += [f"{Path(root, d)}/: a folder deeper than one class level" for d in dirs]
            dirs[:] = []
        files += [Path(root, n).relative_to(folder) for n in names if not n.startswith(".")]
    return sorted(files), skipped


def folder_fingerprint(folder, files):
    """sha256 over the files' relative paths, sizes and modification times: any file added,
    removed, replaced or touched changes it."""
    digest = hashlib.sha256()
    for rel in files:
        try:
            stat = (Path(folder) / rel).stat()
            line = f"{rel.as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n"
        except OSError:
            line = f"{rel.as_posix()}\t?\n"
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _folder_labels(folder, images):
    """(class_names, labels), one label per image, -1 for none: dataset.json's integer labels
    when it has some ("labels": null: none), else the index of the image's class sub-folder
    in the sorted sub-folder names (-1 for images at the top)."""
    path = folder / LABELS_FILE
    if not path.is_file():
        names = sorted({rel.parts[0] for rel in images if len(rel.parts) == 2})
        index = {name: i for i, name in enumerate(names)}
        return names, [index[rel.parts[0]] if len(rel.parts) == 2 else -1 for rel in images]
    try:
        table = json.loads(path.read_text())["labels"]
        table = None if table is None else {str(name): label for name, label in table}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FolderError(
            f'{path}: expected {{"labels": [["<relative path>", <class>], ...] or null}} as '
            f"stylegan2-ada's dataset_tool writes it ({type(error).__name__}: {error})."
        ) from None
    if table is None:
        return [], [-1] * len(images)
    bad = [f"{n}: {v!r}" for n, v in table.items() if type(v) is not int or v < 0]
    missing = [rel.as_posix() for rel in images if rel.as_posix() not in table]
    if bad or missing:
        raise FolderError(
            f"{path}: expected a class index >= 0 for every image; "
            + (f"{len(bad)} are not one (first: {bad[:3]}) " if bad else "")
            + (f"{len(missing)} images have none (first: {missing[:3]})" if missing else "")
        )
    num_classes = max(table.values(), default=-1) + 1
    return [str(i) for i in range(num_classes)], [table[rel.as_posix()] for rel in images]


class ImageFolder(_ManualImageBuilder):
    """Any folder of images, optionally with one sub-folder per class, centre-cropped and
    resized. `label`: the class index (-1: none), `class_name`: its name ('' for none);
    metadata: num_classes, class_names, folder, folder_fingerprint, skipped_files.
    stylejax.data.image_folder.prepare builds each folder in a data_dir of its own."""

    BUILDER_CONFIGS = _resolution_configs((32, 64, 128, 256, 512, 1024))
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "label: integer class index; class_name; num_classes, class_names, folder "
        "and folder_fingerprint in the metadata; non-image files reported as skipped.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Put images ({', '.join(IMAGE_SUFFIXES)}) in manual_dir, at the top or in one "
        "sub-folder per class."
    )

    def _info(self):
        r = self.resolution
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(r, r, 3)),
                    "label": np.int64,
                    "class_name": tfds.features.Text(),
                    "filename": tfds.features.Text(),
                }
            ),
            metadata=tfds.core.MetadataDict(
                skipped_files=[], num_classes=0, class_names=[], folder="", folder_fingerprint=""
            ),
        )

    def _split_generators(self, dl_manager):
        folder = Path(dl_manager.manual_dir)
        expected = f"image files ({', '.join(IMAGE_SUFFIXES)}) or class sub-folders of them"
        if not folder.is_dir():
            raise FolderError(
                f"image_folder: expected {expected} in {folder}, but that folder does not "
                f"exist. Found: {_listing(folder.parent)}. {FOLDER_HINT}"
            )
        try:
            os.listdir(folder)
        except OSError as error:
            raise FolderError(
                f"image_folder: cannot read the folder {folder} ({error.strerror}). {FOLDER_HINT}"
            ) from None
        files, skipped = walk_folder(folder)
        images = []
        for rel in files:
            if rel.suffix.lower() in IMAGE_SUFFIXES:
                images.append(rel)
            elif rel != Path(LABELS_FILE):
                skipped.append(f"{folder / rel}: not an image ({', '.join(IMAGE_SUFFIXES)})")
        if not images:
            raise FolderError(
                f"image_folder: expected {expected} in {folder}, found none. "
                f"Found: {_listing(folder)}. {FOLDER_HINT}"
            )
        class_names, labels = _folder_labels(folder, images)
        for message in skipped:
            self._corrupt.skip(message)
        self.info.metadata.update(
            skipped_files=list(self._corrupt.skipped),
            num_classes=len(class_names),
            class_names=class_names,
            folder=str(folder),
            folder_fingerprint=folder_fingerprint(folder, files),
        )
        unlabelled = labels.count(-1)
        logging.info(
            "image_folder: %d images in %s, %d classes%s",
            len(images),
            folder,
            len(class_names),
            f", {unlabelled} without a class (label -1)" if class_names and unlabelled else "",
        )
        items = [
            (rel.as_posix(), (folder / rel, label, class_names[label] if label >= 0 else ""))
            for rel, label in zip(images, labels)
        ]
        return {
            "train": self._generate_examples(
                functools.partial(_read_folder_example, self.resolution), items
            )
        }
