"""Transfer learning: which parameters train (`config.finetune.freeze`), how fast (`config.finetune.lr_mults`), and
BatchNorm layers that stay as they were.

Both settings are regexes searched (`re.search`) in a parameter's path, its keys joined by '/'
("layer1_0/conv1/kernel", "fc/bias"); `'^(?!fc/)'` is "everything but the head".

- Frozen parameters get zero updates from `optax.multi_transform` with `optax.set_to_zero`: weight decay, momentum
  and the plateau scale never move them, and the optimizer keeps no state for them. Gradient clipping measures the
  global norm of the trainable parameters only.
- `lr_mults` ((regex, multiplier), ...; the first match wins, unmatched parameters 1x) scales each parameter's whole
  update, as big_vision's `lr_mults` scale its learning rate: for SGD, momentum and Adam that is the learning rate
  times the multiplier, decoupled weight decay included. It acts after the optimizer, so there is still one
  optimizer state and one global clip norm; only the step taken is scaled.
- A BatchNorm layer whose scale or bias is frozen is frozen whole: in training it normalises with its running
  statistics and never updates them, as timm's `freeze_batch_norm_2d` does by swapping modules. Without that, a
  "frozen" backbone would still drift towards the new data's statistics, and batches of 1 or 2 would be noise.

Models never learn about freezing: `freeze_batch_norm` hands the builder a `Layers` whose BatchNorm classes are
subclasses of the given ones (Flax's or a backend's) that look at their own path (`self.path`).
"""

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from dl4cv_jax.choices import ConfigError, require
from dl4cv_jax.models.layers import Layers

FROZEN, TRAINABLE = "frozen", "trainable"  # the labels of `optax.multi_transform`
BATCH_NORM_PARAMS = ("scale", "bias")


def param_path(key_path: Sequence[Any]) -> str:
    """'layer1_0/conv1/kernel' for a jax key path into a parameter tree."""
    return "/".join(str(getattr(key, "key", getattr(key, "name", key))) for key in key_path)


def param_paths(params: Any) -> list[str]:
    """Every parameter's path, in tree order."""
    return [param_path(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def compile_pattern(key: str, pattern: str) -> re.Pattern:
    """`pattern` compiled, or a ConfigError naming `config.<key>`."""
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"config.{key}={pattern!r} is not a valid regex: {error}") from None


def parse_lr_mults(lr_mults: Sequence[Any]) -> tuple[tuple[re.Pattern, float], ...]:
    """`config.finetune.lr_mults` as (compiled regex, multiplier) pairs; ConfigError on anything else."""
    rules = []
    for entry in lr_mults:
        well_formed = (
            isinstance(entry, (tuple, list))
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], (int, float))
            and not isinstance(entry[1], bool)
        )
        require(well_formed, "finetune.lr_mults", lr_mults, "must be ((regex, multiplier), ...), e.g. (('.*', 0.1),)")
        require(entry[1] >= 0, "finetune.lr_mults", lr_mults, f"has a negative multiplier for {entry[0]!r}")
        rules.append((compile_pattern("finetune.lr_mults", entry[0]), float(entry[1])))
    return tuple(rules)


def _require_match(key: str, pattern: re.Pattern, paths: list[str]) -> None:
    if not any(pattern.search(path) for path in paths):
        examples = paths if len(paths) <= 6 else [*paths[:4], "...", *paths[-2:]]
        raise ConfigError(
            f"config.{key}: {pattern.pattern!r} matches no parameter; the paths look like: {', '.join(examples)}"
        )


def freeze_labels(freeze: str) -> Callable[[Any], Any]:
    """The label function of `optax.multi_transform`: FROZEN where `freeze` matches the path, else TRAINABLE.

    Raises ConfigError (at the optimizer's init) when the regex matches no parameter, or every one of them.
    """
    pattern = compile_pattern("finetune.freeze", freeze)

    def labels(params: Any) -> Any:
        paths = param_paths(params)
        _require_match("finetune.freeze", pattern, paths)
        require(
            not all(pattern.search(path) for path in paths),
            "finetune.freeze",
            freeze,
            "freezes every parameter: nothing would train",
        )
        return jax.tree_util.tree_map_with_path(
            lambda path, _: FROZEN if pattern.search(param_path(path)) else TRAINABLE, params
        )

    return labels


def lr_multiplier(rules: Sequence[tuple[re.Pattern, float]], path: str) -> float:
    """The multiplier of the first rule whose regex matches `path`; 1 when none does."""
    return next((mult for pattern, mult in rules if pattern.search(path)), 1.0)


def scale_by_lr_mults(lr_mults: Sequence[Any]) -> optax.GradientTransformation:
    """A stateless transformation that multiplies each parameter's update by its `lr_mults` multiplier.

    Chained after the optimizer, so its result is the learning rate scaled per parameter (see the module
    docstring). ConfigError at init when a regex matches no parameter.
    """
    rules = parse_lr_mults(lr_mults)

    def init(params: Any) -> optax.EmptyState:
        paths = param_paths(params)
        for pattern, _ in rules:
            _require_match("finetune.lr_mults", pattern, paths)
        return optax.EmptyState()

    def update(updates: Any, state: optax.EmptyState, params: Any = None) -> tuple[Any, optax.EmptyState]:
        def scale(path: Sequence[Any], update: jax.Array) -> jax.Array:
            mult = lr_multiplier(rules, param_path(path))
            return update if mult == 1.0 else update * jnp.asarray(mult, update.dtype)

        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(init, update)


def finetune_optimizer(
    tx: optax.GradientTransformation, finetune: ml_collections.ConfigDict
) -> optax.GradientTransformation:
    """`tx` (from `optim.make_optimizer`) with `finetune.freeze` and `finetune.lr_mults` applied.

    Returns `tx` itself when neither is set, so the optimizer state (and old checkpoints) keep their structure.
    """
    if finetune.freeze:
        tx = optax.multi_transform({TRAINABLE: tx, FROZEN: optax.set_to_zero()}, freeze_labels(finetune.freeze))
    if finetune.lr_mults:
        tx = optax.chain(tx, scale_by_lr_mults(finetune.lr_mults))
    return tx


def is_frozen_norm(pattern: re.Pattern, module_path: str) -> bool:
    """Whether the BatchNorm at `module_path` ('layer1_0/bn1') is frozen: `pattern` matches its scale's or its
    bias's path."""
    return any(pattern.search(f"{module_path}/{name}") for name in BATCH_NORM_PARAMS)


@functools.cache  # one class per (norm, regex): `Layers` is a static module field, compared by value
def frozen_norm_class(norm: type[nn.Module], freeze: str) -> type[nn.Module]:
    """A subclass of the BatchNorm class `norm` that, where `freeze` matches its parameters, runs as in evaluation.

    `norm` is any module with BatchNorm's `use_running_average` field (Flax's, `BatchNormReLU`, a backend's).
    Flax's `merge_param` refuses a call argument when the constructor set the field, so the frozen layer runs the
    parent's `__call__` on a clone bound to its own scope (the same variables) with `use_running_average=True`.
    """
    if not (isinstance(norm, type) and issubclass(norm, nn.Module)):
        raise TypeError(f"finetune.freeze needs BatchNorm layers that are Flax module classes, got {norm!r}")
    pattern = compile_pattern("finetune.freeze", freeze)

    class FrozenNorm(norm):
        def __call__(self, x: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
            if not is_frozen_norm(pattern, "/".join(self.path)):
                return super().__call__(x, *args, **kwargs)
            kwargs.pop("use_running_average", None)
            running = self.clone(parent=self.scope, use_running_average=True)
            return norm.__call__(running, x, **kwargs)

    FrozenNorm.__name__ = FrozenNorm.__qualname__ = f"Frozen{norm.__name__}"
    return FrozenNorm


def freeze_batch_norm(layers: Layers, freeze: str) -> Layers:
    """`layers` whose BatchNorms (plain and with ReLU) keep their statistics where `freeze` matches their
    parameters (see the module docstring); `layers` itself when nothing is frozen."""
    if not freeze:
        return layers
    return dataclasses.replace(
        layers,
        batch_norm=frozen_norm_class(layers.batch_norm, freeze),
        batch_norm_relu=frozen_norm_class(layers.batch_norm_relu, freeze),
    )


def describe(finetune: ml_collections.ConfigDict, params: Any, batch_stats: Any) -> list[str]:
    """One line per setting: what `finetune.freeze` freezes and what each `lr_mults` rule applies to."""
    leaves = [(param_path(path), int(leaf.size)) for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]
    total = sum(size for _, size in leaves)
    lines = []
    if finetune.freeze:
        pattern = compile_pattern("finetune.freeze", finetune.freeze)
        frozen = sum(size for path, size in leaves if pattern.search(path))
        norms = {param_path(path[:-1]) for path, _ in jax.tree_util.tree_flatten_with_path(batch_stats)[0]}
        frozen_norms = sum(is_frozen_norm(pattern, module) for module in norms)
        lines.append(
            f"finetune.freeze={finetune.freeze!r}: {frozen:,} of {total:,} parameters frozen, {total - frozen:,} "
            f"trainable; {frozen_norms} of {len(norms)} BatchNorm layers keep their running statistics"
        )
    if finetune.lr_mults:
        rules = parse_lr_mults(finetune.lr_mults)
        counts = {index: 0 for index in range(len(rules))}
        for path, size in leaves:
            index = next((i for i, (pattern, _) in enumerate(rules) if pattern.search(path)), None)
            if index is not None:
                counts[index] += size
        groups = ", ".join(f"{p.pattern!r} x{m:g}: {counts[i]:,}" for i, (p, m) in enumerate(rules))
        lines.append(f"finetune.lr_mults (parameters per rule, the rest x1): {groups}")
    return lines


def log_finetune(finetune: ml_collections.ConfigDict, params: Any, batch_stats: Any) -> None:
    """Logs `describe`'s lines (nothing when neither setting is used)."""
    for line in describe(finetune, params, batch_stats):
        logging.info("%s", line)
