"""scikit-learn's bundled handwritten digits: 1,797 8x8 grayscale images, offline, for quick runs and tests."""

import ml_collections
import numpy as np

from dl4cv_jax.data.arrays import convert_images
from dl4cv_jax.data.dataset import ArraySplit
from dl4cv_jax.data.source import SourceData


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """uint8 [1797, 8, 8, 1] images (the 0..16 ink levels scaled to 0..255) and int32 labels 0..9."""
    from sklearn.datasets import load_digits  # imported here: only this source needs scikit-learn

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int32)


def load_digits_source(config: ml_collections.ConfigDict) -> SourceData:
    """All 1,797 digits as one 'train' pool; `load_data` carves val and test from it (val/test_fraction)."""
    images, labels = digits_images()
    images = convert_images(
        images, config.data.channels, config.data.image_size, config.data.resize_method, config.data.resize_shorter
    )
    return SourceData("digits", tuple(str(d) for d in range(10)), {"train": ArraySplit(images, labels)})
