"""Random but learnable images for tests and benchmarks: a smooth class pattern plus per-image noise.

Each class has a blocky 4x4 grid of mean intensities stretched to the image size; an image is its class
pattern plus Gaussian noise. A linear model learns it within an epoch, so a loss that does not fall points at
the training code, not at the data. Deterministic for config.seed; the same patterns in every split.
"""

import ml_collections
import numpy as np

from dl4cv_jax.choices import require
from dl4cv_jax.data.arrays import convert_images
from dl4cv_jax.data.dataset import ArraySplit
from dl4cv_jax.data.source import SourceData

_GRID = 4  # pattern cells per side
_NOISE_STD = 48.0  # per-pixel noise, on the 0..255 scale


def class_patterns(num_classes: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """float [num_classes, H, W, C] mean images: 4x4 blocks of intensities in [64, 192]."""
    height, width, channels = shape
    grid = np.random.default_rng([seed, 0]).uniform(64, 192, (num_classes, _GRID, _GRID, channels))
    rows = np.arange(height) * _GRID // height
    cols = np.arange(width) * _GRID // width
    return grid[:, rows][:, :, cols]


def synthetic_split(patterns: np.ndarray, n: int, seed: int, stream: int) -> ArraySplit:
    """`n` images with balanced labels in random order: uint8 clip(pattern[label] + noise)."""
    rng = np.random.default_rng([seed, stream])
    labels = rng.permutation(np.arange(n) % len(patterns)).astype(np.int32)
    noise = rng.normal(0.0, _NOISE_STD, (n, *patterns.shape[1:]))
    images = np.clip(np.round(patterns[labels] + noise), 0, 255).astype(np.uint8)
    return ArraySplit(images, labels)


def load_synthetic_source(config: ml_collections.ConfigDict) -> SourceData:
    """train of data.synthetic_examples images, val and test of a quarter as many (at least one each)."""
    shape = tuple(int(d) for d in config.data.synthetic_shape)
    require(
        len(shape) == 3 and min(shape) > 0 and shape[2] in (1, 3),
        "data.synthetic_shape",
        config.data.synthetic_shape,
        "must be (H, W, C) with positive H, W and C = 1 or 3",
    )
    classes, n = config.data.synthetic_classes, config.data.synthetic_examples
    require(classes >= 2, "data.synthetic_classes", classes, "must be >= 2")
    require(n >= classes, "data.synthetic_examples", n, f"must be >= data.synthetic_classes ({classes})")
    patterns = class_patterns(classes, shape, config.seed)
    sizes = {"train": n, "val": max(1, n // 4), "test": max(1, n // 4)}
    splits = {}
    for stream, (name, size) in enumerate(sizes.items(), start=1):
        split = synthetic_split(patterns, size, config.seed, stream)
        data = config.data
        images = convert_images(split.images, data.channels, data.image_size, data.resize_method, data.resize_shorter)
        splits[name] = ArraySplit(images, split.labels)
    return SourceData("synthetic", tuple(f"class_{k}" for k in range(classes)), splits)
