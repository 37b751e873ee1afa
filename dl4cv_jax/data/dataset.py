"""What a loaded data set is: class names, image shape, normalisation statistics and three splits.

A split is held in one of three ways, chosen at load time by its size:
- `ArraySplit`: decoded uint8 images in memory (every source when the split fits; the fast, common case);
- `FileSplit`: image files decoded again in every pass (a `folder` split too large for memory);
- `StreamSplit`: a tf.data pipeline read in a fixed order (a `tfds` split too large for memory).
The pipeline (`pipeline.py`) turns any of them into the same batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySplit:
    """Decoded images in memory: `images` uint8 [N, H, W, C], `labels` int32 [N].

    `paths` [N] str: the file each example came from (folder source), for reports such as predictions.csv;
    None for sources without files.
    """

    images: np.ndarray
    labels: np.ndarray
    paths: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> ArraySplit:
        paths = None if self.paths is None else self.paths[indices]
        return ArraySplit(self.images[indices], self.labels[indices], paths)


@dataclasses.dataclass(frozen=True, eq=False)
class FileSplit:
    """Image files decoded in the pipeline: `paths` [N] str, `labels` int32 [N].

    Every file is converted to `shape` (H, W, C): resized with `method` when `resize` (by its shorter side to
    `shorter`, then centre-cropped, when shorter > 0), else it must already be H x W.
    """

    paths: np.ndarray
    labels: np.ndarray
    shape: tuple[int, int, int]
    resize: bool
    method: str = "bilinear"
    shorter: int = 0  # config.data.resize_shorter

    @property
    def size(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> FileSplit:
        return dataclasses.replace(self, paths=self.paths[indices], labels=self.labels[indices])


@dataclasses.dataclass(frozen=True, eq=False)
class StreamSplit:
    """A split read sequentially: `make_dataset()` yields (uint8 [H, W, C], int32 label) in a fixed order.

    No random access, so the training order comes from a shuffle buffer, and the labels are not known in advance
    (no stratified carving or subsetting; use tfds split slicing such as 'train[:90%]' instead).
    """

    make_dataset: Callable[[], tf.data.Dataset]
    size: int
    shape: tuple[int, int, int]
    labels: None = None
    paths: None = None


Split = ArraySplit | FileSplit | StreamSplit


def empty_like(split: Split) -> Split:
    """A split with no examples and the same kind and image shape as `split` (e.g. val_fraction=0)."""
    if isinstance(split, StreamSplit):
        return dataclasses.replace(split, size=0)
    return split.take(np.zeros(0, dtype=np.int64))


def concatenate(first: Split, second: Split) -> Split:
    """The examples of `first` followed by those of `second` (same kind; e.g. train + val pooled for k-fold)."""
    if isinstance(first, ArraySplit) and isinstance(second, ArraySplit):
        paths = None
        if first.paths is not None and second.paths is not None:
            paths = np.concatenate([first.paths, second.paths])
        images = np.concatenate([first.images, second.images])
        return ArraySplit(images, np.concatenate([first.labels, second.labels]), paths)
    if isinstance(first, FileSplit) and isinstance(second, FileSplit):
        paths = np.concatenate([first.paths, second.paths])
        return dataclasses.replace(first, paths=paths, labels=np.concatenate([first.labels, second.labels]))
    raise ValueError(f"cannot pool a {type(first).__name__} with a {type(second).__name__}")


def image_shape_of(split: Split) -> tuple[int, int, int]:
    """(H, W, C) of the images of `split`."""
    if isinstance(split, ArraySplit):
        return tuple(int(d) for d in split.images.shape[1:])
    return split.shape


@dataclasses.dataclass(frozen=True, eq=False)
class Data:
    """A loaded data set, ready for `train_batches` / `eval_batches`.

    `mean` and `std` are per channel on the [0, 1] scale; images stay uint8 on the host and are normalised on the
    device in the train step, which keeps host-to-device transfers 4x smaller.
    """

    name: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: Mapping[str, Split]
    skipped: tuple[str, ...] = ()  # corrupt files left out (data.skip_corrupt=True)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        """The split called `name` ('train', 'val' or 'test')."""
        if name not in self.splits:
            raise ValueError(f"split {name!r} does not exist; choose one of: {', '.join(SPLITS)}")
        return self.splits[name]

    def num_examples(self, split: str) -> int:
        """Number of examples in `split` ('train', 'val' or 'test'); 0 for an empty split."""
        return self.split(split).size

    def describe(self) -> str:
        """One line for the log: what was loaded, how large, how it is held, and the statistics used."""
        h, w, c = self.image_shape
        sizes = "/".join(str(self.num_examples(s)) for s in SPLITS)
        storage = {s: _storage(self.splits[s]) for s in SPLITS if self.num_examples(s)}
        held = ", ".join(f"{s} {how}" for s, how in storage.items())
        if len(set(storage.values())) == 1:
            held = next(iter(storage.values()))
        mean = ", ".join(f"{m:.3f}" for m in self.mean)
        std = ", ".join(f"{s:.3f}" for s in self.std)
        skipped = f", {len(self.skipped)} corrupt files skipped" if self.skipped else ""
        return (
            f"{self.name}: {self.num_classes} classes, {h}x{w}x{c}, train/val/test {sizes} ({held}), "
            f"mean ({mean}) std ({std}){skipped}"
        )


def _storage(split: Split) -> str:
    return {ArraySplit: "in memory", FileSplit: "files", StreamSplit: "streamed"}[type(split)]
