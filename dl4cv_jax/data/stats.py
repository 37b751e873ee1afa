"""Per-channel mean and standard deviation of the training images, on the [0, 1] scale."""

import numpy as np

from dl4cv_jax.data.dataset import ArraySplit, FileSplit, Split, StreamSplit
from dl4cv_jax.data.image_decoder import decode_files

SAMPLE_SIZE = 10_000  # images measured for splits not held in memory


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel of uint8 [N, H, W, C] images, divided by 255.

    Counts how often each of the 256 values occurs per channel, in chunks: exact, and no float copy of a
    2 GB array.
    """
    pixels = images.reshape(-1, images.shape[-1])
    values = np.arange(256, dtype=np.float64)
    means, stds = [], []
    for c in range(pixels.shape[1]):
        counts = np.zeros(256)
        for start in range(0, len(pixels), 1 << 20):
            counts += np.bincount(pixels[start : start + (1 << 20), c], minlength=256)
        n = max(counts.sum(), 1.0)
        mean = (counts * values).sum() / n
        means.append(float(mean) / 255)
        stds.append(float(np.sqrt((counts * np.square(values - mean)).sum() / n)) / 255)
    return tuple(means), tuple(stds)


def sample_images(split: Split) -> np.ndarray:
    """The images statistics are measured on: all of an in-memory split, else up to SAMPLE_SIZE of them.

    Files are sampled evenly spaced over the (class-ordered) list so every class contributes; a stream gives its
    first SAMPLE_SIZE images, which tfds stores shuffled.
    """
    if isinstance(split, ArraySplit):
        return split.images
    if isinstance(split, FileSplit):
        picks = np.unique(np.linspace(0, split.size - 1, min(split.size, SAMPLE_SIZE)).astype(np.int64))
        return decode_files(split.paths[picks], split.shape, split.resize, split.method, split.shorter)
    assert isinstance(split, StreamSplit)
    batches = split.make_dataset().take(SAMPLE_SIZE).map(lambda image, label: image).batch(1024)
    return np.concatenate([np.zeros((0, *split.shape), np.uint8), *batches.as_numpy_iterator()])
