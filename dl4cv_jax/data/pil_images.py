"""Decoding image files with PIL, for machines without TensorFlow (GPU images often lack it).

The same contract as TensorFlow's decoder in `images.py`: RGB first, alpha dropped, resized (antialiased) before
the ITU-R 601 luma for gray, 16-bit PNGs scaled to 8 bits. JPEGs decode to the same pixels (both use libjpeg's
accurate integer DCT; tested); resizing uses PIL's filters, which differ from TensorFlow's by a level or so
(`PIL_RESIZE_METHODS`). Files are decoded on a thread pool: PIL releases the GIL while it decodes.
"""

import concurrent.futures
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data.pixel_limit import TooManyPixels, check_pixel_count
from dl4cv_jax.data.resize_policy import shorter_side_box

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_ONE_CHANNEL_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_TWO_CHANNEL_MODES = {"LA", "La"}
_FOUR_CHANNEL_MODES = {"RGBA", "RGBa", "PA"}
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError)  # not an image


# config.data.resize_method -> PIL's filter, antialiased when shrinking like TensorFlow's. Measured on 2,000 CIFAR-10
# JPEGs resized to 20x20 against TensorFlow: bilinear within 1 level (85% of values equal), bicubic and lanczos3
# within 6 and 9 levels (83% and 82% equal). PIL's nearest and box filters pick other pixels than TensorFlow's
# nearest and area, so those need TensorFlow.
PIL_RESIZE_METHODS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos3": Image.Resampling.LANCZOS,
}


class WrongSize(ValueError):
    """An image whose size differs from the split's, where resizing is off (data.image_size=0)."""


def _resample(method: str) -> Image.Resampling:
    if method not in PIL_RESIZE_METHODS:
        raise ConfigError(
            f"config.data.resize_method={method!r} needs TensorFlow, which is not installed; "
            f"without it choose one of: {', '.join(PIL_RESIZE_METHODS)}"
        )
    return PIL_RESIZE_METHODS[method]


def _stored_channels(image: Image.Image) -> int:
    if image.mode in _ONE_CHANNEL_MODES:
        return 1
    if image.mode in _TWO_CHANNEL_MODES:
        return 2
    if image.mode in _FOUR_CHANNEL_MODES or (image.mode == "P" and "transparency" in image.info):
        return 4
    return 3


def _rgb(image: Image.Image) -> Image.Image:
    """The image in RGB; 16-bit gray scaled to 8 bits first (PIL's own conversion would clip it)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        gray = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    return image.convert("RGB")


def read_image(
    path: str, shape: tuple[int, int, int], resize_to_shape: bool, method: str = "bilinear", shorter: int = 0
) -> np.ndarray:
    """One file as uint8 `shape`; ValueError (naming what failed) when it is not a readable image or, without
    `resize_to_shape`, has another size (WrongSize). shorter > 0: shorter side resized to it, then centre-cropped."""
    height, width, channels = shape
    check_pixel_count(path)  # TooManyPixels (a ValueError) naming the file, before anything is decoded
    try:
        with Image.open(path) as image:
            image.seek(0)  # an animation's first frame
            rgb = _rgb(image)
            if resize_to_shape and shorter:
                rgb = _resize_shorter(rgb, height, shorter, method)
            elif (rgb.height, rgb.width) != (height, width):
                if not resize_to_shape:
                    raise WrongSize(f"{path} is {rgb.height}x{rgb.width}")
                rgb = rgb.resize((width, height), resample=_resample(method), reducing_gap=None)
            pixels = np.asarray(rgb, dtype=np.uint8)
    except _DECODE_ERRORS as error:
        raise ValueError(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__) from None
    if channels == 1:
        gray = np.round(pixels.astype(np.float32) @ _LUMA)
        return gray.clip(0, 255).astype(np.uint8)[..., None]
    return pixels


def _resize_shorter(rgb: Image.Image, size: int, shorter: int, method: str) -> Image.Image:
    new_height, new_width, top, left = shorter_side_box(rgb.height, rgb.width, shorter, size)
    resized = rgb.resize((new_width, new_height), resample=_resample(method), reducing_gap=None)
    return resized.crop((left, top, left + size, top + size))


def probe_file(path: str) -> tuple[int, int, int]:
    """(H, W, C as stored) of one image file; ConfigError naming the file when it cannot be decoded."""
    try:
        check_pixel_count(path)
        with Image.open(path) as image:
            image.load()
            return image.height, image.width, _stored_channels(image)
    except TooManyPixels as error:
        raise ConfigError(f"config.data.dir: {error}") from None
    except _DECODE_ERRORS as error:
        raise ConfigError(f"config.data.dir: cannot decode image file {path} ({error})") from None


def decode_all(
    paths: np.ndarray, shape: tuple[int, int, int], resize_to_shape: bool, method: str, shorter: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, readable, of the right size) for every file; rows of unreadable or wrongly sized files stay zero."""
    if resize_to_shape:
        _resample(method)  # an unsupported method fails before any file is read
    images = np.zeros((len(paths), *shape), np.uint8)
    readable = np.ones(len(paths), bool)
    sized = np.ones(len(paths), bool)

    def load(index: int) -> None:
        try:
            images[index] = read_image(str(paths[index]), shape, resize_to_shape, method, shorter)
        except WrongSize:
            sized[index] = False
        except ValueError:
            readable[index] = False

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(load, range(len(paths)), chunksize=256))
    return images, readable, sized
