"""Test-time augmentation: evaluate several views of each image and average the predicted probabilities.

Views are cheap, deterministic transforms of the normalised batch (NHWC): the identity, a horizontal flip and
small translations, as in the CIFAR speed-run recipes.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from dl4cv_jax.choices import ConfigError

TRANSLATE_PIXELS = 2


def _translations(images: jax.Array) -> list[jax.Array]:
    """The batch shifted by TRANSLATE_PIXELS in each of the four directions, edges filled by reflection."""
    p = TRANSLATE_PIXELS
    padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    h, w = images.shape[1:3]
    offsets = ((0, p), (2 * p, p), (p, 0), (p, 2 * p))  # down, up, right, left
    return [padded[:, dy : dy + h, dx : dx + w, :] for dy, dx in offsets]


VIEWS: dict[str, Callable[[jax.Array], list[jax.Array]]] = {
    "flip": lambda images: [images[:, :, ::-1, :]],
    "translate": _translations,
}


def check_tta(names: Sequence[str]) -> None:
    """ConfigError naming `eval_tta` for an unknown view."""
    unknown = [name for name in names if name not in VIEWS]
    if unknown:
        raise ConfigError(
            f"config.eval_tta={tuple(names)!r} has unknown view(s) {unknown}; choose from: {', '.join(sorted(VIEWS))}"
        )


def parse_tta_flag(text: str | None) -> tuple[str, ...] | None:
    """main.py's `--tta` for eval and predict: None when not given (the run's own config.eval_tta), () for
    'none', else the comma-separated views; ConfigError naming the flag and the choices otherwise."""
    if text is None:
        return None
    if text.strip().lower() in ("", "none"):
        return ()
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in VIEWS]
    if unknown:
        raise ConfigError(
            f"--tta={text!r} has unknown view(s) {unknown}; choose none or a comma-separated list of: "
            f"{', '.join(sorted(VIEWS))}"
        )
    return names


def tta_views(images: jax.Array, names: Sequence[str]) -> list[jax.Array]:
    """The identity followed by the views listed in `names`, in order."""
    views = [images]
    for name in names:
        views += VIEWS[name](images)
    return views


def average_probabilities(probabilities: Sequence[jax.Array]) -> jax.Array:
    """Mean of the views' class probabilities, returned as log-probabilities so losses can take them as logits."""
    return jnp.log(jnp.mean(jnp.stack(probabilities), axis=0) + 1e-12)
