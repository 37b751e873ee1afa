"""Decoding image files and converting images to one shape: uint8 [H, W, C] with C = 1 or 3.

Channel conversion: alpha is dropped (not composited onto a background), grayscale is repeated into RGB, and RGB
becomes grayscale with the ITU-R 601 luma weights (as PIL's convert('L')). Resizing (config.data.resize_method,
bilinear by default, antialiased when shrinking) squashes to a square: the aspect ratio is not kept, unless
config.data.resize_shorter resizes the shorter side and centre-crops (ImageNet's policy, see resize_policy.py).
Decoding is TensorFlow's, except for palette and 1/4-bit BMPs, which TensorFlow reads wrongly (the palette indices
as gray levels): those go through PIL. 16-bit PNGs are scaled to 8 bits. Where TensorFlow is not installed,
`pil_images.py` does the same with PIL; `image_decoder.py` picks one.
"""

import io
import re
from collections.abc import Callable

import numpy as np

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data.pixel_limit import TooManyPixels, check_pixel_count, pixel_limit
from dl4cv_jax.data.resize_policy import shorter_side_box
from dl4cv_jax.data.tf_runtime import AUTOTUNE, deterministic_options, tf

_LUMA = (0.299, 0.587, 0.114)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Converts a uint8 [H, W, C] image with a known C (gray, gray+alpha, RGB, RGBA) to `channels` (1 or 3)."""
    count = image.shape[-1]
    if count in (2, 4):
        image, count = image[..., : count - 1], count - 1  # drop the alpha channel
    if count == channels:
        return image
    if count == 1 and channels == 3:
        return tf.tile(image, [1, 1, 3])
    if count == 3 and channels == 1:
        return _luma(image)
    raise ValueError(f"cannot convert {count}-channel images to {channels} channels")


def _luma(rgb: tf.Tensor) -> tf.Tensor:
    gray = tf.tensordot(tf.cast(rgb, tf.float32), tf.constant(_LUMA), axes=1)
    return tf.cast(tf.clip_by_value(tf.round(gray), 0, 255), tf.uint8)[..., None]


def resize(image: tf.Tensor, size: int, method: str = "bilinear", shorter: int = 0) -> tf.Tensor:
    """Resizes uint8 [(B,) H, W, C] images to size x size with `method` (antialiased), rounded back to uint8.

    shorter > 0: the shorter side to `shorter`, aspect ratio kept, then the central size x size (resize_policy.py).
    """
    if not shorter:
        resized = tf.image.resize(image, [size, size], method=method, antialias=method != "nearest")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    dims = tf.shape(image)
    new_height, new_width, top, left = shorter_side_box(dims[-3], dims[-2], shorter, size, tf.minimum)
    resized = tf.image.resize(image, tf.stack([new_height, new_width]), method=method, antialias=method != "nearest")
    cropped = resized[..., top : top + size, left : left + size, :]
    cropped = tf.ensure_shape(cropped, [*image.shape[:-3], size, size, image.shape[-1]])
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8)


def convert(image: tf.Tensor, channels: int, size: int, method: str = "bilinear", shorter: int = 0) -> tf.Tensor:
    """`to_channels` then `resize`; channels=0 or size=0 leave that property as it is."""
    if channels:
        image = to_channels(image, channels)
    if size:
        image = resize(image, size, method, shorter)
    return image


def convert_array(
    images: np.ndarray, channels: int, size: int, method: str = "bilinear", shorter: int = 0
) -> np.ndarray:
    """`convert` applied to every image of a uint8 [N, H, W, C] array; returns the array itself when a no-op."""
    _, height, width, count = images.shape
    channels = channels if channels != count else 0
    size = size if (size, size) != (height, width) or shorter else 0
    if not (channels or size):
        return images
    ds = tf.data.Dataset.from_tensor_slices(images).map(lambda image: convert(image, channels, size, method, shorter))
    parts = list(ds.batch(1024).with_options(deterministic_options()).as_numpy_iterator())
    empty = np.zeros((0, size or height, size or width, channels or count), np.uint8)
    return np.concatenate([empty, *parts])


# Decoded instead of a file whose header declares more pixels than PIL's limit: no decoder accepts it, so such a file
# fails (and is then named by `probe_file`) without a byte being allocated for its pixels. Reading the headers costs
# ~40 us of CPU a file (4,000 32x32 PNGs and JPEGs: 0.43 -> 0.6 s), whatever the file's size.
_REFUSED = b"more pixels than PIL's Image.MAX_IMAGE_PIXELS"


def decode_rgb(contents: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG, PNG, BMP or GIF bytes (an animation's first frame) to uint8 [H, W, 3].

    Always RGB first, converted to gray afterwards where asked: GIF has no grayscale decoding, and one luma
    formula for every format keeps a folder of mixed files consistent. JPEGs use libjpeg's accurate integer
    DCT, as PIL does (TensorFlow's default fast DCT differs by up to 5 levels), at no measurable cost.
    A file whose header declares more pixels than PIL's decompression-bomb limit fails before it is decoded
    (pixel_limit.py).
    """
    limit = pixel_limit()

    def jpeg() -> tf.Tensor:
        checked = _within_limit(contents, _jpeg_pixels, limit)
        return tf.io.decode_jpeg(checked, channels=3, dct_method="INTEGER_ACCURATE")

    def other() -> tf.Tensor:
        checked = _within_limit(contents, _header_pixels, limit)
        return tf.cond(
            _is_indexed_bmp(checked),
            lambda: tf.ensure_shape(tf.numpy_function(pil_rgb, [checked], tf.uint8, stateful=False), [None, None, 3]),
            lambda: tf.io.decode_image(checked, channels=3, expand_animations=False),
        )

    return tf.cond(tf.io.is_jpeg(contents), jpeg, other)


def _within_limit(contents: tf.Tensor, pixels: Callable[[tf.Tensor], tf.Tensor], limit: int | None) -> tf.Tensor:
    """`contents`, or `_REFUSED` when `pixels(contents)` (read from its header) is over `limit`.

    Not an assertion: a stateful op in the body of `decode_all`'s map_fn would make its iterations run one by one.
    """
    if not limit:
        return contents
    return tf.where(pixels(contents) <= limit, contents, tf.constant(_REFUSED))


def _jpeg_pixels(contents: tf.Tensor) -> tf.Tensor:
    return tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64))


def _header_pixels(contents: tf.Tensor) -> tf.Tensor:
    """Width x height (int64) that a PNG, GIF or BMP header declares; 0 for other bytes."""
    head = tf.strings.join([tf.strings.substr(contents, 0, 26), tf.constant(b"\0" * 26)])

    def field(offset: int, dtype: tf.DType, little_endian: bool = True) -> tf.Tensor:
        raw = tf.strings.substr(head, offset, dtype.size)
        return tf.cast(tf.io.decode_raw(raw, dtype, little_endian=little_endian)[0], tf.int64)

    png = field(16, tf.int32, little_endian=False) * field(20, tf.int32, little_endian=False)
    gif = field(6, tf.uint16) * field(8, tf.uint16)
    bmp = field(18, tf.int32) * tf.abs(field(22, tf.int32))  # a negative height: rows stored top-down
    magic = tf.strings.substr(head, 0, 4)
    zero = tf.constant(0, tf.int64)
    bmp_or_zero = tf.where(tf.strings.substr(head, 0, 2) == b"BM", bmp, zero)
    return tf.where(magic == b"\x89PNG", png, tf.where(magic == b"GIF8", gif, bmp_or_zero))


def _is_indexed_bmp(contents: tf.Tensor) -> tf.Tensor:
    """True for a BMP with at most 8 bits per pixel (a palette), which tf.io.decode_bmp misreads."""
    header = tf.strings.join([tf.strings.substr(contents, 0, 30), tf.constant(b"\0" * 30)])
    bits = tf.io.decode_raw(tf.strings.substr(header, 28, 2), tf.uint16, little_endian=True)[0]
    return (tf.strings.substr(header, 0, 2) == b"BM") & (bits <= 8)


def pil_rgb(contents: bytes) -> np.ndarray:
    """Decodes image bytes with PIL, in RGB (palettes rendered through their colours)."""
    from PIL import Image

    if isinstance(contents, np.ndarray):  # run eagerly, tf.numpy_function passes a 0-d object array, not bytes
        contents = contents.item()
    with Image.open(io.BytesIO(contents)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_file(
    path: tf.Tensor, shape: tuple[int, int, int], resize_to_shape: bool, method: str = "bilinear", shorter: int = 0
) -> tf.Tensor:
    """Reads one file and converts it to `shape`; without `resize_to_shape` a different size is an error.

    Same steps in the same order as `decode_files` (decode, resize, then gray), so a split decoded per pass
    gives the same pixels as one decoded once into memory.
    """
    height, _, channels = shape
    image = decode_rgb(tf.io.read_file(path))
    if resize_to_shape:
        image = resize(image, height, method, shorter)
    if channels == 1:
        image = _luma(image)
    return tf.ensure_shape(image, shape)


def read_image(
    path: str, shape: tuple[int, int, int], resize_to_shape: bool, method: str = "bilinear", shorter: int = 0
) -> np.ndarray:
    """One file as uint8 `shape` (`decode_file` run eagerly); ValueError naming what failed when it cannot."""
    check_pixel_count(path)  # TooManyPixels, with the file's size, rather than the graph's assertion
    try:
        return decode_file(tf.constant(path), shape, resize_to_shape, method, shorter).numpy()
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(_first_line(error)) from None


def probe_file(path: str) -> tuple[int, int, int]:
    """(H, W, C as stored) of one image file; ConfigError naming the file when it cannot be decoded."""
    try:
        check_pixel_count(path)
        contents = tf.io.read_file(path)
        if bool(_is_indexed_bmp(contents)):
            return (*pil_rgb(contents.numpy()).shape[:2], 3)
        image = tf.io.decode_image(contents, channels=0, expand_animations=False)
    except TooManyPixels as error:
        raise ConfigError(f"config.data.dir: {error}") from None
    except (tf.errors.OpError, OSError, ValueError) as error:
        reason = _first_line(error).removeprefix(f"{path}; ")  # TensorFlow's file errors repeat the path
        raise ConfigError(f"config.data.dir: cannot decode image file {path} ({reason})") from None
    return tuple(int(d) for d in image.shape)


def decode_all(
    paths: np.ndarray, shape: tuple[int, int, int], resize_to_shape: bool, method: str, shorter: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, readable, of the right size) for every file, with a parallel tf.data map; unreadable rows stay zero.

    Files are decoded in batches of 1024 inside one map call (tf.map_fn): per-file tf.data elements cost more
    than decoding a 32x32 JPEG. A batch with a bad file fails as a whole (`ignore_errors` drops it); its files
    are then decoded one by one, which finds exactly the bad ones.
    """
    height, width, channels = shape
    images = np.zeros((len(paths), height, width, channels), np.uint8)
    readable = np.zeros(len(paths), bool)
    sized = np.ones(len(paths), bool)
    rgb_shape = (height, width, 3)  # converted to gray per batch afterwards: much faster than per image

    def load_one(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = decode_rgb(tf.io.read_file(path))
        if resize_to_shape:
            return resize(image, height, method, shorter), tf.constant(True)
        fits = tf.reduce_all(tf.shape(image)[:2] == [height, width])
        image = tf.cond(fits, lambda: image, lambda: tf.zeros(rgb_shape, tf.uint8))
        return tf.ensure_shape(image, rgb_shape), fits

    def load_batch(index: tf.Tensor, path: tf.Tensor):
        signature = (tf.TensorSpec(rgb_shape, tf.uint8), tf.TensorSpec([], tf.bool))
        batch, fits = tf.map_fn(load_one, path, fn_output_signature=signature)
        return index, (_luma(batch) if channels == 1 else batch), fits

    for batch_size in (1024, 1):  # the second pass only visits the files of failed batches
        todo = np.flatnonzero(~readable)
        if len(todo) == 0:
            break
        ds = tf.data.Dataset.from_tensor_slices((todo, paths[todo])).batch(batch_size)
        ds = ds.map(load_batch, num_parallel_calls=AUTOTUNE, deterministic=False).ignore_errors()
        for index, batch, fits in ds.prefetch(2).as_numpy_iterator():
            images[index], readable[index], sized[index] = batch, True, fits
    return images, readable, sized


def _first_line(error: Exception) -> str:
    """The error's first line without TensorFlow's wrapping (`{{function_node ...}}`, `[Op:DecodeImage] name:`)."""
    message = getattr(error, "message", None) or str(error)
    line = message.strip().splitlines()[0] if message.strip() else ""
    line = re.sub(r"\s*\[Op:\w+\].*$", "", re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line))
    return line or type(error).__name__
