"""One way to look a config value up in a registry, so every bad value fails with the same clear line."""

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is invalid. The message is one line naming the key, the value and what is accepted."""


def choose(registry: Mapping[str, T], key: str, value: str) -> T:
    """Returns `registry[value]`, or raises ConfigError naming `key` and the accepted names.

    `key` is the dotted config path (e.g. 'optimizer.name') so the user knows which flag to fix.
    """
    if value in registry:
        return registry[value]
    accepted = ", ".join(sorted(registry))
    raise ConfigError(f"config.{key}={value!r} is not supported; choose one of: {accepted}")


def require(condition: bool, key: str, value: object, expectation: str) -> None:
    """Raises ConfigError `config.<key>=<value> <expectation>` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"config.{key}={value!r} {expectation}")
