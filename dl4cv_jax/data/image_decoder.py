"""Which decoder reads image files: TensorFlow's (`images.py`) where it is installed, else PIL's (`pil_images.py`).

Both return the same uint8 arrays for the same files (tested), so a folder of images, `--mode=eval` and
`--mode=predict` work on a machine without TensorFlow, such as a GPU image with only jax and torch, together with
`data.pipeline=device`. The checks on what was decoded (unreadable files, sizes) are the same for both, here.
"""

import functools
import os
from types import ModuleType

import numpy as np

from dl4cv_jax.choices import ConfigError


@functools.cache
def tensorflow_installed() -> bool:
    """Whether TensorFlow imports (it is then set up for input pipelines only, see tf_runtime.py)."""
    try:
        from dl4cv_jax.data import tf_runtime  # noqa: F401
    except ImportError:
        return False
    return True


def _decoder() -> ModuleType:
    if tensorflow_installed():
        from dl4cv_jax.data import images

        return images
    from dl4cv_jax.data import pil_images

    return pil_images


def probe_file(path: str) -> tuple[int, int, int]:
    """(H, W, C as stored) of one image file; ConfigError naming the file when it cannot be decoded."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:  # said plainly: the decoders' words are cryptic
        raise ConfigError(f"config.data.dir: cannot decode image file {path} (the file is empty: 0 bytes)")
    return _decoder().probe_file(path)


def read_image(path: str, shape: tuple[int, int, int], method: str = "bilinear", shorter: int = 0) -> np.ndarray:
    """One file of any size as uint8 `shape` (resized with `method`, by its shorter side to `shorter` then
    centre-cropped when shorter > 0); ValueError saying why when it cannot."""
    return _decoder().read_image(path, shape, True, method, shorter)


def decode_files(
    paths: np.ndarray, shape: tuple[int, int, int], resize_to_shape: bool, method: str = "bilinear", shorter: int = 0
) -> np.ndarray:
    """Decodes every file into one uint8 [N, H, W, C] array (at load time, once, in parallel).

    A file that cannot be read or decoded, or (without `resize_to_shape`) has another size, raises ConfigError
    naming it.
    """
    images, readable, sized = _decoder().decode_all(paths, shape, resize_to_shape, method, shorter)
    for bad in paths[~readable]:
        probe_file(bad)  # raises naming the file
        raise ConfigError(f"config.data.dir: cannot decode image file {bad}")
    _check_sizes(paths, sized, shape)
    return images


def decode_readable(
    paths: np.ndarray, shape: tuple[int, int, int], resize_to_shape: bool, method: str = "bilinear", shorter: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Like `decode_files`, but corrupt files are left out: (images of the readable files, bool [N] readable)."""
    images, readable, sized = _decoder().decode_all(paths, shape, resize_to_shape, method, shorter)
    _check_sizes(paths, sized | ~readable, shape)
    return images[readable], readable


def _check_sizes(paths: np.ndarray, sized: np.ndarray, shape: tuple[int, int, int]) -> None:
    if not sized.all():
        bad = paths[~sized][0]
        h, w, _ = probe_file(bad)
        raise ConfigError(
            f"config.data.image_size=0 needs every image to be {shape[0]}x{shape[1]} like the first one, but {bad} "
            f"is {h}x{w}; set data.image_size to resize"
        )
