"""The input pipeline (tf.data): training batches shuffled and augmented as a pure function of (seed, epoch),
evaluation batches in a fixed order with the last one padded and masked.

Multi-process: every process computes the same global batch order and takes its own contiguous slice of each
global batch (process i gets rows [i * B_local, (i + 1) * B_local)), so concatenating the processes' batches in
process order gives exactly the one-process batch.
"""

import weakref
from collections.abc import Iterator

import ml_collections
import numpy as np

from dl4cv_jax.choices import require
from dl4cv_jax.data.augment import Augmentation, draw_tables, make_augmentations
from dl4cv_jax.data.augment_ops import apply_augmentations
from dl4cv_jax.data.batching import (  # noqa: F401 (steps_per_epoch, eval_batch_size: re-exported)
    _ORDER_STREAM,
    epoch_order,
    eval_batch_size,
    local_batch_size,
    steps_per_epoch,
)
from dl4cv_jax.data.dataset import ArraySplit, Data, FileSplit, Split, StreamSplit
from dl4cv_jax.data.images import decode_file
from dl4cv_jax.data.tf_runtime import AUTOTUNE, deterministic_options, tf

Batch = dict[str, np.ndarray]

# In-memory splits as tensors, converted once per split rather than once per epoch (each conversion copies).
_TENSORS: "weakref.WeakKeyDictionary[ArraySplit, tuple[tf.Tensor, tf.Tensor]]" = weakref.WeakKeyDictionary()


def train_batches(
    data: Data,
    config: ml_collections.ConfigDict,
    epoch: int,
    process_index: int = 0,
    process_count: int = 1,
    first_step: int = 0,
) -> Iterator[Batch]:
    """This process's slices of the `steps_per_epoch` global training batches of `epoch`, from batch `first_step`
    on (a run resumed from a mid-epoch checkpoint continues with the batches it had not seen, none decoded twice).

    Yields {'image': uint8 [B_local, H, W, C], 'label': int32 [B_local]}, B_local = batch_size / process_count;
    with mixup or cutmix in the list, 'label' is float32 [B_local, num_classes] (soft targets).
    The same arguments always give the same batches (bit-exact resume); augmentations are those of
    config.data.augment, in order. Images stay uint8: the train step normalises them on the device.
    Bad config values raise ConfigError here, at the call, not at the first batch.
    """
    local = local_batch_size(config.batch_size, "batch_size", process_index, process_count)
    steps = steps_per_epoch(data, config)
    split = data.split("train")
    augmentations = training_augmentations(data, config, local)
    tables = [tf.constant(table) for table in draw_tables(augmentations, config.seed, epoch, split.size)]

    def augment(images: tf.Tensor, labels: tf.Tensor, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return apply_augmentations(augmentations, tables, images, index, labels, data.num_classes)

    if isinstance(split, StreamSplit):
        ds = _shuffled_stream(split, config, epoch).take(steps * config.batch_size)
        ds = ds.batch(config.batch_size, drop_remainder=True).skip(first_step)  # a stream cannot seek: read past
        ds = ds.map(lambda *batch: _local_slice(batch, process_index, local))
    else:
        order = epoch_order(split.size, config.seed, epoch)[: steps * config.batch_size]
        rows = slice(process_index * local, (process_index + 1) * local)
        order = order.reshape(steps, config.batch_size)[first_step:, rows]
        ds = _indexed_batches(split, order.reshape(-1), local)
    return _as_numpy(ds.map(augment, num_parallel_calls=AUTOTUNE), ("image", "label"))


def training_augmentations(data: Data, config: ml_collections.ConfigDict, local_batch: int) -> list[Augmentation]:
    """config.data.augment for `data`; mixup / cutmix pair neighbours, so they need an even per-process batch."""
    augmentations = make_augmentations(
        config.data.augment, config.data.crop_padding, data.image_shape, data.num_classes
    )
    if any(aug.mixes for aug in augmentations):
        require(local_batch % 2 == 0, "batch_size", config.batch_size, "must be even per process for mixup / cutmix")
    return augmentations


def eval_batches(
    data: Data,
    split: str,
    config: ml_collections.ConfigDict,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[Batch]:
    """Every example of `split` exactly once, in a fixed order, in global batches of `eval_batch_size(config)`.

    Yields {'image', 'label', 'mask'}: the last global batch is padded to full size with zero images, label 0 and
    mask 0 (float32; 1 for real examples), so every batch has one shape (one compilation) and sums weighted by
    mask give exact totals. No augmentation.
    """
    source = data.split(split)
    size = eval_batch_size(config)
    local = local_batch_size(size, "eval_batch_size", process_index, process_count)
    n = source.size
    if n == 0:
        return iter(())
    padded = -(-n // size) * size
    mask = (np.arange(padded) < n).astype(np.float32)
    if isinstance(source, StreamSplit):
        padding = tf.data.Dataset.from_tensors((tf.zeros(source.shape, tf.uint8), tf.constant(0, tf.int32)))
        ds = source.make_dataset().concatenate(padding.repeat(padded - n))
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(mask))).map(lambda pair, m: (*pair, m))
        ds = ds.batch(size).map(lambda *batch: _local_slice(batch, process_index, local))
    else:
        index = np.minimum(np.arange(padded), n - 1)  # padding repeats the last example, then is zeroed below
        rows = np.arange(padded).reshape(-1, size)[:, process_index * local : (process_index + 1) * local].reshape(-1)
        ds = tf.data.Dataset.zip((_indexed_batches(source, index[rows], local), _batched(mask[rows], local)))
        ds = ds.map(lambda example, m: (*example[:2], m))
    return _as_numpy(ds.map(_zero_padding, num_parallel_calls=AUTOTUNE), ("image", "label", "mask"))


def _indexed_batches(split: Split, index: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches of (image, label, index) for the examples `index` of an in-memory or file split, in that order."""
    if isinstance(split, ArraySplit):
        if split not in _TENSORS:
            _TENSORS[split] = (tf.constant(split.images), tf.constant(split.labels))
        images, labels = _TENSORS[split]

        def gather(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            return tf.gather(images, i), tf.gather(labels, i), i

        return _batched(index, batch_size).map(gather, num_parallel_calls=AUTOTUNE)
    assert isinstance(split, FileSplit)
    paths, labels = tf.constant(split.paths), tf.constant(split.labels)

    def load(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image = decode_file(tf.gather(paths, i), split.shape, split.resize, split.method, split.shorter)
        return image, tf.gather(labels, i), i

    ds = tf.data.Dataset.from_tensor_slices(index).map(load, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True)


def _batched(values: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(values).batch(batch_size, drop_remainder=True)


def _shuffled_stream(split: StreamSplit, config: ml_collections.ConfigDict, epoch: int) -> tf.data.Dataset:
    """(image, label, index) of a stream through a shuffle buffer seeded by (seed, epoch)."""
    buffer = config.data.shuffle_buffer or 16 * config.batch_size
    seed = int(np.random.default_rng([_ORDER_STREAM, config.seed, epoch]).integers(2**62))
    ds = split.make_dataset().enumerate().map(lambda i, example: (*example, tf.cast(i, tf.int32)))
    return ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)


def _local_slice(batch: tuple[tf.Tensor, ...], process_index: int, local: int) -> tuple[tf.Tensor, ...]:
    return tuple(t[process_index * local : (process_index + 1) * local] for t in batch)


def _zero_padding(images: tf.Tensor, labels: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, ...]:
    real = mask > 0
    images = tf.where(real[:, None, None, None], images, tf.zeros_like(images))
    return images, tf.where(real, labels, tf.zeros_like(labels)), mask


def _as_numpy(ds: tf.data.Dataset, keys: tuple[str, ...]) -> Iterator[Batch]:
    """Batches as dicts of numpy arrays, prefetched: the next batches are prepared while the step runs."""
    ds = ds.with_options(deterministic_options()).prefetch(AUTOTUNE)
    for batch in ds.as_numpy_iterator():
        yield dict(zip(keys, batch, strict=True))
