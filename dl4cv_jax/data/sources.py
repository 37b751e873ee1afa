"""config -> Data: read a source, carve the splits it lacks, subset train, hold splits in memory, measure stats.

Fractions: when a source lacks a val (or test) split, val_fraction (test_fraction) of its train pool is carved
out, stratified: of all 1,797 images for digits, of the train/ folder for folder, of train_split for tfds. With
neither split both come out of the same pool (defaults 0.2 + 0.2: 60/20/20). A fraction of 0 leaves that split
empty. Carving and subsetting depend on config.seed, so runs with different seeds see different val sets.
"""

from collections.abc import Callable, Mapping

import ml_collections
import numpy as np

from dl4cv_jax.choices import ConfigError, choose, require
from dl4cv_jax.data.dataset import ArraySplit, Data, FileSplit, Split, StreamSplit, empty_like, image_shape_of
from dl4cv_jax.data.digits import load_digits_source
from dl4cv_jax.data.folder import load_folder_source
from dl4cv_jax.data.images import decode_files
from dl4cv_jax.data.source import SourceData
from dl4cv_jax.data.splits import stratified_split, stratified_subset
from dl4cv_jax.data.stats import channel_stats, sample_images
from dl4cv_jax.data.synthetic import load_synthetic_source
from dl4cv_jax.data.tfds_source import load_tfds_source

DEFAULT_MAX_IN_MEMORY_MB = 2048


def _tfds(config: ml_collections.ConfigDict) -> SourceData:
    return load_tfds_source(config, max_in_memory_bytes(config))


SOURCES: dict[str, Callable[[ml_collections.ConfigDict], SourceData]] = {
    "digits": load_digits_source,
    "synthetic": load_synthetic_source,
    "folder": load_folder_source,
    "tfds": _tfds,
}


def load_data(config: ml_collections.ConfigDict) -> Data:
    """Loads config.data.source as a `Data` with train, val and test splits (see the module docstring)."""
    validate_data_config(config)
    source = choose(SOURCES, "data.source", config.data.source)(config)
    splits = carve_missing_splits(source.splits, config)
    splits["train"] = subset_train(splits["train"], config)
    limit = max_in_memory_bytes(config)
    splits = {name: hold_in_memory(split, limit) for name, split in splits.items()}
    image_shape = image_shape_of(splits["train"])
    mean, std = normalization(config, splits["train"], image_shape[2])
    return Data(source.name, source.class_names, image_shape, mean, std, splits)


def max_in_memory_bytes(config: ml_collections.ConfigDict) -> int:
    """Largest split (decoded, in bytes) held in memory; larger ones are decoded in every pass / streamed."""
    return int(config.data.get("max_in_memory_mb", DEFAULT_MAX_IN_MEMORY_MB) * 2**20)


def validate_data_config(config: ml_collections.ConfigDict) -> None:
    """ConfigError for values no source can use, before anything is read."""
    data = config.data
    require(config.seed >= 0, "seed", config.seed, "must be >= 0")
    require(data.channels in (0, 1, 3), "data.channels", data.channels, "must be 0 (keep), 1 or 3")
    require(data.image_size >= 0, "data.image_size", data.image_size, "must be >= 0 (0 = keep the size)")
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
    """Decodes a FileSplit once into an ArraySplit when its images fit in `limit_bytes`."""
    if isinstance(split, FileSplit) and split.size * int(np.prod(split.shape)) <= limit_bytes:
        return ArraySplit(decode_files(split.paths, split.shape, split.resize), split.labels)
    return split


def normalization(
    config: ml_collections.ConfigDict, train: Split, channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """data.mean / data.std when given, else measured on the training images (a sample if not in memory)."""
    mean, std = tuple(config.data.mean), tuple(config.data.std)
    for key, value in (("data.mean", mean), ("data.std", std)):
        require(len(value) in (0, channels), key, value, f"must have {channels} values (one per channel) or none")
    if mean and std:
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    measured_mean, measured_std = channel_stats(sample_images(train))
    return tuple(float(m) for m in mean) or measured_mean, tuple(float(s) for s in std) or measured_std
