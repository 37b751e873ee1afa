"""config.cv.fold picks the validation fold inside load_data: folds are disjoint, cover train + val, keep the
class shares, and leave the test split as it is without k-fold."""

import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data
from tests.data.conftest import data_config


def fold_data(folds: int, fold: int, **overrides):
    return load_data(data_config(cv__folds=folds, cv__fold=fold, **overrides))


def test_validation_folds_partition_the_pool_and_test_is_unchanged():
    plain = load_data(data_config())
    pool = np.concatenate([plain.split("train").images, plain.split("val").images]).reshape(-1, 64)
    seen = []
    for fold in range(5):
        data = fold_data(5, fold)
        np.testing.assert_array_equal(data.split("test").images, plain.split("test").images)
        val = data.split("val")
        assert data.num_examples("train") + val.size == len(pool)
        assert abs(val.size - len(pool) / 5) < 1
        counts = np.bincount(val.labels, minlength=10)
        expected = np.bincount(np.concatenate([plain.split("train").labels, plain.split("val").labels])) / 5
        assert np.all(np.abs(counts - expected) < 1)
        seen.append(val.images.reshape(-1, 64))
    rows = np.concatenate(seen)
    assert len(rows) == len(pool)
    # every pooled image is in exactly one validation fold (compare as sorted byte rows)
    as_bytes = lambda a: np.sort(np.array([r.tobytes() for r in a]))  # noqa: E731
    np.testing.assert_array_equal(as_bytes(rows), as_bytes(pool))


def test_fold_choice_is_deterministic():
    a, b = fold_data(3, 1), fold_data(3, 1)
    np.testing.assert_array_equal(a.split("val").images, b.split("val").images)


@pytest.mark.parametrize(
    ("folds", "fold", "message"),
    [
        (5, 5, r"config\.cv\.fold=5 must be in 0\.\.4"),
        (0, 2, r"config\.cv\.fold=2 needs cv\.folds >= 2"),
        (-1, -1, r"config\.cv\.folds=-1 must be 0 or 1 \(off\) or >= 2"),
    ],
)
def test_bad_fold_settings(folds, fold, message):
    with pytest.raises(ConfigError, match=message):
        fold_data(folds, fold)
