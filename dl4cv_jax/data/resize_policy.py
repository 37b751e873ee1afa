"""Where the shorter-side resize policy (config.data.resize_shorter) puts an image: its resized size and crop box.

ImageNet weights expect torchvision's `Resize(256)` then `CenterCrop(224)`: the shorter side scaled to 256 with
the aspect ratio kept, then the central 224x224. A plain square resize (data.image_size alone) squashes instead,
which such weights see as a distortion. The arithmetic is torchvision's to the pixel: the longer side is
`int(shorter * long / short)` and a crop offset is `int(round(excess / 2))`, Python's round, which rounds half to
even (an excess of 31 gives 16, of 29 gives 14). Written with `//`, `%` and `minimum` only, so the same function
computes the box for Python ints (PIL) and for TensorFlow tensors of images whose size is known only at run time.
"""

from collections.abc import Callable
from typing import Any


def shorter_side_box(height: Any, width: Any, shorter: int, size: int, minimum: Callable = min) -> tuple:
    """(resized height, resized width, crop top, crop left) for an image resized to `shorter` then cropped to
    `size` x `size`; `minimum` is `tf.minimum` for tensors."""
    if not 0 < size <= shorter:
        raise ValueError(f"resize_shorter={shorter} needs 0 < image_size={size} <= resize_shorter")
    short = minimum(height, width)
    new_height, new_width = shorter * height // short, shorter * width // short  # the short side becomes `shorter`
    return new_height, new_width, _half_to_even(new_height - size), _half_to_even(new_width - size)


def _half_to_even(excess: Any) -> Any:
    """round(excess / 2) with ties to even, in integer arithmetic: k + 0.5 goes to k when k is even, else k + 1."""
    return (excess + (excess // 2) % 2) // 2
