"""tfds source on mocked data (offline), streaming of splits too large for memory, and the not-prepared error."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import eval_batches, load_data, train_batches
from dl4cv_jax.data.dataset import ArraySplit, StreamSplit
from tests.data.conftest import data_config


class Dl4cvTinyImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A real dataset prepared offline into tfrecords; read back by name from data_dir like copied data."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(8, 8, 3)),
            "label": tfds.features.ClassLabel(names=["ant", "bee", "cow"]),
        }
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(features), supervised_keys=("image", "label")
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(30, seed=0), "test": self._generate_examples(11, seed=1)}

    def _generate_examples(self, n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            yield i, {"image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "label": i % 3}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    Dl4cvTinyImages(data_dir=str(root)).download_and_prepare()  # ~6 s, mostly tfds' own imports
    return str(root)


def tfds_config(name: str, data_dir: str = "", **overrides):
    return data_config(data__source="tfds", data__name=name, data__dir=data_dir, batch_size=8, **overrides)


def mocked(num_examples: int):
    return tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE)


def test_mnist_in_memory_with_a_carved_val_split():
    with mocked(50):
        data = load_data(tfds_config("mnist", data__val_fraction=0.2))
    assert data.image_shape == (28, 28, 1) and data.num_classes == 10 and data.class_names[0] == "0"
    assert [data.num_examples(s) for s in ("train", "val", "test")] == [40, 10, 50]
    train = data.split("train")
    assert isinstance(train, ArraySplit) and train.images.dtype == np.uint8 and train.labels.dtype == np.int32


def test_cifar10_class_names_and_conversion():
    with mocked(12):
        data = load_data(tfds_config("cifar10", data__channels=1, data__image_size=16, data__val_split="test"))
    # Mocked from code, cifar10's label names are '0'..'9'; prepared data stores 'airplane', ... in its metadata.
    assert data.class_names == tuple(tfds.builder("cifar10").info.features["label"].names)
    assert data.num_classes == 10
    assert data.image_shape == (16, 16, 1) and data.split("val").images.shape == (12, 16, 16, 1)
    assert data.num_examples("train") == 12  # nothing carved: val_split names a split


def test_streamed_splits_when_larger_than_the_memory_limit():
    config = tfds_config("cifar10", data__val_split="test", data__augment=("crop", "flip"), data__crop_padding=4)
    config.data.max_in_memory_mb = 0
    with mocked(21):
        data = load_data(config)
        assert isinstance(data.split("train"), StreamSplit) and "streamed" in data.describe()
        first = list(train_batches(data, config, epoch=0))
        again = list(train_batches(data, config, epoch=0))
        halves = [list(train_batches(data, config, 0, process_index=p, process_count=2)) for p in range(2)]
        evaluated = list(eval_batches(data, "test", config))
    assert len(first) == 21 // 8 and first[0]["image"].shape == (8, 32, 32, 3)
    for a, b, h0, h1 in zip(first, again, *halves, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(np.concatenate([h0["image"], h1["image"]]), a["image"])
    assert len(evaluated) == 3 and sum(b["mask"].sum() for b in evaluated) == 21
    assert np.all(evaluated[-1]["image"][evaluated[-1]["mask"] == 0] == 0)


def test_streamed_train_cannot_be_carved_or_subset():
    config = tfds_config("mnist")
    config.data.max_in_memory_mb = 0
    with mocked(10), pytest.raises(ConfigError, match=r"config\.data\.val_split='' .*train\[:-10000\]"):
        load_data(config)
    config.data.val_split = "test"
    config.data.max_train_examples = 5
    with mocked(10), pytest.raises(ConfigError, match=r"config\.data\.max_train_examples=5 .*train\[:5\]"):
        load_data(config)


def test_not_prepared_fails_fast_naming_name_and_dir(tmp_path):
    start = time.monotonic()
    with pytest.raises(ConfigError) as error:
        load_data(tfds_config("mnist", str(tmp_path)))
    message = str(error.value)
    assert "config.data.name='mnist'" in message and f"config.data.dir='{tmp_path}'" in message
    assert "tfds build mnist" in message and "\n" not in message
    assert time.monotonic() - start < 30  # no download attempt (that retries for minutes offline)


def test_unknown_dataset_and_missing_name(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.data\.name='no_such_dataset_xyz' is not a tensorflow-datasets"):
        load_data(tfds_config("no_such_dataset_xyz", str(tmp_path)))
    with pytest.raises(ConfigError, match=r"config\.data\.name='' must name"):
        load_data(tfds_config(""))


def test_prepared_data_is_read_from_data_dir_in_memory_or_streamed(prepared_dir):
    config = tfds_config("dl4cv_tiny_images", prepared_dir, eval_batch_size=4)
    data = load_data(config)
    assert data.class_names == ("ant", "bee", "cow") and data.image_shape == (8, 8, 3)
    assert [data.num_examples(s) for s in ("train", "val", "test")] == [24, 6, 11]
    config.data.val_split = "train[-6:]"
    config.data.train_split = "train[:-6]"
    config.data.max_in_memory_mb = 0
    streamed = load_data(config)
    assert isinstance(streamed.split("test"), StreamSplit) and streamed.num_examples("train") == 24
    for a, b in zip(eval_batches(data, "test", config), eval_batches(streamed, "test", config), strict=True):
        for key in ("image", "label", "mask"):
            np.testing.assert_array_equal(a[key], b[key])


def test_unknown_split_name_names_the_key(prepared_dir):
    config = tfds_config("dl4cv_tiny_images", prepared_dir, data__val_split="validation")
    with pytest.raises(ConfigError, match=r"config\.data\.val_split='validation' is not a split of dl4cv_tiny_images"):
        load_data(config)
