"""What a sweep is: a base config file, the settings to compare (config overrides) and the seeds to repeat them with.

A sweep file (e.g. `experiments/optimizers.py`) is plain Python with a `get_sweep()` that returns a `Sweep`.
Settings are lists of override dicts built with two helpers, so a sweep reads like the table it produces:

    product({"optimizer.name": ["sgd", "adam"]}, {"model.norm": ["batch", "none"]})  # 4 settings
    zipped({"optimizer.name": ["sgd", "adam"], "optimizer.learning_rate": [0.1, 1e-3]})  # 2 settings

Each (setting, seed) is a `Trial`; its name, e.g. `optimizer.name=adam,seed=1`, is its directory in the sweep's
workdir, so the name must be deterministic, unique within the sweep and safe as a file name.
"""

import dataclasses
import hashlib
import itertools
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.config_files import failure_in, load_config_file, load_python_file

Setting = dict[str, Any]
OVERRIDE_TYPES = (str, bool, int, float, tuple)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,-]")
_MAX_NAME = 200  # well under the 255 bytes most file systems allow for one path component


def _as_factor(factor: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[Setting]:
    if isinstance(factor, Mapping):
        keys = list(factor)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*factor.values())]
    return [dict(setting) for setting in factor]


def product(*factors: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[Setting]:
    """Every combination of the factors' values, first factor slowest.

    A factor is a mapping key -> values (itself a product over its keys) or a list of settings (e.g. from
    `zipped`), which then counts as one axis. A key set by two factors is an error: the later would win silently.
    """
    settings = []
    for combination in itertools.product(*(_as_factor(f) for f in factors)):
        merged: Setting = {}
        for part in combination:
            clash = merged.keys() & part.keys()
            if clash:
                raise ConfigError(f"sweep: key {sorted(clash)[0]!r} is set by two factors of product()")
            merged.update(part)
        settings.append(merged)
    return settings


def zipped(axes: Mapping[str, Sequence[Any]]) -> list[Setting]:
    """Values taken together position by position (like zip): the i-th setting has the i-th value of each key.

    For values that only make sense together, e.g. each optimizer with its own learning rate.
    """
    lengths = {key: len(values) for key, values in axes.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"sweep: zipped() needs lists of one length; got {lengths}")
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in zip(*axes.values(), strict=True)]


def format_value(value: Any) -> str:
    """An override value as `--config.key=<this>` expects it: strings bare, everything else as a literal."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        value = tuple(value)
    return repr(value)


def _name_part(value: Any) -> str:
    """A readable value for a directory name: tuples joined by '+', the empty tuple as 'none'."""
    if isinstance(value, (tuple, list)):
        return "+".join(_name_part(v) for v in value) or "none"
    return format_value(value)


def safe_name(text: str) -> str:
    """`text` with every character outside [A-Za-z0-9._=+,-] replaced by '_'; if too long, cut and hashed.

    The hash of the full text keeps two long names that share a prefix apart.
    """
    safe = _UNSAFE.sub("_", text)
    if len(safe) <= _MAX_NAME:
        return safe
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return f"{safe[: _MAX_NAME - 11]}~{digest}"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of a sweep: the base config with `fixed` and then `overrides` applied, and `seed`."""

    overrides: tuple[tuple[str, Any], ...]
    seed: int
    fixed: tuple[tuple[str, Any], ...] = ()

    @property
    def setting(self) -> str:
        """The overrides as `key=value,...` ('base' when there are none): what seeds are averaged over."""
        return ",".join(f"{key}={_name_part(value)}" for key, value in self.overrides) or "base"

    @property
    def name(self) -> str:
        """The trial's directory name: setting and seed, e.g. `optimizer.name=adam,seed=1`."""
        return safe_name(f"{self.setting},seed={self.seed}")

    def shown_overrides(self) -> dict[str, str]:
        """The overrides as they appear in the trial's name (tuples joined by '+'): the columns of results.csv."""
        return {key: _name_part(value) for key, value in self.overrides}

    def all_overrides(self) -> dict[str, Any]:
        """Fixed overrides, then the setting's (which win on a shared key), then the seed."""
        return {**dict(self.fixed), **dict(self.overrides), "seed": self.seed}

    def override_args(self) -> list[str]:
        """The `--config.key=value` arguments of main.py that make this trial's config from the base config."""
        return [f"--config.{key}={format_value(value)}" for key, value in self.all_overrides().items()]

    def apply(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """A copy of `config` with this trial's overrides and seed set (as `override_args` would)."""
        config = ml_collections.ConfigDict(config.to_dict())
        for key, value in self.all_overrides().items():
            *parents, leaf = key.split(".")
            node = config
            for part in parents:
                node = node[part]
            node[leaf] = value
        return config


def _check_overrides(where: str, overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ConfigError(f"sweep {where}: key {key!r} must be a dotted config path such as 'optimizer.name'")
        if key == "seed":
            raise ConfigError(f"sweep {where}: set seeds with Sweep(seeds=...), not as an override")
        if not isinstance(value, OVERRIDE_TYPES):
            accepted = ", ".join(t.__name__ for t in OVERRIDE_TYPES)
            raise ConfigError(f"sweep {where}: {key}={value!r} has type {type(value).__name__}; use {accepted}")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A base config file, the settings (override dicts) to compare, the seeds, and overrides shared by all.

    `fixed` holds overrides every trial gets (e.g. a small CPU budget); they are recorded in each trial's
    config.json but kept out of the trial names, which show only what varies.
    """

    config: str
    settings: Sequence[Mapping[str, Any]] = ({},)
    seeds: Sequence[int] = (0,)
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def trials(self) -> list[Trial]:
        """Every (setting, seed), setting by setting; ConfigError on a malformed sweep or two equal names."""
        _check_overrides("fixed", self.fixed)
        if not self.settings or not self.seeds:
            raise ConfigError("sweep: needs at least one setting and one seed")
        fixed = tuple(self.fixed.items())
        trials = []
        for index, setting in enumerate(self.settings):
            _check_overrides(f"setting {index}", setting)
            for seed in self.seeds:
                trials.append(Trial(tuple(setting.items()), int(seed), fixed))
        names = [trial.name for trial in trials]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"sweep: two trials share the name {duplicates[0]!r}; make the settings distinct")
        return trials

    def to_json(self) -> dict[str, Any]:
        """The sweep as plain JSON (recorded as sweep.json in the sweep's workdir)."""
        return {
            "config": self.config,
            "settings": [dict(s) for s in self.settings],
            "seeds": [int(s) for s in self.seeds],
            "fixed": dict(self.fixed),
            "trials": [trial.name for trial in self.trials()],
        }


def check_keys(sweep: Sweep, base: ml_collections.ConfigDict) -> None:
    """ConfigError for an override key the base config lacks: one typo would otherwise fail every trial."""
    flat = set(_flat_keys(base.to_dict()))
    for setting in [sweep.fixed, *sweep.settings]:
        for key in setting:
            if key not in flat:
                close = sorted(k for k in flat if k.split(".")[-1] == key.split(".")[-1])
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"sweep: override key {key!r} is not a field of {sweep.config}{hint}")


def _flat_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            keys += _flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def load_sweep(path: str | pathlib.Path) -> Sweep:
    """Imports a sweep file and returns its `get_sweep()`, with its keys checked against its base config."""
    module = load_python_file(path, "sweep")
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"sweep file {path} must define get_sweep() returning a dl4cv_jax.sweep.Sweep")
    try:
        sweep = module.get_sweep()
    except Exception as error:  # user code, as the import: one line, not a traceback
        raise ConfigError(f"sweep file {path}: get_sweep() fails: {failure_in(error, pathlib.Path(path))}") from None
    if not isinstance(sweep, Sweep):
        raise ConfigError(f"sweep file {path}: get_sweep() returned {type(sweep).__name__}, not a Sweep")
    sweep.trials()
    check_keys(sweep, load_config_file(sweep.config))
    return sweep
