"""Checks shared by the evaluation tests (not a test module)."""

import matplotlib.image
import numpy as np


def assert_picture(path, min_side=200):
    """A real picture: big enough, and not one flat colour. Returns its pixels."""
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= min_side, pixels.shape
    assert pixels[..., :3].std() > 0.05
    rgb = np.round(pixels[..., :3] * 255).astype(np.int64) if pixels.dtype != np.uint8 else pixels[..., :3]
    colours = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
    assert len(np.unique(colours)) > 20
    return pixels
