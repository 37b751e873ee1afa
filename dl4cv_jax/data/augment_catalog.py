"""The augmentations one by one: each builder checks its parameters and returns an `Augmentation`, the draw of
its random parameters (a numpy table for all examples of an epoch) and the name of the operation applying them.

No TensorFlow and no JAX here: `augment_ops.py` (tf.data) and `device.py` (jit) each implement the operations,
so both pipelines share these tables. Parameter problems raise `Invalid`, which `augment.make_augmentations`
turns into a ConfigError naming the config item.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import augment_params as ops


@dataclasses.dataclass(frozen=True)
class Context:
    """What an augmentation may need to know about the data: image shape, class count, the default crop padding."""

    image_shape: tuple[int, int, int]
    num_classes: int = 0
    crop_padding: int = 4


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """One configured augmentation: its parameter draw and the operation that applies it.

    `op` names the operation in each pipeline's table (`augment_ops.OPS` for tf.data, `device.OPS` on device), called
    as `op(images, rows, **op_args)`, or `op(images, labels, rows)` when `mixes`. No TensorFlow here.
    """

    name: str
    args: dict
    draw: Callable[[np.random.Generator, int], np.ndarray]
    op: str
    op_args: dict = dataclasses.field(default_factory=dict)
    mixes: bool = False


class Invalid(ValueError):
    """A parameter value out of range; turned into a ConfigError naming the item."""


def _check(condition: bool, problem: str) -> None:
    if not condition:
        raise Invalid(problem)


def _fill(fill: str, allowed: tuple[str, ...] = ops.FILL_MODES) -> str:
    _check(fill in allowed, f"has fill={fill!r}; fill is one of {', '.join(allowed)}")
    return fill


def crop(ctx: Context, padding: int = -1, fill: str = "reflect") -> Augmentation:
    """Random crop after padding (reflect or constant zeros); padding -1 means config.data.crop_padding."""
    height, width, _ = ctx.image_shape
    fill = _fill(fill, ("reflect", "constant"))
    if padding < 0 and not (0 <= ctx.crop_padding < min(height, width) or fill == "constant"):
        raise ConfigError(
            f"config.data.crop_padding={ctx.crop_padding!r} must be >= 0 and smaller than the {height}x{width} "
            "images (reflect padding)"
        )
    padding = ctx.crop_padding if padding < 0 else padding
    _check(padding >= 0, "needs padding >= 0")
    _check(fill == "constant" or padding < min(height, width), f"needs padding < {min(height, width)} to reflect")
    return Augmentation(
        "crop",
        {"padding": padding, "fill": fill},
        draw=lambda rng, n: rng.integers(0, 2 * padding + 1, (n, 2), dtype=np.int32),
        op="crop",
        op_args={"padding": padding, "fill": fill},
    )


def _coin(name: str, p: float) -> Augmentation:
    _check(0 <= p <= 1, "needs 0 <= p <= 1")
    return Augmentation(name, {"p": p}, draw=lambda rng, n: rng.random(n) < p, op=name)


def flip(ctx: Context, p: float = 0.5) -> Augmentation:
    """Horizontal (left-right) flip with probability p."""
    return _coin("flip", p)


def vflip(ctx: Context, p: float = 0.5) -> Augmentation:
    """Vertical (top-bottom) flip with probability p."""
    return _coin("vflip", p)


def rot90(ctx: Context) -> Augmentation:
    """0, 1, 2 or 3 counter-clockwise quarter turns, equally likely; square images only."""
    height, width, _ = ctx.image_shape
    _check(height == width, f"needs square images, these are {height}x{width}")
    return Augmentation("rot90", {}, draw=lambda rng, n: rng.integers(0, 4, n, dtype=np.int32), op="rot90")


def _warp(name: str, args: dict, fill: str, transforms: Callable[[np.random.Generator, int], np.ndarray]):
    fill = _fill(fill)
    return Augmentation(name, args | {"fill": fill}, draw=transforms, op="warp", op_args={"fill": fill})


def rotate(ctx: Context, degrees: float = 15.0, fill: str = "reflect") -> Augmentation:
    """Rotation by an angle uniform in [-degrees, degrees] (any angle up to 180), bilinear."""
    _check(0 <= degrees <= 180, "needs 0 <= degrees <= 180")
    height, width, _ = ctx.image_shape

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return ops.centred(ops.rotation_matrices(rng.uniform(-degrees, degrees, n)), height, width)

    return _warp("rotate", {"degrees": degrees}, fill, draw)


def zoom(ctx: Context, fraction: float = 0.1, fill: str = "reflect") -> Augmentation:
    """Magnification by a factor uniform in [1 - fraction, 1 + fraction] about the centre (> 1 zooms in)."""
    _check(0 <= fraction < 1, "needs 0 <= fraction < 1")
    height, width, _ = ctx.image_shape

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return ops.centred(ops.zoom_matrices(rng.uniform(1 - fraction, 1 + fraction, n)), height, width)

    return _warp("zoom", {"fraction": fraction}, fill, draw)


def shear(ctx: Context, degrees: float = 10.0, fill: str = "reflect") -> Augmentation:
    """Horizontal shear by an angle uniform in [-degrees, degrees]."""
    _check(0 <= degrees < 90, "needs 0 <= degrees < 90")
    height, width, _ = ctx.image_shape

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return ops.centred(ops.shear_matrices(rng.uniform(-degrees, degrees, n)), height, width)

    return _warp("shear", {"degrees": degrees}, fill, draw)


def translate(ctx: Context, fraction: float = 0.1, fill: str = "reflect") -> Augmentation:
    """Shift by up to `fraction` of the height and width in each direction (sub-pixel, bilinear)."""
    _check(0 <= fraction <= 1, "needs 0 <= fraction <= 1")
    size = np.array(ctx.image_shape[:2], np.float64)

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return ops.translation_transforms(rng.uniform(-fraction, fraction, (n, 2)) * size)

    return _warp("translate", {"fraction": fraction}, fill, draw)


def _factor(name: str, low: float, high: float, args: dict) -> Augmentation:
    return Augmentation(name, args, draw=lambda rng, n: rng.uniform(low, high, n).astype(np.float32), op=name)


def brightness(ctx: Context, delta: float = 0.2) -> Augmentation:
    """Adds a value uniform in [-delta, delta] (a fraction of the 0..255 range) to every pixel."""
    _check(0 <= delta <= 1, "needs 0 <= delta <= 1")
    return _factor("brightness", -delta, delta, {"delta": delta})


def contrast(ctx: Context, fraction: float = 0.2) -> Augmentation:
    """Scales the deviation from the image mean by a factor uniform in [1 - fraction, 1 + fraction]."""
    _check(0 <= fraction <= 1, "needs 0 <= fraction <= 1")
    return _factor("contrast", 1 - fraction, 1 + fraction, {"fraction": fraction})


def _colour(ctx: Context) -> None:
    _check(ctx.image_shape[2] == 3, f"needs RGB images, these have {ctx.image_shape[2]} channel(s)")


def saturation(ctx: Context, fraction: float = 0.2) -> Augmentation:
    """Blends with the gray image by a factor uniform in [1 - fraction, 1 + fraction]; RGB only."""
    _colour(ctx)
    _check(0 <= fraction <= 1, "needs 0 <= fraction <= 1")
    return _factor("saturation", 1 - fraction, 1 + fraction, {"fraction": fraction})


def hue(ctx: Context, delta: float = 0.05) -> Augmentation:
    """Turns the hue by a fraction of the colour circle uniform in [-delta, delta]; RGB only."""
    _colour(ctx)
    _check(0 <= delta <= 0.5, "needs 0 <= delta <= 0.5")
    return _factor("hue", -delta, delta, {"delta": delta})


def noise(ctx: Context, std: float = 0.03) -> Augmentation:
    """Gaussian noise per pixel with standard deviation `std` (a fraction of the 0..255 range)."""
    _check(0 <= std <= 1, "needs 0 <= std <= 1")
    return Augmentation(
        "noise",
        {"std": std},
        draw=lambda rng, n: rng.integers(0, 2**62, (n, 2), dtype=np.int64),
        op="noise",
        op_args={"std": std},
    )


def cutout(ctx: Context, size: int = 8, fill: int = 0) -> Augmentation:
    """A size x size square (clipped at the border) around a uniformly drawn pixel set to `fill` (0..255)."""
    height, width, _ = ctx.image_shape
    _check(1 <= size <= max(height, width), f"needs 1 <= size <= {max(height, width)}")
    _check(0 <= fill <= 255, "needs 0 <= fill <= 255")

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        centres = np.stack([rng.integers(0, height, n), rng.integers(0, width, n)], axis=1)
        return ops.clipped_boxes(centres, np.full(n, size), np.full(n, size), height, width)

    return Augmentation("cutout", {"size": size, "fill": fill}, draw, "cutout", {"fill": fill})


def _mixing(ctx: Context, alpha: float) -> None:
    _check(alpha > 0, "needs alpha > 0")
    _check(ctx.num_classes >= 2, "needs the number of classes (>= 2)")


def mixup(ctx: Context, alpha: float = 0.2) -> Augmentation:
    """Mixes each example with its partner by lambda ~ Beta(alpha, alpha), images and labels alike."""
    _mixing(ctx, alpha)
    return Augmentation(
        "mixup", {"alpha": alpha}, lambda rng, n: rng.beta(alpha, alpha, n).astype(np.float32), "mixup", mixes=True
    )


def cutmix(ctx: Context, alpha: float = 1.0) -> Augmentation:
    """Pastes a box of the partner covering 1 - lambda of the image, lambda ~ Beta(alpha, alpha)."""
    _mixing(ctx, alpha)
    height, width, _ = ctx.image_shape

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        box_h, box_w = ops.cutmix_box_sides(rng.beta(alpha, alpha, n), height, width)
        centres = np.stack([rng.integers(0, height, n), rng.integers(0, width, n)], axis=1)
        return ops.clipped_boxes(centres, box_h, box_w, height, width)

    return Augmentation("cutmix", {"alpha": alpha}, draw, "cutmix", mixes=True)


BUILDERS: dict[str, Callable[..., Augmentation]] = {
    f.__name__: f
    for f in (crop, translate, flip, vflip, rotate, zoom, shear, rot90)
    + (brightness, contrast, saturation, hue, noise, cutout, mixup, cutmix)
}
