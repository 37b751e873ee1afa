"""The largest image the loaders decode: PIL's decompression-bomb limit, `Image.MAX_IMAGE_PIXELS` (89,478,485
pixels by default, about 9,459 x 9,459), for both decoders; set it to None to lift it, as for PIL itself.

Why: a 20,000 x 20,000 PNG of one colour is a few hundred kB on disk but 1.2 GB decoded as RGB, and 4.8 GB once
resized in float32; a few in a parallel decode can take the machine down. PIL alone only warns up to twice its
limit, and TensorFlow's decoders have none. So the size is read from the file's header, before any pixel is
decoded, and a larger file is refused with one line naming it (`check_pixel_count`); the TensorFlow decoder
checks the same header inside its graph (`images.decode_rgb`), so a large file anywhere in a folder fails.
"""

import re
import warnings

from PIL import Image, UnidentifiedImageError


class TooManyPixels(ValueError):
    """An image file whose header declares more pixels than `pixel_limit()`."""


def pixel_limit() -> int | None:
    """PIL's current limit (read at each call, so a user's `Image.MAX_IMAGE_PIXELS = ...` applies); None = none."""
    return Image.MAX_IMAGE_PIXELS


def too_many_pixels(path: str, pixels: int, size: str = "") -> TooManyPixels:
    """The one-line refusal for `path`, with its size (`20000x20000`) where known."""
    shown = f"{size} = {pixels:,} pixels" if size else f"{pixels:,} pixels"
    return TooManyPixels(
        f"{path} is too large to decode ({shown}; the limit is {pixel_limit():,}, PIL's Image.MAX_IMAGE_PIXELS); "
        f"downscale it, or raise that limit"
    )


def check_pixel_count(path: str) -> None:
    """TooManyPixels when the header of the image file at `path` declares more pixels than the limit.

    Reads the header only. A file PIL cannot identify passes: the decoder reports that in its own words.
    """
    limit = pixel_limit()
    if not limit:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as error:  # more than twice the limit: PIL refuses before we see the size
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise too_many_pixels(path, int(found.group(1)) if found else 2 * limit + 1) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return
    if width * height > limit:
        raise too_many_pixels(path, width * height, f"{width}x{height}")
