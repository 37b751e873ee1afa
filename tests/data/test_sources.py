"""digits and synthetic sources, carving, subsetting, statistics and config errors common to all sources."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import Data, load_data
from tests.data.conftest import data_config


def split_labels(data: Data, split: str) -> np.ndarray:
    return data.split(split).labels


def test_digits_shapes_classes_and_60_20_20_split():
    data = load_data(data_config())
    assert data.class_names == tuple("0123456789") and data.num_classes == 10
    assert data.image_shape == (8, 8, 1)
    sizes = {s: data.num_examples(s) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert abs(sizes["val"] - 0.2 * 1797) < 1 and abs(sizes["test"] - 0.2 * 1797) < 1
    train = data.split("train")
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    assert train.images.max() == 255 and train.images.min() == 0
    reference = load_digits()
    for split in ("train", "val", "test"):
        for c in range(10):
            share = np.mean(split_labels(data, split) == c) - np.mean(reference.target == c)
            assert abs(share) < 2 / data.num_examples(split) + 1e-9


def test_digits_pixels_are_the_scaled_sklearn_values():
    data = load_data(data_config(data__val_fraction=0.0, data__test_fraction=0.0))
    reference = load_digits()
    assert data.num_examples("train") == 1797 and data.num_examples("val") == data.num_examples("test") == 0
    np.testing.assert_array_equal(data.split("train").images[..., 0], np.round(reference.images * 255 / 16))
    np.testing.assert_array_equal(data.split("train").labels, reference.target)


def test_digits_split_is_deterministic_for_the_seed():
    first, again = load_data(data_config()), load_data(data_config())
    other = load_data(data_config(seed=1))
    np.testing.assert_array_equal(first.split("val").images, again.split("val").images)
    assert not np.array_equal(first.split("val").images, other.split("val").images)


def test_digits_converted_to_rgb_and_resized():
    data = load_data(data_config(data__channels=3, data__image_size=16))
    assert data.image_shape == (16, 16, 3) and data.split("test").images.shape[1:] == (16, 16, 3)
    images = data.split("train").images
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # gray repeated into RGB
    assert len(data.mean) == len(data.std) == 3


def test_synthetic_shapes_sizes_and_determinism():
    config = data_config(
        data__source="synthetic",
        data__synthetic_shape=(12, 10, 3),
        data__synthetic_classes=4,
        data__synthetic_examples=80,
    )
    data = load_data(config)
    assert data.image_shape == (12, 10, 3) and data.num_classes == 4 and len(data.class_names) == 4
    assert [data.num_examples(s) for s in ("train", "val", "test")] == [80, 20, 20]
    assert np.bincount(data.split("train").labels).tolist() == [20, 20, 20, 20]  # balanced
    again = load_data(config)
    np.testing.assert_array_equal(data.split("test").images, again.split("test").images)
    assert not np.array_equal(data.split("val").images, data.split("test").images)


def test_synthetic_is_learnable_by_nearest_class_mean():
    data = load_data(data_config(data__source="synthetic", data__synthetic_examples=400))
    train, test = data.split("train"), data.split("test")
    means = np.stack([train.images[train.labels == c].mean(axis=0) for c in range(data.num_classes)])
    distances = ((test.images[:, None].astype(np.float64) - means[None]) ** 2).sum(axis=(2, 3, 4))
    assert np.mean(distances.argmin(axis=1) == test.labels) > 0.9


def test_max_train_examples_is_a_stratified_subset_after_carving_val():
    full = load_data(data_config())
    small = load_data(data_config(data__max_train_examples=100))
    assert small.num_examples("train") == 100
    assert small.num_examples("val") == full.num_examples("val")  # val carved before subsetting
    np.testing.assert_array_equal(small.split("val").labels, full.split("val").labels)
    assert np.bincount(small.split("train").labels).tolist() == [10] * 10


def test_mean_and_std_measured_on_train_or_taken_from_the_config():
    data = load_data(data_config())
    images = data.split("train").images / 255.0
    np.testing.assert_allclose(data.mean, [images.mean()], rtol=1e-9)
    np.testing.assert_allclose(data.std, [images.std()], rtol=1e-9)
    given = load_data(data_config(data__mean=(0.25,), data__std=(0.5,)))
    assert given.mean == (0.25,) and given.std == (0.5,)


def test_describe_is_one_line():
    line = load_data(data_config()).describe()
    assert "\n" not in line and line.startswith("digits: 10 classes, 8x8x1") and "1078/360/359" in line


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"data__source": "csv"}, ["config.data.source='csv'", "digits, folder, numpy, synthetic, tfds"]),
        ({"data__val_fraction": 1.5}, ["config.data.val_fraction=1.5", "[0, 1)"]),
        ({"data__val_fraction": 0.5, "data__test_fraction": 0.5}, ["config.data.val_fraction=0.5", "< 1"]),
        ({"data__channels": 2}, ["config.data.channels=2", "1 or 3"]),
        ({"data__image_size": -1}, ["config.data.image_size=-1"]),
        ({"data__mean": (0.1, 0.2)}, ["config.data.mean=(0.1, 0.2)", "1 values"]),
        ({"data__std": (0.0,)}, ["config.data.std=(0.0,)", "> 0"]),
        ({"data__source": "synthetic", "data__synthetic_shape": (8, 8)}, ["config.data.synthetic_shape"]),
        ({"seed": -1}, ["config.seed=-1"]),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(overrides, expected):
    with pytest.raises(ConfigError) as error:
        load_data(data_config(**overrides))
    message = str(error.value)
    assert "\n" not in message
    for part in expected:
        assert part in message
