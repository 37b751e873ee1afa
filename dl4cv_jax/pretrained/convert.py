"""PyTorch arrays -> our variables, through a family's TorchLayout; every mismatch reported at once.

Why compare against a freshly initialised variable tree: it says which variables the model has and their
shapes, so a file for another architecture, another depth or another class count fails with a list of
missing, unknown and mis-shaped keys instead of an error deep inside `apply`.
"""

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.pretrained.layout import TorchLayout

MAX_LISTED = 8  # keys named per kind of mismatch; the rest are counted


class WeightMismatchError(ConfigError):
    """The file's keys or shapes do not fit the model (one line listing them)."""


def torch_to_variables(
    arrays: Mapping[str, np.ndarray],
    variables: Mapping[str, Any],
    layout: TorchLayout,
    *,
    allow_new_head: bool = False,
    name: str = "the weight file",
) -> tuple[dict[str, Any], list[str]]:
    """`variables` (a fresh init: its tree and shapes) with every leaf read from `arrays`.

    Returns (new variables, the head's variable paths kept at their fresh init). Those are only allowed when
    `allow_new_head` and the mismatch is in `layout.head` (another class count); otherwise raises
    WeightMismatchError naming the missing, unknown and mis-shaped keys.
    """
    if layout.rename_keys is not None:
        arrays = layout.rename_keys(dict(arrays))
    flat = traverse_util.flatten_dict(dict(variables))
    used, missing, misshaped, new_head, out = set(), [], [], [], {}
    for path, leaf in flat.items():
        source = layout.source(path)
        if source.key not in arrays:
            missing.append(source.key)
            out[path] = leaf
            continue
        used.add(source.key)
        value = np.asarray(source.transform(np.asarray(arrays[source.key])))
        if value.shape == tuple(leaf.shape):
            out[path] = value.astype(np.asarray(leaf).dtype)
        elif allow_new_head and len(path) > 1 and path[1] in layout.head:
            new_head.append("/".join(path))
            out[path] = leaf
        else:
            misshaped.append(f"{source.key} {tuple(np.shape(arrays[source.key]))} -> ours {tuple(leaf.shape)}")
    unknown = [k for k in arrays if k not in used and not any(re.search(p, k) for p in layout.ignored)]
    if missing or unknown or misshaped:
        raise WeightMismatchError(
            f"{name} does not fit the model: " + "; ".join(_summaries(missing, unknown, misshaped))
        )
    return traverse_util.unflatten_dict(out), new_head


def _summaries(missing: list[str], unknown: list[str], misshaped: list[str]) -> list[str]:
    parts = []
    for label, keys in (("missing", missing), ("unknown", unknown), ("mis-shaped", misshaped)):
        if keys:
            more = f" (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:MAX_LISTED])}{more}")
    return parts
