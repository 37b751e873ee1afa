"""Classifying new image files with a trained workdir, without its training data.

Images are prepared exactly as the folder source prepares a split (`image_decoder.read_image`: decode any JPEG, PNG,
BMP or GIF as RGB, resize to the run's H x W with the same antialiased filter, by the shorter side then a centre
crop where the run set data.resize_shorter, convert to gray where the run is gray), then normalised on the device
with the run's mean and std from data_info.json.
"""

import glob
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data.folder import IMAGE_EXTENSIONS
from dl4cv_jax.data.image_decoder import read_image
from dl4cv_jax.data.pixel_limit import TooManyPixels


def _expand(pattern: str) -> list[pathlib.Path]:
    """A path as given, or the matches of a glob pattern the shell did not expand (as in --images=dir/*.png)."""
    path = pathlib.Path(pattern).expanduser()
    if path.exists() or not glob.has_magic(pattern):
        return [path]
    return [pathlib.Path(p) for p in sorted(glob.glob(str(path), recursive=True))]


def list_images(paths: Sequence[str]) -> list[pathlib.Path]:
    """The image files named by `paths`: files as given, folders searched recursively for image extensions.

    ConfigError naming the path when one does not exist, and when nothing at all is found.
    """
    if not paths:
        raise ConfigError("--images is empty; pass image files or folders: --images=cat.jpg --images=photos/")
    found: list[pathlib.Path] = []
    for given in paths:
        matches = _expand(given)
        if not matches or not matches[0].exists():
            raise ConfigError(f"--images={given}: no such file or folder")
        for path in matches:
            if path.is_dir():
                found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            else:
                found.append(path)
    if not found:
        raise ConfigError(f"--images={','.join(paths)}: no image files found ({', '.join(IMAGE_EXTENSIONS)})")
    return found


def load_images(
    paths: Sequence[pathlib.Path],
    shape: tuple[int, int, int],
    resize_method: str = "bilinear",
    resize_shorter: int = 0,
) -> np.ndarray:
    """uint8 [N, H, W, C]: every file decoded and converted to the run's image shape (any size or mode in), resized
    with the run's `data.resize_method` and `data.resize_shorter`, as its training images were."""
    images = np.zeros((len(paths), *shape), np.uint8)
    for i, path in enumerate(paths):
        try:
            images[i] = read_image(str(path), shape, resize_method, resize_shorter)
        except TooManyPixels as error:
            raise ConfigError(f"--images: {error}") from None
        except ValueError as error:
            raise ConfigError(f"--images: cannot decode {path} as an image (JPEG, PNG, BMP or GIF): {error}") from None
    return images


def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int) -> list[list[dict[str, Any]]]:
    """For each row, the k most probable classes as [{class, probability}], most probable first."""
    if k < 1:
        raise ConfigError(f"--top_k={k} must be >= 1")
    k = min(k, len(class_names))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [
        [{"class": class_names[c], "probability": float(row[c])} for c in top]
        for row, top in zip(probabilities, order, strict=True)
    ]


def output_name(paths: Sequence[str]) -> str:
    """The predictions file's name: the one file's or folder's name, else the first one's plus a count."""
    first = pathlib.Path(paths[0].rstrip("/")).expanduser()
    stem = (first.stem if first.suffix else first.name) or "images"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return stem if len(paths) == 1 else f"{stem}_and_{len(paths) - 1}_more"


def format_line(path: pathlib.Path, ranked: Sequence[dict[str, Any]]) -> str:
    """One console line per image: path, then class probability pairs."""
    return f"{path}: " + ", ".join(f"{r['class']} {r['probability']:.3f}" for r in ranked)
