"""In-memory numpy arrays as a source: from Python (`arrays_source`) or from an .npz file (source=numpy).

An .npz file (data.dir) holds x_train, y_train and optionally x_val, y_val, x_test, y_test and class_names, the
layout of `keras.datasets` (`np.savez(path, x_train=..., y_train=..., ...)`). It is also how MNIST or CIFAR reach
a machine without TensorFlow: with data.pipeline=device nothing else is needed at training time.
"""

import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from dl4cv_jax.choices import ConfigError, require
from dl4cv_jax.data.dataset import ArraySplit
from dl4cv_jax.data.source import SourceData

Pair = tuple[np.ndarray, np.ndarray]


def as_split(images: np.ndarray, labels: np.ndarray, where: str) -> ArraySplit:
    """uint8 [N, H, W, C] (or [N, H, W]) images and integer labels [N] as an ArraySplit; ConfigError otherwise."""
    images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 2, 3, 4):
        raise ConfigError(
            f"{where}: images must be uint8 [N, H, W] or [N, H, W, C] with C in 1..4, got {images.dtype} "
            f"{list(images.shape)} (scale floats in [0, 1] by 255 and round first)"
        )
    if len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise ConfigError(
            f"{where}: labels must be {len(images)} non-negative integers, got {labels.dtype} {labels.shape}"
        )
    return ArraySplit(images, labels.astype(np.int32))


def arrays_source(
    train: Pair,
    val: Pair | None = None,
    test: Pair | None = None,
    class_names: Sequence[str] | None = None,
    name: str = "arrays",
    channels: int = 0,
    image_size: int = 0,
    method: str = "bilinear",
    resize_shorter: int = 0,
) -> SourceData:
    """A source over (images, labels) pairs; val and test are carved from train by `load_data` when None.

    Images are converted to `channels` (0 = 1 for gray, 3 otherwise), `image_size` and `resize_shorter` like any
    other source.
    """
    given = {"train": train, "val": val, "test": test}
    splits = {key: as_split(*pair, f"{name} {key}") for key, pair in given.items() if pair is not None}
    stored = splits["train"].images.shape[-1]
    channels = channels or (1 if stored in (1, 2) else 3)
    if any(split.images.shape[1:] != splits["train"].images.shape[1:] for split in splits.values()) and not image_size:
        raise ConfigError(f"config.data.image_size=0 needs the {name} splits to have one image shape; set it")
    splits = {key: _converted(split, channels, image_size, method, resize_shorter) for key, split in splits.items()}
    num_classes = 1 + max(int(split.labels.max(initial=0)) for split in splits.values())
    names = tuple(str(c) for c in class_names) if class_names is not None else tuple(map(str, range(num_classes)))
    require(len(names) >= num_classes, "data.dir", name, f"has labels up to {num_classes - 1} but {len(names)} names")
    return SourceData(name, names, splits)


def convert_images(
    images: np.ndarray, channels: int, size: int, method: str = "bilinear", shorter: int = 0
) -> np.ndarray:
    """`images.convert_array` (channels, then size; 0 keeps either; shorter > 0: shorter side resized to it, then
    the central size x size), importing TensorFlow only when it has work."""
    _, height, width, count = images.shape
    if channels in (0, count) and size in (0, height) and size in (0, width) and not (size and shorter):
        return images
    from dl4cv_jax.data.images import convert_array

    return convert_array(images, channels, size, method, shorter)


def _converted(split: ArraySplit, channels: int, size: int, method: str, shorter: int) -> ArraySplit:
    return ArraySplit(convert_images(split.images, channels, size, method, shorter), split.labels)


def load_numpy_source(config: ml_collections.ConfigDict) -> SourceData:
    """The arrays of the .npz file data.dir (x_train, y_train[, x_val, y_val][, x_test, y_test][, class_names])."""
    path = pathlib.Path(config.data.dir).expanduser()
    require(path.is_file(), "data.dir", config.data.dir, "is not an .npz file (source=numpy)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as error:
        raise ConfigError(f"config.data.dir={config.data.dir!r} cannot be read as .npz: {error}") from None
    require("x_train" in arrays and "y_train" in arrays, "data.dir", config.data.dir, "has no x_train and y_train")
    pairs = {}
    for split in ("val", "test"):
        if f"x_{split}" in arrays:
            require(f"y_{split}" in arrays, "data.dir", config.data.dir, f"has x_{split} but no y_{split}")
            pairs[split] = (arrays[f"x_{split}"], arrays[f"y_{split}"])
    return arrays_source(
        (arrays["x_train"], arrays["y_train"]),
        class_names=arrays.get("class_names"),
        name=config.data.name or path.stem,
        channels=config.data.channels,
        image_size=config.data.image_size,
        method=config.data.resize_method,
        resize_shorter=config.data.resize_shorter,
        **pairs,
    )
