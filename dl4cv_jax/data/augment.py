"""Training augmentations as pure functions: random parameters drawn statelessly, then applied to a batch.

Each augmentation is split in two:
- `draw(seed, n)`: the random parameters of all n examples of the split for one epoch, from a stateless tf.random
  op keyed by a [2] int seed (folded from config.seed, the epoch and the augmentation's position in the list);
- `apply(images, params)`: a deterministic function of a uint8 [B, H, W, C] batch and its examples' rows of the
  table (gathered by example index).
So an example's augmentation is a pure function of (config.seed, epoch, example index): it does not depend on
thread scheduling, on the batch it lands in, or on how many processes share the global batch. Applying it per
batch (not per image) runs about 5x faster in tf.data.
"""

import dataclasses
from collections.abc import Callable, Sequence

from dl4cv_jax.choices import choose, require
from dl4cv_jax.data.tf_runtime import tf


def pad_and_crop(images: tf.Tensor, padding: int, offsets: tf.Tensor) -> tf.Tensor:
    """Reflect-pads each [B, H, W, C] image by `padding`, then cuts H x W out at its (y, x) row of `offsets`.

    Reflect padding mirrors without repeating the edge pixel (numpy's mode='reflect'), so it needs padding < H, W;
    it keeps the border statistics natural where zero padding would add black frames.
    """
    _, height, width, _ = images.shape
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]], mode="REFLECT")
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def crop_offsets(seed: tf.Tensor, n: int, padding: int) -> tf.Tensor:
    """int32 [n, 2] (y, x) offsets, uniform in [0, 2 * padding]."""
    return tf.random.stateless_uniform([n, 2], seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32)


def flip(images: tf.Tensor, flips: tf.Tensor) -> tf.Tensor:
    """Mirrors left-right the [B, H, W, C] images whose entry of bool [B] `flips` is set."""
    return tf.where(flips[:, None, None, None], tf.reverse(images, axis=[2]), images)


def flip_draws(seed: tf.Tensor, n: int) -> tf.Tensor:
    """bool [n], each True with probability 1/2."""
    return tf.random.stateless_uniform([n], seed) < 0.5


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """One named augmentation: its parameter draw for a whole split and its batched application."""

    draw: Callable[[tf.Tensor, int], tf.Tensor]
    apply: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _crop(padding: int) -> Augmentation:
    return Augmentation(
        draw=lambda seed, n: crop_offsets(seed, n, padding),
        apply=lambda images, offsets: pad_and_crop(images, padding, offsets),
    )


def _flip(padding: int) -> Augmentation:
    return Augmentation(draw=flip_draws, apply=flip)


AUGMENTATIONS: dict[str, Callable[[int], Augmentation]] = {
    "crop": _crop,  # random crop after reflect padding by config.data.crop_padding
    "flip": _flip,  # horizontal flip with probability 1/2
}


def augment_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """config.data.augment as a tuple of names; also accepts 'crop,flip' as one string from the command line."""
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    return tuple(value)


def make_augmentations(
    names: str | Sequence[str], padding: int, image_shape: tuple[int, int, int]
) -> list[Augmentation]:
    """The named augmentations in order; ConfigError for an unknown name (data.augment) or a crop padding that
    reflect padding cannot produce at this image size (data.crop_padding)."""
    names = augment_names(names)
    builders = [choose(AUGMENTATIONS, "data.augment", name) for name in names]
    if "crop" in names:
        height, width, _ = image_shape
        require(
            0 <= padding < min(height, width),
            "data.crop_padding",
            padding,
            f"must be >= 0 and smaller than the {height}x{width} images (reflect padding)",
        )
    return [build(padding) for build in builders]


def draw_tables(augmentations: Sequence[Augmentation], seed: int, epoch: int, n: int) -> list[tf.Tensor]:
    """Each augmentation's parameters for the n examples of one epoch, from (seed, epoch, its position)."""
    key = tf.constant([seed, epoch], tf.int64)
    return [
        aug.draw(tf.random.experimental.stateless_fold_in(key, position), n)
        for position, aug in enumerate(augmentations)
    ]


def apply_augmentations(
    augmentations: Sequence[Augmentation], tables: Sequence[tf.Tensor], images: tf.Tensor, index: tf.Tensor
) -> tf.Tensor:
    """Applies each augmentation to a batch with the table rows of its examples (`index`: int [B])."""
    for aug, table in zip(augmentations, tables, strict=True):
        images = aug.apply(images, tf.gather(table, index))
    return images
