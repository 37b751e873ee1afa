"""Crop and flip against numpy references; parameter draws are stateless and cover their range."""

import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data.augment import (
    augment_names,
    crop_offsets,
    draw_tables,
    flip,
    flip_draws,
    make_augmentations,
    pad_and_crop,
)
from dl4cv_jax.data.tf_runtime import tf
from tests.data.conftest import unique_images


def numpy_crop(image: np.ndarray, padding: int, y: int, x: int) -> np.ndarray:
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode="reflect")
    return padded[y : y + image.shape[0], x : x + image.shape[1]]


def test_pad_and_crop_matches_numpy_reflect_pad_and_slice_at_every_offset():
    padding = 2
    images = unique_images(1, shape=(5, 6, 2))
    offsets = [(y, x) for y in range(2 * padding + 1) for x in range(2 * padding + 1)]
    batch = np.repeat(images, len(offsets), axis=0)
    out = pad_and_crop(tf.constant(batch), padding, tf.constant(offsets, tf.int32)).numpy()
    for got, (y, x) in zip(out, offsets, strict=True):
        np.testing.assert_array_equal(got, numpy_crop(images[0], padding, y, x))


def test_zero_offset_padding_one_shows_the_reflected_border():
    image = np.arange(9, dtype=np.uint8).reshape(3, 3, 1)
    out = pad_and_crop(tf.constant(image[None]), 1, tf.constant([[0, 0]], tf.int32)).numpy()[0, ..., 0]
    np.testing.assert_array_equal(out, [[4, 3, 4], [1, 0, 1], [4, 3, 4]])  # mirrored, edge not repeated


def test_flip_matches_numpy_flip_where_asked():
    images = unique_images(4)
    flips = np.array([True, False, True, False])
    out = flip(tf.constant(images), tf.constant(flips)).numpy()
    for got, image, flipped in zip(out, images, flips, strict=True):
        np.testing.assert_array_equal(got, np.flip(image, axis=1) if flipped else image)


def test_draws_are_stateless_and_cover_their_range():
    seed = tf.constant([3, 4], tf.int64)
    offsets = crop_offsets(seed, 2000, padding=3).numpy()
    np.testing.assert_array_equal(offsets, crop_offsets(seed, 2000, padding=3).numpy())
    assert offsets.min() == 0 and offsets.max() == 6 and len(np.unique(offsets)) == 7
    flips = flip_draws(seed, 2000).numpy()
    assert 0.45 < flips.mean() < 0.55


def test_tables_depend_on_seed_and_epoch():
    augmentations = make_augmentations(("crop", "flip"), 2, (8, 8, 1))
    first = [t.numpy() for t in draw_tables(augmentations, seed=0, epoch=0, n=100)]
    again = [t.numpy() for t in draw_tables(augmentations, seed=0, epoch=0, n=100)]
    next_epoch = [t.numpy() for t in draw_tables(augmentations, seed=0, epoch=1, n=100)]
    other_seed = [t.numpy() for t in draw_tables(augmentations, seed=1, epoch=0, n=100)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], next_epoch[0]) and not np.array_equal(first[0], other_seed[0])


def test_names_from_a_command_line_string():
    assert augment_names("crop, flip") == ("crop", "flip")
    assert augment_names(("flip",)) == ("flip",)
    assert augment_names("") == ()


def test_unknown_augmentation_names_the_key_and_the_choices():
    with pytest.raises(ConfigError) as error:
        make_augmentations(("crop", "rotate"), 2, (8, 8, 1))
    assert "config.data.augment='rotate'" in str(error.value) and "crop, flip" in str(error.value)


def test_padding_too_large_for_reflect_padding():
    with pytest.raises(ConfigError, match=r"config\.data\.crop_padding=8 .*8x8"):
        make_augmentations(("crop",), 8, (8, 8, 1))
    make_augmentations(("flip",), 8, (8, 8, 1))  # padding only matters for crop
