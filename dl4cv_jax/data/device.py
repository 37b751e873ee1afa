"""On-device input pipeline (config.data.pipeline='device'): the uint8 splits stay on the accelerator(s), and
gathering, cropping, flipping, cutout and mixup / cutmix run inside one jit-compiled function per batch.

For data sets that fit in accelerator memory (MNIST, CIFAR): nothing crosses the host-device link per step but a
step number, so the input can never be the bottleneck, and no TensorFlow is needed (GPU images often lack it;
pair it with source=numpy, digits or synthetic there). JAX only: this module must not import TensorFlow.

Same semantics as the tf.data path, by construction: the epoch order (`batching.epoch_order`) and the parameter
tables (`augment.draw_tables`) are the very same numpy arrays, and the operations below mirror `augment_ops.py`,
so both paths give the same batches bit for bit (tests/data/test_device.py). Per epoch the order and tables are
placed on the devices once (replicated); each batch comes out sharded over the mesh's batch axis.
"""

import dataclasses
import functools
import weakref
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data.augment import Augmentation, draw_tables, make_augmentations
from dl4cv_jax.data.batching import epoch_order, eval_batch_size, steps_per_epoch
from dl4cv_jax.data.dataset import ArraySplit, Data

Batch = dict[str, jax.Array]

# Splits placed on devices, per mesh: placed once, reused every epoch, freed with the split.
_RESIDENT: "weakref.WeakKeyDictionary[ArraySplit, dict]" = weakref.WeakKeyDictionary()


def to_uint8(x: jax.Array) -> jax.Array:
    """Rounds float images on the 0..255 scale to uint8 (half to even, like tf.round), then clips."""
    return jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)


def pad_and_crop(images: jax.Array, offsets: jax.Array, padding: int, fill: str = "reflect") -> jax.Array:
    """Pads by `padding` (reflect without repeating the edge, or zeros) and cuts H x W at each (y, x) offset."""
    _, height, width, channels = images.shape
    mode = "reflect" if fill == "reflect" else "constant"
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode=mode)

    def cut(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    return jax.vmap(cut)(padded, offsets)


def flip(images: jax.Array, flips: jax.Array) -> jax.Array:
    """Mirrors left-right the images whose bool entry is set."""
    return jnp.where(flips[:, None, None, None], images[:, :, ::-1], images)


def vflip(images: jax.Array, flips: jax.Array) -> jax.Array:
    """Mirrors top-bottom the images whose bool entry is set."""
    return jnp.where(flips[:, None, None, None], images[:, ::-1], images)


def box_mask(height: int, width: int, boxes: jax.Array) -> jax.Array:
    """bool [B, H, W, 1], True inside each (y0, x0, y1, x1) half-open box."""
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside = (rows >= boxes[:, 0, None, None]) & (rows < boxes[:, 2, None, None])
    inside &= (cols >= boxes[:, 1, None, None]) & (cols < boxes[:, 3, None, None])
    return inside[..., None]


def cutout(images: jax.Array, boxes: jax.Array, fill: int) -> jax.Array:
    """Sets the pixels inside each box to `fill`."""
    _, height, width, _ = images.shape
    return jnp.where(box_mask(height, width, boxes), jnp.uint8(fill), images)


def mix_partner(x: jax.Array) -> jax.Array:
    """Each example's partner: its neighbour in the epoch order (positions 2k <-> 2k + 1), as in tf.data."""
    return x[jnp.arange(x.shape[0]) ^ 1]


def mixup(images: jax.Array, labels: jax.Array, lams: jax.Array) -> tuple[jax.Array, jax.Array]:
    """lambda x + (1 - lambda) x_partner for images and one-hot labels."""
    lam = lams[:, None, None, None]
    mixed = lam * images.astype(jnp.float32) + (1.0 - lam) * mix_partner(images).astype(jnp.float32)
    return to_uint8(mixed), lams[:, None] * labels + (1.0 - lams[:, None]) * mix_partner(labels)


def cutmix(images: jax.Array, labels: jax.Array, boxes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The partner's pixels inside each box; labels mixed by the pasted area."""
    _, height, width, _ = images.shape
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(jnp.float32)
    kept = 1.0 - area / float(height * width)
    mixed = kept[:, None] * labels + (1.0 - kept[:, None]) * mix_partner(labels)
    return jnp.where(box_mask(height, width, boxes), mix_partner(images), images), mixed


OPS = {"crop": pad_and_crop, "flip": flip, "vflip": vflip, "cutout": cutout, "mixup": mixup, "cutmix": cutmix}
SUPPORTED = ("crop", "flip", "vflip", "cutout", "mixup", "cutmix")  # augmentation names the device path runs


def device_augmentations(data: Data, config: ml_collections.ConfigDict) -> list[Augmentation]:
    """config.data.augment, restricted to what runs on the device; ConfigError naming the others."""
    augmentations = make_augmentations(
        config.data.augment, config.data.crop_padding, data.image_shape, data.num_classes
    )
    unsupported = [aug.name for aug in augmentations if aug.name not in SUPPORTED]
    if unsupported:
        raise ConfigError(
            f"config.data.augment has {unsupported}, which data.pipeline='device' does not run; it runs: "
            f"{', '.join(SUPPORTED)} (use data.pipeline='tfdata' for the others)"
        )
    if any(aug.mixes for aug in augmentations) and config.batch_size % 2:
        raise ConfigError(f"config.batch_size={config.batch_size} must be even for mixup / cutmix")
    return augmentations


@dataclasses.dataclass(frozen=True)
class EpochInputs:
    """What one training epoch on the device needs, all on the devices: the resident split, the epoch's order
    ([steps, global batch] example indices) and the augmentation parameter tables (one row per example)."""

    images: jax.Array
    labels: jax.Array
    order: jax.Array
    tables: list[jax.Array]
    spec: tuple  # hashable (op, op_args, mixes) per augmentation: the static part of `batch_maker`
    num_classes: int


def epoch_inputs(data: Data, config: ml_collections.ConfigDict, epoch: int, mesh: Mesh) -> EpochInputs:
    """The device-resident inputs of training epoch `epoch` (0-based), replicated over `mesh`."""
    steps = steps_per_epoch(data, config)
    augmentations = device_augmentations(data, config)
    split = _array_split(data, "train")
    images, labels = _resident(split, mesh)
    order = epoch_order(split.size, config.seed, epoch)[: steps * config.batch_size].reshape(steps, -1)
    tables = draw_tables(augmentations, config.seed, epoch, split.size)
    replicated = NamedSharding(mesh, PartitionSpec())
    spec = tuple((aug.op, tuple(sorted(aug.op_args.items())), aug.mixes) for aug in augmentations)
    return EpochInputs(
        images,
        labels,
        _put(order.astype(np.int32), replicated),
        [_put(t, replicated) for t in tables],
        spec,
        data.num_classes,
    )


def batch_maker(spec: tuple, num_classes: int):
    """The pure function (images, labels, index, tables) -> augmented batch of the examples `index` [B].

    Traceable anywhere: jitted per batch below, or inside the whole-epoch `lax.scan` (train/epoch_program.py).
    """

    def make(images, labels, index, tables: Sequence[jax.Array]) -> Batch:
        x, y = images[index], labels[index]
        for (op, op_args, mixes), table in zip(spec, tables, strict=True):
            rows = table[index]
            if mixes:
                y = jax.nn.one_hot(y, num_classes, dtype=jnp.float32) if y.ndim == 1 else y
                x, y = OPS[op](x, y, rows, **dict(op_args))
            else:
                x = OPS[op](x, rows, **dict(op_args))
        return {"image": x, "label": y}

    return make


def train_batches(
    data: Data, config: ml_collections.ConfigDict, epoch: int, mesh: Mesh, first_step: int = 0
) -> Iterator[Batch]:
    """The `steps_per_epoch` global training batches of `epoch` from batch `first_step` on, sharded over `mesh`'s
    first axis.

    The same batches as `pipeline.train_batches` (same order, same augmentation parameters), as global arrays.
    """
    inputs = epoch_inputs(data, config, epoch, mesh)
    make = _train_batch_fn(inputs.spec, inputs.num_classes, mesh)
    return (
        make(inputs.images, inputs.labels, inputs.order, inputs.tables, np.int32(step))
        for step in range(first_step, inputs.order.shape[0])
    )


def eval_batches(data: Data, split_name: str, config: ml_collections.ConfigDict, mesh: Mesh) -> Iterator[Batch]:
    """Every example of the split once, in its order, padded to whole global batches and masked (as tf.data)."""
    split = _array_split(data, split_name)
    if split.size == 0:
        return iter(())
    size = eval_batch_size(config)
    images, labels = _resident(split, mesh)
    padded = -(-split.size // size) * size
    index = np.minimum(np.arange(padded), split.size - 1).reshape(-1, size).astype(np.int32)
    mask = (np.arange(padded) < split.size).astype(np.float32).reshape(-1, size)
    replicated = NamedSharding(mesh, PartitionSpec())
    index, mask = _put(index, replicated), _put(mask, replicated)
    make = _eval_batch_fn(mesh)
    return (make(images, labels, index, mask, np.int32(step)) for step in range(padded // size))


def _array_split(data: Data, name: str) -> ArraySplit:
    split = data.split(name)
    if not isinstance(split, ArraySplit):
        raise ConfigError(
            f"config.data.pipeline='device' needs the {name} split in memory, but it is {type(split).__name__} "
            "(larger than data.max_in_memory_mb); raise that limit or use data.pipeline='tfdata'"
        )
    return split


def _put(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array (identical on every process) as a global array; works on one host and on many."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def _resident(split: ArraySplit, mesh: Mesh) -> tuple[jax.Array, jax.Array]:
    """The split's uint8 images and labels on every device of `mesh`, placed once per (split, mesh)."""
    per_mesh = _RESIDENT.setdefault(split, {})
    if mesh not in per_mesh:
        replicated = NamedSharding(mesh, PartitionSpec())
        per_mesh[mesh] = (_put(split.images, replicated), _put(split.labels.astype(np.int32), replicated))
    return per_mesh[mesh]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches are split over the mesh's first (data) axis."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


@functools.lru_cache(maxsize=32)
def _train_batch_fn(spec: tuple, num_classes: int, mesh: Mesh):
    """jit(images, labels, order, tables, step) -> the step's augmented batch, for one augmentation list."""
    make = batch_maker(spec, num_classes)

    def make_step(images, labels, order, tables: Sequence[jax.Array], step):
        return make(images, labels, order[step], tables)

    return jax.jit(make_step, out_shardings=batch_sharding(mesh))


@functools.lru_cache(maxsize=8)
def _eval_batch_fn(mesh: Mesh):
    def make(images, labels, index, mask, step):
        real = mask[step] > 0
        x = jnp.where(real[:, None, None, None], images[index[step]], jnp.uint8(0))
        return {"image": x, "label": jnp.where(real, labels[index[step]], 0), "mask": mask[step]}

    return jax.jit(make, out_shardings=batch_sharding(mesh))
