"""Image class folders, in one of two layouts:
- `<dir>/train/<class>/*`, optionally with `<dir>/val/<class>/*` and `<dir>/test/<class>/*`;
- `<dir>/<class>/*` only: one pool, from which `load_data` carves val and test (stratified).

Class names are the sorted folder names (of train/ in the first layout). val/ and test/ map to them by name; a val/
or test/ folder counts when it holds at least one image (otherwise that split is carved from train/), and then it
must have every class. An empty class folder, a single class, or a class missing from a split is an error.
Files are listed here and decoded later, after the carving, once into memory when the split fits
(see `image_decoder.decode_files`); only the first training image is decoded now, to fix the shape.
"""

import os
import pathlib

import ml_collections
import numpy as np

from dl4cv_jax.choices import ConfigError, require
from dl4cv_jax.data.dataset import FileSplit
from dl4cv_jax.data.image_decoder import probe_file
from dl4cv_jax.data.source import SourceData

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
)  # matched case-insensitively; other files ignored
SPLIT_FOLDERS = ("train", "val", "test")


def list_class_folders(split_dir: pathlib.Path) -> dict[str, list[str]]:
    """{class folder: sorted image paths directly inside it}; hidden folders and other files are skipped."""
    classes = {}
    with os.scandir(split_dir) as entries:
        folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for name in folders:
        with os.scandir(split_dir / name) as entries:  # scandir: no stat() per file, so large folders list fast
            files = [e.path for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()]
        classes[name] = sorted(files)
    return classes


def target_shape(
    files: list[str], channels: int, image_size: int, skip_corrupt: bool = False
) -> tuple[tuple[int, int, int], bool]:
    """(H, W, C) every image is converted to, and whether that takes a resize, from the first readable file.

    channels=0 follows that image: grayscale (with or without alpha) gives 1, anything else 3.
    image_size=0 keeps its size and requires every other image to have it.
    """
    for k, path in enumerate(files):
        try:
            height, width, stored = probe_file(path)
            break
        except ConfigError:
            if not skip_corrupt or k == len(files) - 1:
                raise
    channels = channels or (1 if stored in (1, 2) else 3)
    if image_size:
        return (image_size, image_size, channels), True
    return (height, width, channels), False


def load_folder_source(config: ml_collections.ConfigDict) -> SourceData:
    """FileSplits for train (or the whole pool) and for val/ and test/ where present; nothing decoded yet."""
    root = pathlib.Path(config.data.dir).expanduser()
    key, where = "data.dir", config.data.dir
    require(bool(where) and root.is_dir(), key, where, "is not a folder (source=folder reads <dir>/<class>/*)")
    present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    if present:
        require("train" in present, key, where, f"has {'/, '.join(present)}/ but no train/ (expected train/<class>/*)")
    pool = root / "train" if present else root
    train = list_class_folders(pool)
    _check_classes(train, tuple(train), f"{pool.name}/" if present else "", where)
    class_names = tuple(train)
    shape, resize = target_shape(
        [f for files in train.values() for f in files],
        config.data.channels,
        config.data.image_size,
        config.data.skip_corrupt,
    )
    resizing = (config.data.resize_method, config.data.resize_shorter)
    splits = {"train": _file_split(train, class_names, shape, resize, *resizing)}
    for name in present[1:] if present else ():
        folders = list_class_folders(root / name)
        unknown = sorted(set(folders) - set(class_names))
        if unknown:
            raise ConfigError(f"config.data.dir={where!r}: {name}/ has class folders that train/ lacks: {unknown}")
        if any(folders.values()):
            _check_classes(folders, class_names, f"{name}/", where)
            splits[name] = _file_split(folders, class_names, shape, resize, *resizing)
    return SourceData(config.data.name or root.name, class_names, splits, every_class_everywhere=True)


def _check_classes(folders: dict[str, list[str]], class_names: tuple[str, ...], where: str, root: str) -> None:
    """Every class of `class_names` has a non-empty folder; at least two classes."""
    key = "data.dir"
    require(bool(folders), key, root, f"has no class folders in {where or 'it'} (expected <class>/<images>)")
    empty = [name for name in class_names if not folders.get(name)]
    kinds = ", ".join(IMAGE_EXTENSIONS)
    require(not empty, key, root, f"has classes without images in {where or 'it'}: {empty} (image files: {kinds})")
    require(len(class_names) >= 2, key, root, f"has a single class in {where or 'it'} ({class_names[0]!r}); need >= 2")


def _file_split(
    folders: dict[str, list[str]],
    class_names: tuple[str, ...],
    shape: tuple[int, int, int],
    resize: bool,
    method: str,
    shorter: int,
) -> FileSplit:
    label_of = {name: label for label, name in enumerate(class_names)}
    paths = [path for name in folders for path in folders[name]]
    labels = [label_of[name] for name in folders for _ in folders[name]]
    return FileSplit(np.array(paths, dtype=str), np.array(labels, dtype=np.int32), shape, resize, method, shorter)
