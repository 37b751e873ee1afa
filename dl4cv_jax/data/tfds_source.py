"""TensorFlow Datasets, read offline from prepared data: nothing is downloaded at run time.

A split that fits in memory (MNIST, CIFAR, ...) is decoded once into numpy arrays, so everything downstream is
the same as for the other sources. A larger one (ImageNet) is streamed in its stored order (tfds shuffles examples
when it prepares a dataset) through a shuffle buffer; streamed splits cannot be carved or subset by label, so name
the slices with tfds' split syntax instead (e.g. train_split='train[:-10000]', val_split='train[-10000:]').
"""

import difflib
import functools

import ml_collections
import numpy as np

from dl4cv_jax.choices import ConfigError, require
from dl4cv_jax.data.dataset import ArraySplit, StreamSplit
from dl4cv_jax.data.images import convert
from dl4cv_jax.data.source import SourceData
from dl4cv_jax.data.tf_runtime import AUTOTUNE, deterministic_options, tf


def load_tfds_source(config: ml_collections.ConfigDict, max_in_memory_bytes: int) -> SourceData:
    """The named splits of tfds dataset data.name from data.dir; ConfigError at once if it is not prepared."""
    import tensorflow_datasets as tfds  # imported here: slow to import, and only this source needs it

    name, data_dir = config.data.name, config.data.dir or None
    require(bool(name), "data.name", name, "must name a tensorflow-datasets dataset for source=tfds, e.g. cifar10")
    for key in ("train_split", "val_split", "test_split"):
        check_split_syntax(key, config.data[key])
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError(
            f"config.data.name={name!r} is not a tensorflow-datasets dataset{_close_names(name)}"
        ) from None
    image_key, label_key = _supervised_keys(builder.info, name)
    label_feature = builder.info.features[label_key]
    require(hasattr(label_feature, "names"), "data.name", name, f"has no class-label feature ({label_key!r})")
    shape = _image_shape(builder.info.features[image_key].shape, config)

    splits = {}
    for split, key in (("train", "train_split"), ("val", "val_split"), ("test", "test_split")):
        if not config.data[key]:
            require(split != "train", "data.train_split", config.data[key], "must name a tfds split, e.g. 'train'")
            continue  # carved from train by load_data
        make_dataset = functools.partial(_converted, builder, key, config, shape)
        size = int(make_dataset().cardinality())  # known for prepared tfds data; < 0 if not
        if size < 0 or size * int(np.prod(shape)) <= max_in_memory_bytes:
            splits[split] = ArraySplit(*_collect(make_dataset(), shape))
        else:
            splits[split] = StreamSplit(make_dataset, size, shape)
    return SourceData(name, tuple(label_feature.names), splits)


def check_split_syntax(key: str, split: str) -> None:
    """ConfigError for a data.<key> that is not tfds split syntax ('' = none); checked before any data is opened,
    so a typo fails at once, even where the dataset is not prepared."""
    import tensorflow_datasets as tfds

    if not split:
        return
    try:
        tfds.core.ReadInstruction.from_spec(split)
    except (ValueError, AssertionError) as error:
        reason = str(error).strip().splitlines()[-1].split(". See format")[0]  # tfds' first line only repeats it
        raise ConfigError(
            f"config.data.{key}={split!r} is not a tfds split ({reason}); write e.g. 'train', 'train[:90%]', "
            f"'train[-10000:]' or 'train+test'"
        ) from None


def _close_names(name: str) -> str:
    """'; did you mean ...' with the registered tfds names closest to `name` (there are hundreds to list)."""
    import tensorflow_datasets as tfds

    close = difflib.get_close_matches(name, tfds.list_builders(with_community_datasets=False), n=3)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else "; see tfds.list_builders()"


def _converted(builder, key: str, config: ml_collections.ConfigDict, shape: tuple[int, int, int]) -> tf.data.Dataset:
    """(uint8 image converted to `shape`, int32 label) pairs of the split config.data[key], in stored order."""

    def convert_example(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        data = config.data
        image = convert(image, shape[2], data.image_size, data.resize_method, data.resize_shorter)
        return image, tf.cast(label, tf.int32)

    ds = _open(builder, config.data[key], key, config).map(convert_example, num_parallel_calls=AUTOTUNE)
    return ds.with_options(deterministic_options())


def _supervised_keys(info, name: str) -> tuple[str, str]:
    keys = info.supervised_keys
    require(keys is not None and len(keys) == 2, "data.name", name, "has no (image, label) supervised keys")
    return keys[0], keys[1]


def _image_shape(stored: tuple, config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(H, W, C) after conversion; images of varying size need data.image_size."""
    height, width, channels = stored
    if config.data.image_size:
        height = width = config.data.image_size
    require(
        height is not None and width is not None,
        "data.image_size",
        config.data.image_size,
        f"must be > 0: {config.data.name} images differ in size",
    )
    return height, width, config.data.channels or (1 if channels in (1, 2) else 3)


def _open(builder, split: str, key: str, config: ml_collections.ConfigDict) -> tf.data.Dataset:
    """(image, label) pairs of `split` in stored order; ConfigError if not prepared or no such split."""
    import tensorflow_datasets as tfds

    try:
        return builder.as_dataset(
            split=split,
            as_supervised=True,
            shuffle_files=False,
            read_config=tfds.ReadConfig(try_autocache=False),
        )
    except AssertionError:  # tfds' way of saying the data is not there
        raise ConfigError(
            f"config.data.name={config.data.name!r} is not prepared in config.data.dir={config.data.dir!r} "
            f"({builder.data_dir}); nothing is downloaded at run time: prepare it where there is network "
            f"(`tfds build {config.data.name}`) and copy the data folder to data.dir"
        ) from None
    except ValueError as error:  # unknown split name or bad slice syntax
        message = str(error).strip().splitlines()[0]
        raise ConfigError(f"config.data.{key}={split!r} is not a split of {config.data.name}: {message}") from None


def _collect(ds: tf.data.Dataset, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """All (image, label) pairs of `ds` as uint8 [N, H, W, C] and int32 [N] arrays."""
    images, labels = [np.zeros((0, *shape), np.uint8)], [np.zeros(0, np.int32)]
    for image_batch, label_batch in ds.batch(1024).prefetch(2).as_numpy_iterator():
        images.append(image_batch)
        labels.append(label_batch)
    return np.concatenate(images), np.concatenate(labels)
