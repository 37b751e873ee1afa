"""The Python files a command line names (--config, --sweep), loaded with one-line errors, and the one line for
each way `--config` and its `--config.a.b=value` overrides can be wrong before any mode runs.

Why this exists: ml_collections' config flag reports a missing config file only when the config is first read
(several lines, with a traceback), a syntax error or a mistyped override key as a bare traceback (the key
without its section), and a value of the wrong type through absl's two-line `FATAL Flags parsing error`.
main.py hands any such failure to `flag_error_line`, which finds the culprit again by itself (the file, then
each override in order) and says what is accepted there. Imports no jax: main.py uses it before
`configure_process` may re-execute the process.
"""

import difflib
import importlib.util
import pathlib
import re
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import ml_collections

from dl4cv_jax.choices import ConfigError

_CONFIG_FLAG = re.compile(r"^--?config(?:=(?P<value>.*))?$")
_OVERRIDE = re.compile(r"^--?(?:no)?config\.(?P<path>[^=]+)")
_BAD_VALUE = re.compile(r"^flag --(?P<name>[\w.\[\]]+)=(?P<value>.*?): (?P<reason>.*)$")


def first_line(error: BaseException) -> str:
    """The error's first non-empty line (or its type's name): what a one-line report can keep of it."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)  # str() would quote it
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _python_files(folder: pathlib.Path) -> str:
    """The .py files in `folder` (the accepted values of a mistyped file name), or why there are none."""
    if not folder.is_dir():
        return f"folder {folder} does not exist either"
    names = sorted(p.name for p in folder.glob("*.py") if not p.name.startswith("_"))
    return f"files in {folder}/: {', '.join(names)}" if names else f"{folder}/ has no .py files"


def load_python_file(path: str | pathlib.Path, kind: str) -> ModuleType:
    """Imports the `kind` file (config, sweep) at `path`.

    FileNotFoundError when it does not exist, listing the files next to it; ConfigError with the exception's
    type, first line and line number when running it fails (a syntax error, a bad import, any raise).
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ConfigError(f"{kind} file {path} is a folder, not a .py file; {_python_files(path)}")
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file {path} does not exist; {_python_files(path.parent)}")
    spec = importlib.util.spec_from_file_location(f"_dl4cv_{kind}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # any failure of a user's file is reported, not a traceback
        raise ConfigError(f"{kind} file {path} fails to import: {failure_in(error, path)}") from None
    return module


def failure_in(error: Exception, path: pathlib.Path) -> str:
    """`Type: first line (line N)` for an error raised by running the file at `path` (N: its line, when known)."""
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    traceback = error.__traceback__
    while traceback is not None:
        if pathlib.Path(traceback.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    message = error.msg if isinstance(error, SyntaxError) else first_line(error)
    return f"{type(error).__name__}: {message}" + (f" (line {line})" if line else "")


def load_config_file(spec: str | pathlib.Path) -> ml_collections.ConfigDict:
    """`get_config()` of a config file, as `--config=spec` runs it (`file.py:arg` passes arg to get_config).

    One-line errors: a missing file (FileNotFoundError), or ConfigError when it fails to import, lacks
    get_config, raises in it or returns something other than a ConfigDict.
    """
    path, *args = str(spec).split(":", 1)
    module = load_python_file(path, "config")
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {path} has no get_config() returning an ml_collections.ConfigDict")
    try:
        config = module.get_config(*args)
    except Exception as error:  # as in load_python_file
        raise ConfigError(f"config file {path}: get_config() fails: {failure_in(error, pathlib.Path(path))}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"config file {path}: get_config() returned {type(config).__name__}, not a ConfigDict")
    return config


def unknown_override(config: ml_collections.ConfigDict, dotted: str) -> str | None:
    """Why `--config.<dotted>` names no field of `config` (the keys at the level that fails), or None if it does."""
    node: Any = config
    parts = dotted.split(".")
    for depth, key in enumerate(parts):
        section = ".".join(["config", *parts[:depth]])
        if not isinstance(node, Mapping | ml_collections.ConfigDict):
            return f"--config.{dotted}: {section} is {_a(type(node).__name__)}, not a section with fields"
        if key not in node:
            fields = sorted(node.keys())
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"--config.{dotted}: {section} has no field {key!r}{hint}; its fields: {', '.join(fields)}"
        node = node[key]
    return None


def config_spec(argv: Sequence[str], default: str) -> str:
    """The value of --config on the command line (`--config=x` or `--config x`), else `default`."""
    for index, arg in enumerate(argv):
        match = _CONFIG_FLAG.match(arg)
        if match:
            value = match.group("value")
            return value if value is not None else (argv[index + 1] if index + 1 < len(argv) else "")
    return default


def flag_error_line(error: BaseException, argv: Sequence[str], default_config: str) -> str:
    """One line for a failure while the command line was parsed, naming the culprit and what is accepted.

    Looks for the culprit in order: the config file (missing, broken), then each override's key, then a
    value absl refused (with the field's type and default), then the error's own first line.
    """
    spec = config_spec(argv, default_config)
    try:
        config = load_config_file(spec)
    except (ConfigError, FileNotFoundError) as problem:
        return str(problem)
    for arg in argv:
        match = _OVERRIDE.match(arg)
        reason = match and unknown_override(config, match.group("path"))
        if reason:
            return reason
    return _bad_value_line(first_line(error), config) or first_line(error)


def _bad_value_line(message: str, config: ml_collections.ConfigDict) -> str | None:
    """absl's `flag --name=value: reason` as `--name=value: reason`, plus a config field's type and default."""
    match = _BAD_VALUE.match(message)
    if not match:
        return None
    name, value, reason = match.group("name", "value", "reason")
    line = f"--{name}={value}: {reason}"
    if not name.startswith("config."):
        return line
    default: Any = config
    try:
        for key in name.split(".")[1:]:
            default = default[key]
    except (KeyError, TypeError, AttributeError):
        return line
    return f"{line}; config.{name[len('config.') :]} takes {_a(type(default).__name__)} (default {default!r})"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"
