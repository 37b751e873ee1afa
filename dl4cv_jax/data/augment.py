"""Training augmentations: parsed from config.data.augment, parameters drawn per epoch, applied per batch.

Format: a tuple of items, or one comma-separated string (what `--config.data.augment=...` gives), each item a name
with optional parameters in brackets, positional or by keyword, e.g.
    ("crop(4, reflect)", "flip", "rotate(15)", "cutout(size=8)")  or  "crop(4,reflect),flip,rotate(15),mixup(0.2)"
Applied in the order given; `ACCEPTED` (and the ConfigError for a bad item) lists every name with its parameters.

Each augmentation is split in two, which is what makes it a pure function of (seed, epoch, example index):
- `draw(rng, n)`: the random parameters of all n examples of the split for one epoch, as a numpy table, from a
  generator seeded by (config.seed, epoch, the augmentation's position in the list);
- `op(images, rows)`: a deterministic function of a uint8 [B, H, W, C] batch and its examples' table rows, one
  implementation per pipeline (`augment_ops.OPS` for tf.data, `device.OPS` on the accelerator).
So the result does not depend on thread scheduling, on the batch an example lands in, or on the number of
processes; and the device pipeline (`device.py`) applies the very same tables, so both paths agree bit for bit.
mixup and cutmix act on the batch (an example is mixed with its neighbour in the epoch order) and turn the
labels into float [B, num_classes] targets; they come after every per-example augmentation (both may be given:
they then compose, cutmix pasting into the mixed images).
"""

import inspect
import re
from collections.abc import Callable, Sequence

import numpy as np

from dl4cv_jax.choices import ConfigError, choose
from dl4cv_jax.data.augment_catalog import BUILDERS, Augmentation, Context, Invalid

__all__ = ["ACCEPTED", "BUILDERS", "Augmentation", "augment_names", "draw_tables", "make_augmentations", "parse_item"]

_AUGMENT_STREAM = 0xA06  # keeps augmentation draws apart from the epoch order and the splits
_ITEM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")


def augment_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """config.data.augment as a tuple of items; commas inside a string split items except within brackets."""
    items = [value] if isinstance(value, str) else list(value)
    result = []
    for item in items:
        depth, start = 0, 0
        for i, char in enumerate(item + ","):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if char == "," and depth == 0:
                if item[start:i].strip():
                    result.append(item[start:i].strip())
                start = i + 1
        if item[start:].strip():  # an unclosed bracket: kept whole, so that parsing names it
            result.append(item[start:].strip())
    return tuple(result)


def _bad(item: str, problem: str) -> ConfigError:
    """One line naming the item, what is wrong, and the accepted form (that augmentation's, else all)."""
    match = _ITEM.match(item)
    builder = BUILDERS.get(match.group(1)) if match else None
    accepted = _describe(builder) if builder else ACCEPTED
    return ConfigError(f"config.data.augment={item!r} {problem}; accepted: {accepted}")


def _convert(item: str, name: str, text: str, kind: type) -> object:
    text = text.strip().strip("'\"")
    try:
        return kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
    except ValueError:
        raise _bad(item, f"has {name}={text!r}, which is not {kind.__name__}") from None


def parse_item(item: str) -> tuple[str, dict]:
    """('rotate', {'degrees': 15.0}) from 'rotate(15)': the name and its parameters, converted and complete."""
    match = _ITEM.match(item)
    if not match:
        raise _bad(item, "is not of the form name or name(parameters)")
    name, inner = match.group(1), match.group(2)
    builder = choose(BUILDERS, "data.augment", name)
    params = list(inspect.signature(builder).parameters.values())[1:]  # the first is the Context
    args, kwargs = [], {}
    for part in (p for p in (inner or "").split(",") if p.strip()):
        key, _, value = part.rpartition("=")
        if key.strip():
            kwargs[key.strip()] = value
        elif kwargs:
            raise _bad(item, "has a positional parameter after a keyword one")
        else:
            args.append(value)
    try:
        bound = inspect.Signature(params).bind(*args, **kwargs)
    except TypeError as error:
        raise _bad(item, f"has parameters that do not fit ({error})") from None
    bound.apply_defaults()
    kinds = {p.name: type(p.default) for p in params}
    values = {k: v if not isinstance(v, str) else _convert(item, k, v, kinds[k]) for k, v in bound.arguments.items()}
    return name, values


def make_augmentations(
    names: str | Sequence[str], padding: int, image_shape: tuple[int, int, int], num_classes: int = 0
) -> list[Augmentation]:
    """The configured augmentations in order; ConfigError naming the item for an unknown name or bad parameter."""
    context = Context(tuple(image_shape), num_classes, padding)
    items = augment_names(names)
    augmentations = []
    for item in items:
        name, values = parse_item(item)
        try:
            augmentations.append(BUILDERS[name](context, **values))
        except Invalid as error:
            raise _bad(item, str(error)) from None
    mixing = [i for i, aug in enumerate(augmentations) if aug.mixes]
    if mixing and mixing != list(range(len(items) - len(mixing), len(items))):
        raise _bad(items[mixing[0]], "must come after every per-example augmentation (it mixes whole batches)")
    return augmentations


def draw_tables(augmentations: Sequence[Augmentation], seed: int, epoch: int, n: int) -> list[np.ndarray]:
    """Each augmentation's parameters for the n examples of one epoch, from (seed, epoch, its position)."""
    return [
        aug.draw(np.random.default_rng([_AUGMENT_STREAM, seed, epoch, position]), n)
        for position, aug in enumerate(augmentations)
    ]


def _describe(builder: Callable) -> str:
    params = list(inspect.signature(builder).parameters.values())[1:]
    return f"{builder.__name__}({', '.join(f'{p.name}={p.default!r}' for p in params)})"


ACCEPTED = ", ".join(_describe(b) for b in BUILDERS.values())
