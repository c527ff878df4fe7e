"""Your own folder of images as the `image_folder/<resolution>` data set (real_faces.ImageFolder),
one build per folder:

    builder = image_folder.prepare("image_folder/64", "/path/to/images")
    pipeline.make_dataset("image_folder/64", folder="/path/to/images", global_batch_size=32)

Each folder is built in a data_dir of its own, `<data_dir>/image_folders/<name>-<hash of its
resolved path>/` (data_dir None: $TFDS_DATA_DIR, else ~/tensorflow_datasets), so two folders
never share a cache. That directory's source.json names the folder, so the directory alone
finds it again (pipeline functions given that data_dir and no folder). A build records a
fingerprint of the folder's files (names, sizes, modification times); when they changed, the
next prepare rebuilds. `config.data.folder` reaches the trainers through `resolve_config`,
which stylejax.main calls: it points `config.data.directory` at the folder's data_dir.
"""

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import constants

from stylejax.data import real_faces

BUILDER = "image_folder"
FOLDERS_DIR = "image_folders"
SOURCE_FILE = "source.json"


def is_image_folder(name: str) -> bool:
    return name.split("/")[0].split(":")[0] == BUILDER


def check_folder(folder) -> Path:
    """The folder's resolved path; a FolderError naming it when it is missing, not a folder,
    cannot be listed or is empty (one without images fails at the build, naming its files)."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise real_faces.FolderError(f"data.folder={folder}: no such folder.")
    if not path.is_dir():
        raise real_faces.FolderError(
            f"data.folder={folder}: not a folder; expected a folder of images."
        )
    try:
        names = [n for n in os.listdir(path) if not n.startswith(".")]
    except OSError as error:
        raise real_faces.FolderError(
            f"data.folder={folder}: cannot read this folder ({error.strerror})."
        ) from None
    if not names:
        raise real_faces.FolderError(
            f"data.folder={folder}: the folder is empty; expected images "
            f"({', '.join(real_faces.IMAGE_SUFFIXES)}) at its top or in one sub-folder per class."
        )
    return path.resolve()


def source_folder(data_dir) -> Path | None:
    """The folder a data_dir made by `folder_data_dir` builds from; None for any other."""
    if not data_dir:
        return None
    source = epath.Path(data_dir) / SOURCE_FILE
    if not source.exists():
        return None
    return Path(json.loads(source.read_text())["folder"])


def folder_data_dir(folder, data_dir=None) -> str:
    """`<data_dir>/image_folders/<folder's name>-<hash of its resolved path>`, or data_dir
    itself when it already is that folder's data_dir. Writes its source.json. data_dir may be
    a cloud path (gs://...); the folder is local."""
    folder = Path(folder).expanduser().resolve()
    if data_dir and source_folder(data_dir) == folder:
        return str(data_dir)
    key = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", folder.name)[:40] or "root"
    base = os.path.expanduser(str(data_dir or constants.get_default_data_dir()))
    path = epath.Path(base) / FOLDERS_DIR / f"{name}-{key}"
    path.mkdir(parents=True, exist_ok=True)
    source = path / SOURCE_FILE
    if not source.exists():
        source.write_text(json.dumps({"folder": str(folder)}, indent=1) + "\n")
    return str(path)


def prepare(name, folder, data_dir=None, builder_kwargs=None):
    """The `image_folder/<resolution>` builder of `folder`, built (again, when the folder's
    files changed since) in the folder's own data_dir under `data_dir`. Logs the build's
    progress and the files it skipped."""
    if not is_image_folder(name):
        raise ValueError(
            f"data.folder={folder} is read by the {BUILDER}/<resolution> data set "
            f"(resolutions {', '.join(c.name for c in real_faces.ImageFolder.BUILDER_CONFIGS)}),"
            f" not by {name!r}: set data.name={BUILDER}/<resolution>."
        )
    folder = check_folder(folder)
    data_dir = folder_data_dir(folder, data_dir)
    builder = tfds.builder(name, data_dir=data_dir, **(builder_kwargs or {}))
    built = not builder.is_prepared()
    if not built:
        files, _ = real_faces.walk_folder(folder)
        fingerprint = real_faces.folder_fingerprint(folder, files)
        if builder.info.metadata.get("folder_fingerprint") != fingerprint:
            logging.warning(
                "%s: the files in %s changed since %s was built; rebuilding it.",
                name,
                folder,
                builder.data_dir,
            )
            built = True
    modes = tfds.download.GenerateMode
    mode = modes.REUSE_CACHE_IF_EXISTS if built else modes.REUSE_DATASET_IF_EXISTS
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(folder), download_mode=mode)
    )
    meta = builder.info.metadata
    skipped = meta.get("skipped_files") or []
    logging.info(
        "%s: %d images from %s (%d classes), %s %s%s",
        name,
        builder.info.splits["train"].num_examples,
        folder,
        meta.get("num_classes", 0),
        "built in" if built else "read from",
        builder.data_dir,
        f"; {real_faces.skipped_report(skipped)}" if skipped and not built else "",
    )
    return builder


def resolve_config(config) -> None:
    """With `config.data.folder` set, points `config.data.directory` at that folder's data_dir
    (under the directory it held), so that every reader of data.directory builds and reads
    the folder's own data set. Without it, nothing changes."""
    folder = config.data.get("folder")
    if not folder:
        return
    if not is_image_folder(config.data.name):
        raise ValueError(
            f"config.data.folder={folder} needs config.data.name={BUILDER}/<resolution> "
            f"(got {config.data.name!r})."
        )
    directory = folder_data_dir(check_folder(folder), config.data.directory or None)
    logging.info("data.folder=%s: data set %s in %s", folder, config.data.name, directory)
    config.data.directory = directory
