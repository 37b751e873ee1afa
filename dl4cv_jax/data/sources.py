"""config -> Data: read a source, carve the splits it lacks, pick the k-fold, subset train, hold splits in memory,
measure stats.

Fractions: when a source lacks a val (or test) split, val_fraction (test_fraction) of its train pool is carved
out, stratified: of all 1,797 images for digits, of the train/ folder for folder, of train_split for tfds. With
neither split both come out of the same pool (defaults 0.2 + 0.2: 60/20/20). A fraction of 0 leaves that split
empty. Carving and subsetting depend on config.seed, so runs with different seeds see different val sets.

k-fold (cv.folds = K > 1, cv.fold = k >= 0): train and val are pooled after the usual carving (so the test split
is the same as without k-fold), the pool is cut into K stratified folds, and fold k becomes val.
"""

from collections.abc import Callable, Mapping

import ml_collections
import numpy as np
from absl import logging

from dl4cv_jax.choices import ConfigError, choose, require
from dl4cv_jax.data.dataset import (
    ArraySplit,
    Data,
    FileSplit,
    Split,
    StreamSplit,
    concatenate,
    empty_like,
    image_shape_of,
)
from dl4cv_jax.data.image_decoder import decode_files, decode_readable, tensorflow_installed
from dl4cv_jax.data.source import SourceData
from dl4cv_jax.data.splits import stratified_folds, stratified_split, stratified_subset

DEFAULT_MAX_IN_MEMORY_MB = 2048
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")
_FOLD_STREAM = 0xF01D  # keeps the k-fold assignment apart from carving and subsetting


# Sources are imported when used: folder and tfds need TensorFlow, digits / synthetic / numpy do not.
def _digits(config: ml_collections.ConfigDict) -> SourceData:
    from dl4cv_jax.data.digits import load_digits_source

    return load_digits_source(config)


def _synthetic(config: ml_collections.ConfigDict) -> SourceData:
    from dl4cv_jax.data.synthetic import load_synthetic_source

    return load_synthetic_source(config)


def _folder(config: ml_collections.ConfigDict) -> SourceData:
    from dl4cv_jax.data.folder import load_folder_source

    return load_folder_source(config)


def _tfds(config: ml_collections.ConfigDict) -> SourceData:
    from dl4cv_jax.data.tfds_source import load_tfds_source

    return load_tfds_source(config, max_in_memory_bytes(config))


def _numpy(config: ml_collections.ConfigDict) -> SourceData:
    from dl4cv_jax.data.arrays import load_numpy_source

    return load_numpy_source(config)


SOURCES: dict[str, Callable[[ml_collections.ConfigDict], SourceData]] = {
    "digits": _digits,
    "synthetic": _synthetic,
    "folder": _folder,
    "tfds": _tfds,
    "numpy": _numpy,
}


def load_data(config: ml_collections.ConfigDict, source: SourceData | None = None) -> Data:
    """Loads config.data.source (or the given `source`, e.g. `arrays.arrays_source(...)`) as a `Data` with train,
    val and test splits (see the module docstring)."""
    validate_data_config(config)
    source = source or choose(SOURCES, "data.source", config.data.source)(config)
    splits, skipped = dict(source.splits), ()
    if config.data.skip_corrupt:
        splits, skipped = drop_corrupt(splits, max_in_memory_bytes(config))
    splits = carve_missing_splits(splits, config)
    if source.every_class_everywhere:
        check_every_class(splits, source.class_names)
    splits = select_fold(splits, config)
    splits["train"] = subset_train(splits["train"], config)
    limit = max_in_memory_bytes(config)
    splits = {name: hold_in_memory(split, limit) for name, split in splits.items()}
    image_shape = image_shape_of(splits["train"])
    mean, std = normalization(config, splits["train"], image_shape[2])
    return Data(source.name, source.class_names, image_shape, mean, std, splits, skipped)


def max_in_memory_bytes(config: ml_collections.ConfigDict) -> int:
    """Largest split (decoded, in bytes) held in memory; larger ones are decoded in every pass / streamed."""
    return int(config.data.get("max_in_memory_mb", DEFAULT_MAX_IN_MEMORY_MB) * 2**20)


def validate_data_config(config: ml_collections.ConfigDict) -> None:
    """ConfigError for values no source can use, before anything is read."""
    data = config.data
    require(config.seed >= 0, "seed", config.seed, "must be >= 0")
    require(data.channels in (0, 1, 3), "data.channels", data.channels, "must be 0 (keep), 1 or 3")
    require(data.image_size >= 0, "data.image_size", data.image_size, "must be >= 0 (0 = keep the size)")
    require(
        data.resize_shorter == 0 or data.resize_shorter >= data.image_size > 0,
        "data.resize_shorter",
        data.resize_shorter,
        f"must be 0 (off) or >= data.image_size={data.image_size} > 0 (the centre crop taken after the resize)",
    )
    choose({m: m for m in RESIZE_METHODS}, "data.resize_method", data.resize_method)
    choose({"tfdata": 0, "device": 1}, "data.pipeline", data.pipeline)
    for key, value, needs in (("pipeline", data.pipeline, "tfdata"), ("source", data.source, "tfds")):
        if value == needs and not tensorflow_installed():
            raise ConfigError(
                f"config.data.{key}={value!r} needs TensorFlow, which is not installed here; install tensorflow-cpu"
                + (", or set data.pipeline='device' (no TensorFlow needed)" if key == "pipeline" else "")
            )
    require(data.max_train_examples >= 0, "data.max_train_examples", data.max_train_examples, "must be >= 0")
    require(all(s > 0 for s in data.std), "data.std", tuple(data.std), "must be > 0")
    for key in ("val_fraction", "test_fraction"):
        require(0 <= data[key] < 1, f"data.{key}", data[key], "must be in [0, 1)")
    require(
        data.val_fraction + data.test_fraction < 1,
        "data.val_fraction",
        data.val_fraction,
        f"plus data.test_fraction={data.test_fraction} must be < 1",
    )
    folds, fold = config.cv.folds, config.cv.fold
    require(folds in (0, 1) or folds >= 2, "cv.folds", folds, "must be 0 or 1 (off) or >= 2")
    if folds >= 2:
        require(-1 <= fold < folds, "cv.fold", fold, f"must be in 0..{folds - 1}, or -1 for every fold")
    else:
        require(fold == -1, "cv.fold", fold, "needs cv.folds >= 2")


def drop_corrupt(splits: Mapping[str, Split], limit_bytes: int) -> tuple[dict[str, Split], tuple[str, ...]]:
    """File splits without their unreadable files (data.skip_corrupt=True), and the skipped paths.

    Done before carving, so the stratified splits are made of readable files only. A split that fits in memory is
    decoded here once (no second pass later); a larger one is read through once to find the bad files.
    """
    result, skipped = {}, []
    for name, split in splits.items():
        if not isinstance(split, FileSplit):
            result[name] = split
            continue
        images, readable = decode_readable(split.paths, split.shape, split.resize, split.method, split.shorter)
        skipped += split.paths[~readable].tolist()
        if split.size * int(np.prod(split.shape)) <= limit_bytes:
            result[name] = ArraySplit(images, split.labels[readable], split.paths[readable])
        else:
            result[name] = split.take(np.flatnonzero(readable))
    if skipped:
        logging.warning("skipped %d corrupt image files (data.skip_corrupt=True), e.g. %s", len(skipped), skipped[0])
    return result, tuple(skipped)


def carve_missing_splits(splits: Mapping[str, Split], config: ml_collections.ConfigDict) -> dict[str, Split]:
    """Adds the val and test splits the source lacks, each a stratified slice of train."""
    missing = [name for name in ("val", "test") if name not in splits]
    result = dict(splits)
    if not missing:
        return result
    train = splits["train"]
    fractions = [config.data[f"{name}_fraction"] for name in missing]
    if isinstance(train, StreamSplit):
        if any(fractions):
            raise ConfigError(
                f"config.data.{missing[0]}_split='' would carve a stratified slice from a streamed train split "
                f"({train.size} examples, larger than data.max_in_memory_mb); name a tfds split instead, e.g. "
                f"train_split='train[:-10000]' and {missing[0]}_split='train[-10000:]'"
            )
        return result | {name: empty_like(train) for name in missing}
    parts = stratified_split(train.labels, [1 - sum(fractions), *fractions], config.seed)
    result["train"] = train.take(parts[0])
    result.update({name: train.take(part) for name, part in zip(missing, parts[1:], strict=True)})
    return result


def check_every_class(splits: Mapping[str, Split], class_names: tuple[str, ...]) -> None:
    """ConfigError when a non-empty split lacks a class (e.g. a class with too few images to carve from)."""
    for name, split in splits.items():
        if split.size and split.labels is not None:
            missing = sorted(set(range(len(class_names))) - set(np.unique(split.labels).tolist()))
            if missing:
                names = [class_names[k] for k in missing]
                raise ConfigError(
                    f"config.data.dir: the {name} split has no images of classes {names} (too few images to carve "
                    f"from?); add images or change data.val_fraction / data.test_fraction"
                )


def select_fold(splits: Mapping[str, Split], config: ml_collections.ConfigDict) -> dict[str, Split]:
    """With cv.fold = k >= 0: train + val pooled and cut into cv.folds stratified folds; fold k is val."""
    result = dict(splits)
    if config.cv.folds < 2 or config.cv.fold < 0:
        return result
    train, val = splits["train"], splits["val"]
    if isinstance(train, StreamSplit) or isinstance(val, StreamSplit):
        raise ConfigError(f"config.cv.folds={config.cv.folds} cannot cut a streamed split into folds")
    pool = concatenate(train, val) if val.size else train
    require(pool.size >= config.cv.folds, "cv.folds", config.cv.folds, f"is more than the {pool.size} examples to fold")
    folds = stratified_folds(pool.labels, config.cv.folds, (_FOLD_STREAM, config.seed))
    others = np.sort(np.concatenate([f for k, f in enumerate(folds) if k != config.cv.fold]))
    result["train"], result["val"] = pool.take(others), pool.take(folds[config.cv.fold])
    return result


def subset_train(train: Split, config: ml_collections.ConfigDict) -> Split:
    """A stratified subset of data.max_train_examples training examples (0 = all), for quick runs."""
    n = config.data.max_train_examples
    if not n or n >= train.size:
        return train
    if isinstance(train, StreamSplit):
        raise ConfigError(
            f"config.data.max_train_examples={n} cannot subset a streamed train split by class; "
            f"use data.train_split='train[:{n}]' instead"
        )
    return train.take(stratified_subset(train.labels, n, (config.seed, 1)))


def hold_in_memory(split: Split, limit_bytes: int) -> Split:
    """Decodes a FileSplit once into an ArraySplit (keeping its paths) when its images fit in `limit_bytes`."""
    if isinstance(split, FileSplit) and split.size * int(np.prod(split.shape)) <= limit_bytes:
        images = decode_files(split.paths, split.shape, split.resize, split.method, split.shorter)
        return ArraySplit(images, split.labels, split.paths)
    return split


def normalization(
    config: ml_collections.ConfigDict, train: Split, channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """data.mean / data.std when given, else measured on the training images (a sample if not in memory)."""
    from dl4cv_jax.data.stats import channel_stats, sample_images

    mean, std = tuple(config.data.mean), tuple(config.data.std)
    for key, value in (("data.mean", mean), ("data.std", std)):
        require(len(value) in (0, channels), key, value, f"must have {channels} values (one per channel) or none")
    if mean and std:
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    measured_mean, measured_std = channel_stats(sample_images(train))
    return tuple(float(m) for m in mean) or measured_mean, tuple(float(s) for s in std) or measured_std
