"""Image class folders: `<dir>/train/<class>/*`, optionally `<dir>/val/<class>/*` and `<dir>/test/<class>/*`.

Class names are the sorted folder names under train/; val/ and test/ map to them by name (a class folder there
that train/ lacks is an error; one they lack is fine). A val/ or test/ folder counts when it holds at least one
image; otherwise `load_data` carves that split from train/. Files are listed here and decoded later, after the
carving, once into memory when the split fits (see `images.decode_files`).
"""

import os
import pathlib

import ml_collections
import numpy as np

from dl4cv_jax.choices import ConfigError, require
from dl4cv_jax.data.dataset import FileSplit
from dl4cv_jax.data.images import probe_file
from dl4cv_jax.data.source import SourceData

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
)  # matched case-insensitively; other files ignored


def list_class_folders(split_dir: pathlib.Path) -> dict[str, list[str]]:
    """{class folder: sorted image paths directly inside it}; hidden folders and other files are skipped."""
    classes = {}
    with os.scandir(split_dir) as entries:
        folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for name in folders:
        with os.scandir(split_dir / name) as entries:  # scandir: no stat() per file, 60,000 files in ~0.1 s
            files = [e.path for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()]
        classes[name] = sorted(files)
    return classes


def target_shape(first_image: str, channels: int, image_size: int) -> tuple[tuple[int, int, int], bool]:
    """(H, W, C) every image is converted to, and whether that takes a resize.

    channels=0 follows the first training image: grayscale (with or without alpha) gives 1, anything else 3.
    image_size=0 keeps the first image's size and requires every other image to have it.
    """
    height, width, stored = probe_file(first_image)
    channels = channels or (1 if stored in (1, 2) else 3)
    if image_size:
        return (image_size, image_size, channels), True
    return (height, width, channels), False


def load_folder_source(config: ml_collections.ConfigDict) -> SourceData:
    """FileSplits for train/ and for val/ and test/ where present; nothing is decoded yet except one probe."""
    root = pathlib.Path(config.data.dir).expanduser()
    require(
        bool(config.data.dir) and root.is_dir(),
        "data.dir",
        config.data.dir,
        "is not a folder (source=folder reads <dir>/train/<class>/*)",
    )
    require(
        (root / "train").is_dir(),
        "data.dir",
        config.data.dir,
        "has no train/ folder (expected train/<class>/*)",
    )
    train = list_class_folders(root / "train")
    class_names = tuple(train)
    require(bool(class_names), "data.dir", config.data.dir, "has no class folders in train/")
    empty = [name for name, files in train.items() if not files]
    require(not empty, "data.dir", config.data.dir, f"has class folders without images in train/: {empty}")

    shape, resize = target_shape(train[class_names[0]][0], config.data.channels, config.data.image_size)
    splits = {"train": _file_split(train, class_names, shape, resize)}
    for name in ("val", "test"):
        folders = list_class_folders(root / name) if (root / name).is_dir() else {}
        unknown = sorted(set(folders) - set(class_names))
        if unknown:
            raise ConfigError(
                f"config.data.dir={config.data.dir!r}: {name}/ has class folders that train/ lacks: {unknown}"
            )
        if any(folders.values()):
            splits[name] = _file_split(folders, class_names, shape, resize)
    return SourceData(config.data.name or root.name, class_names, splits)


def _file_split(
    folders: dict[str, list[str]], class_names: tuple[str, ...], shape: tuple[int, int, int], resize: bool
) -> FileSplit:
    label_of = {name: label for label, name in enumerate(class_names)}
    paths = [path for name in folders for path in folders[name]]
    labels = [label_of[name] for name in folders for _ in folders[name]]
    return FileSplit(np.array(paths, dtype=str), np.array(labels, dtype=np.int32), shape, resize)
