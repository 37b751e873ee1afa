"""numpy arrays as a source: from Python (`arrays_source`) and from an .npz file (source=numpy)."""

import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data, train_batches
from dl4cv_jax.data.arrays import arrays_source
from tests.data.conftest import data_config, unique_images


def labelled(n: int, shape=(6, 6, 3), seed: int = 0):
    return unique_images(n, shape, seed), (np.arange(n) % 3).astype(np.int64)


def test_npz_with_train_and_test_carves_val(tmp_path):
    (x, y), (xt, yt) = labelled(30), labelled(9, seed=1)
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y, x_test=xt, y_test=yt, class_names=np.array(["a", "b", "c"]))
    config = data_config(data__source="numpy", data__dir=str(tmp_path / "mine.npz"), batch_size=8)
    data = load_data(config)
    assert data.name == "mine" and data.class_names == ("a", "b", "c") and data.image_shape == (6, 6, 3)
    assert [data.num_examples(s) for s in ("train", "val", "test")] == [24, 6, 9]
    np.testing.assert_array_equal(data.split("test").images, xt)
    assert data.split("train").paths is None
    assert next(iter(train_batches(data, config, 0)))["image"].shape == (8, 6, 6, 3)


def test_arrays_source_converts_gray_and_names_classes_by_number():
    x, y = labelled(20, shape=(4, 4))  # [N, H, W]: one channel
    data = load_data(data_config(), arrays_source((x, y), channels=3, image_size=8))
    assert data.image_shape == (8, 8, 3) and data.class_names == ("0", "1", "2")
    images = data.split("train").images
    assert np.all(images[..., 0] == images[..., 2])


def test_bad_arrays_and_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"images must be uint8"):
        arrays_source((np.zeros((4, 5, 5, 3), np.float32), np.zeros(4, int)))
    with pytest.raises(ConfigError, match=r"labels must be 4 non-negative integers"):
        arrays_source((np.zeros((4, 5, 5, 3), np.uint8), np.zeros(3, int)))
    with pytest.raises(ConfigError, match=r"config\.data\.dir='.*nothing\.npz' is not an \.npz file"):
        load_data(data_config(data__source="numpy", data__dir=str(tmp_path / "nothing.npz")))
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((4, 5, 5), np.uint8))
    with pytest.raises(ConfigError, match=r"has no x_train and y_train"):
        load_data(data_config(data__source="numpy", data__dir=str(tmp_path / "partial.npz")))
