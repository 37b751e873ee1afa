"""Helpers for the data tests: small configs and hand-built Data objects with known images."""

import numpy as np
import pytest

from dl4cv_jax.data.dataset import ArraySplit, Data
from tests.conftest import tiny_digits_config


def data_config(**overrides):
    """The tiny digits config with data overrides given as data__field=value."""
    return tiny_digits_config(**overrides)


def array_data(train: ArraySplit, val: ArraySplit | None = None, test: ArraySplit | None = None) -> Data:
    """A Data over given arrays; classes '0'..max label, statistics fixed (not under test here)."""
    val = val or train.take(np.arange(0))
    test = test or train.take(np.arange(0))
    labels = np.concatenate([train.labels, val.labels, test.labels])
    channels = train.images.shape[-1]
    return Data(
        name="arrays",
        class_names=tuple(str(k) for k in range(int(labels.max()) + 1)),
        image_shape=tuple(train.images.shape[1:]),
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        splits={"train": train, "val": val, "test": test},
    )


def unique_images(n: int, shape=(6, 7, 2), seed: int = 0) -> np.ndarray:
    """uint8 [n, *shape] random images, distinct from each other (and from their crops and flips)."""
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.fixture
def config():
    return data_config()
