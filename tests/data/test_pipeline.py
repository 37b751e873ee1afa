"""Training batches are a pure function of (seed, epoch); evaluation sees every example exactly once."""

import collections

import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import eval_batches, load_data, steps_per_epoch, train_batches
from dl4cv_jax.data.augment import draw_tables, make_augmentations
from dl4cv_jax.data.dataset import ArraySplit
from dl4cv_jax.data.pipeline import epoch_order
from tests.data.conftest import array_data, data_config, unique_images


def concat(batches, key):
    return np.concatenate([b[key] for b in batches])


@pytest.fixture(scope="module")
def digits():
    config = data_config(batch_size=64)
    return load_data(config), config


def test_batch_count_shapes_and_dtypes(digits):
    data, config = digits
    batches = list(train_batches(data, config, epoch=0))
    assert len(batches) == steps_per_epoch(data, config) == data.num_examples("train") // 64
    for batch in batches:
        assert set(batch) == {"image", "label"}
        assert batch["image"].shape == (64, 8, 8, 1) and batch["image"].dtype == np.uint8
        assert batch["label"].shape == (64,) and batch["label"].dtype == np.int32


def test_same_seed_and_epoch_give_identical_batches_and_other_epochs_differ(digits):
    data, base = digits
    config = data_config(batch_size=64, data__augment=("crop", "flip"), data__crop_padding=2)
    first = list(train_batches(data, config, epoch=3))
    again = list(train_batches(data, config, epoch=3))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    other = list(train_batches(data, config, epoch=4))
    assert not np.array_equal(concat(first, "label"), concat(other, "label"))
    config.seed = 1
    reseeded = list(train_batches(data, config, epoch=3))
    assert not np.array_equal(concat(first, "label"), concat(reseeded, "label"))


def test_each_epoch_visits_distinct_examples_in_a_new_order():
    n, batch = 50, 8
    data = array_data(ArraySplit(unique_images(n), np.arange(n, dtype=np.int32)))
    config = data_config(batch_size=batch)
    labels = concat(list(train_batches(data, config, epoch=0)), "label")
    assert len(labels) == n // batch * batch and len(set(labels)) == len(labels)
    np.testing.assert_array_equal(labels, epoch_order(n, config.seed, 0)[: len(labels)])


@pytest.mark.parametrize("augment", [(), ("crop", "flip")])
def test_two_process_slices_concatenate_to_the_global_batch(digits, augment):
    data, _ = digits
    config = data_config(batch_size=64, data__augment=augment, data__crop_padding=2)
    whole = list(train_batches(data, config, epoch=1))
    halves = [list(train_batches(data, config, 1, process_index=p, process_count=2)) for p in range(2)]
    assert len(halves[0]) == len(halves[1]) == len(whole)
    for step, batch in enumerate(whole):
        for key in ("image", "label"):
            assert halves[0][step][key].shape[0] == 32
            joined = np.concatenate([halves[0][step][key], halves[1][step][key]])
            np.testing.assert_array_equal(joined, batch[key])


def test_crop_and_flip_in_the_pipeline_match_a_numpy_reference():
    n, padding = 24, 2
    images = unique_images(n, shape=(6, 7, 3))
    data = array_data(ArraySplit(images, np.arange(n, dtype=np.int32)))  # label = example index
    config = data_config(batch_size=8, data__augment=("crop", "flip"), data__crop_padding=padding)
    augmentations = make_augmentations(config.data.augment, padding, data.image_shape)
    offsets, flips = draw_tables(augmentations, config.seed, 2, n)
    flipped = 0
    for batch in train_batches(data, config, epoch=2):
        for got, index in zip(batch["image"], batch["label"], strict=True):
            y, x = offsets[index]
            padded = np.pad(images[index], ((padding, padding), (padding, padding), (0, 0)), mode="reflect")
            expected = padded[y : y + 6, x : x + 7]
            expected = np.flip(expected, axis=1) if flips[index] else expected
            np.testing.assert_array_equal(got, expected)
            flipped += bool(flips[index])
    assert 0 < flipped < n  # both branches were exercised


def test_training_images_stay_uint8_without_augmentation(digits):
    data, config = digits
    images = concat(list(train_batches(data, config, epoch=0)), "image")
    labels = concat(list(train_batches(data, config, epoch=0)), "label")
    train = data.split("train")
    order = epoch_order(train.size, config.seed, 0)[: len(labels)]
    np.testing.assert_array_equal(images, train.images[order])
    np.testing.assert_array_equal(labels, train.labels[order])


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_of_a_prime_sized_split_masks_the_padding(process_count):
    n = 97
    labels = np.random.default_rng(0).integers(0, 7, n).astype(np.int32)
    split = ArraySplit(unique_images(n), labels)
    data = array_data(split, test=split)
    config = data_config(batch_size=4, eval_batch_size=10)
    per_process = [
        list(eval_batches(data, "test", config, process_index=p, process_count=process_count))
        for p in range(process_count)
    ]
    assert all(len(batches) == 10 for batches in per_process)  # ceil(97 / 10) global batches
    seen_labels, seen_images = [], []
    for step in range(10):
        batch = {key: np.concatenate([b[step][key] for b in per_process]) for key in ("image", "label", "mask")}
        assert batch["image"].shape == (10, 6, 7, 2) and batch["mask"].dtype == np.float32
        real = batch["mask"] == 1
        assert np.all(batch["image"][~real] == 0) and np.all(batch["label"][~real] == 0)
        seen_labels.append(batch["label"][real])
        seen_images.append(batch["image"][real])
    assert sum(b["mask"].sum() for batches in per_process for b in batches) == n
    assert collections.Counter(np.concatenate(seen_labels)) == collections.Counter(labels)
    np.testing.assert_array_equal(np.concatenate(seen_images), split.images)  # fixed order: the split's


def test_eval_batch_size_defaults_to_batch_size(digits):
    data, config = digits
    batches = list(eval_batches(data, "val", config))
    assert all(len(b["label"]) == config.batch_size for b in batches)
    assert sum(b["mask"].sum() for b in batches) == data.num_examples("val")


def test_empty_split_gives_no_batches():
    data = array_data(ArraySplit(unique_images(8), np.arange(8, dtype=np.int32)))
    assert list(eval_batches(data, "val", data_config(batch_size=4))) == []


def test_bad_batch_sizes_name_the_key(digits):
    data, _ = digits
    with pytest.raises(ConfigError, match=r"config\.batch_size=63 must divide evenly over 2 processes"):
        train_batches(data, data_config(batch_size=63), 0, process_index=0, process_count=2)
    with pytest.raises(ConfigError, match=r"config\.batch_size=5000 is larger than the \d+ training examples"):
        steps_per_epoch(data, data_config(batch_size=5000))
    with pytest.raises(ConfigError, match=r"config\.eval_batch_size=9 must divide evenly over 2 processes"):
        eval_batches(data, "val", data_config(eval_batch_size=9), process_index=1, process_count=2)


def test_unknown_augmentation_fails_at_the_call(digits):
    data, _ = digits
    with pytest.raises(ConfigError, match=r"config\.data\.augment='blur' .*crop, cutmix, cutout, flip"):
        train_batches(data, data_config(data__augment=("blur",)), 0)


@pytest.mark.parametrize("item", ["mixup(0.4)", "cutmix"])
def test_mixing_gives_soft_labels_and_splits_over_processes(digits, item):
    data, _ = digits
    config = data_config(batch_size=64, data__augment=("crop(2)", "flip", item))
    whole = list(train_batches(data, config, epoch=0))
    halves = [list(train_batches(data, config, 0, process_index=p, process_count=2)) for p in range(2)]
    for step, batch in enumerate(whole):
        assert batch["label"].shape == (64, 10) and batch["label"].dtype == np.float32
        np.testing.assert_allclose(batch["label"].sum(axis=1), 1.0, rtol=1e-6)
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([halves[0][step][key], halves[1][step][key]]), batch[key])
    labels = concat(whole, "label")
    assert ((labels > 0) & (labels < 1)).any(axis=1).mean() > 0.5  # most examples really are mixed
    with pytest.raises(ConfigError, match=r"config\.batch_size=62 must be even per process"):
        train_batches(data, data_config(batch_size=62, data__augment=(item,)), 0, process_index=0, process_count=2)


def test_every_augmentation_runs_in_the_pipeline_deterministically():
    n = 16
    data = array_data(ArraySplit(unique_images(n, shape=(8, 8, 3)), np.arange(n, dtype=np.int32) % 4))
    spec = "crop(2,constant),translate(0.2),flip,vflip,rotate(90),zoom(0.3),shear(20),rot90,brightness,contrast"
    spec += ",saturation,hue,noise,cutout(3),cutmix(1.0)"
    config = data_config(batch_size=8, data__augment=(spec,))
    first, again = list(train_batches(data, config, 0)), list(train_batches(data, config, 0))
    for a, b in zip(first, again, strict=True):
        assert a["image"].shape == (8, 8, 8, 3) and a["label"].shape == (8, 4)
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_unknown_split_name(digits):
    data, config = digits
    with pytest.raises(ValueError, match="'validation'.*train, val, test"):
        eval_batches(data, "validation", config)
