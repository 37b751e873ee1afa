"""The small files a run leaves in its workdir besides checkpoints: config.json, run_info.json, class_names.json,
data_info.json, test_metrics.json. They make a workdir self-describing: evaluation and reproduction need nothing
else, and read the config back with `load_run_config`."""

import datetime
import importlib.metadata
import json
import pathlib
import platform
import subprocess
import sys
from typing import Any

import jax
import ml_collections

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.train import sharding

PACKAGES = ("dl4cv_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-cpu", "numpy")


def write_json(path: pathlib.Path, payload: Any) -> None:
    """Writes JSON atomically (temp file + rename), so a killed run never leaves half a file."""
    path = pathlib.Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_json(path: pathlib.Path) -> Any:
    return json.loads(pathlib.Path(path).read_text())


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The resolved config as plain JSON types (tuples become lists)."""
    return json.loads(config.to_json())


def _tuples(tree: Any) -> Any:
    """JSON turned the config's tuples into lists; the config files only ever use tuples, so turn them back."""
    if isinstance(tree, dict):
        return {key: _tuples(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return tuple(_tuples(value) for value in tree)
    return tree


def _default_config() -> ml_collections.ConfigDict:
    """configs/default.py when importable (from the repository root), else an empty ConfigDict."""
    try:
        from configs import default
    except ImportError:
        return ml_collections.ConfigDict()
    return default.get_config()


def merge_config(base: ml_collections.ConfigDict, saved: dict[str, Any]) -> ml_collections.ConfigDict:
    """`base` with every value of `saved` (a config.json) written over it, nested sections included.

    A key of `saved` that `base` lacks (a field since removed, e.g. materialize_conv_inputs) is kept as saved:
    no code reads it, and the run's config.json stays what it was.
    """
    for key, value in saved.items():
        if isinstance(value, dict):
            if not isinstance(base.get(key), ml_collections.ConfigDict):
                base[key] = ml_collections.ConfigDict()
            merge_config(base[key], value)
            continue
        try:
            base[key] = _tuples(value)
        except TypeError:  # the saved type differs from today's default (e.g. int vs float): the run wins
            del base[key]
            base[key] = _tuples(value)
    return base


def load_run_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
    """The config a workdir was trained with: its config.json over today's defaults.

    A workdir written before a field was added lacks that field; the default fills it in, so an older run
    still evaluates and reproduces with today's code. A run written by today's code reads back unchanged.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"--workdir={workdir} has no config.json; pass the workdir of a training run")
    return merge_config(_default_config(), read_json(path))


def check_or_write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict, write: bool = True) -> None:
    """Writes config.json; if the workdir already holds a run with a different config, refuses to touch it.

    Resuming a run with other settings would silently mix two experiments in one workdir. A field added to
    configs/default.py since the run was written is no change while it keeps its default: the run ran that way.
    With `write=False` (every process but the first of a job) it only checks, so that all processes refuse
    together; the file appears by an atomic rename, so a check sees either no file or the whole of it.
    """
    path = pathlib.Path(workdir) / "config.json"
    current = config_to_dict(config)
    if path.exists():
        saved = _flatten(read_json(path))
        now = _flatten(current)
        defaults = _flatten(config_to_dict(_default_config()))
        added_at_default = {k for k in now.keys() - saved.keys() if k in defaults and now[k] == defaults[k]}
        changed = sorted(
            k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k) and k not in added_at_default
        )
        if changed:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
            raise ConfigError(
                f"--workdir={workdir} holds a run with a different config ({shown}); "
                "pass a new --workdir, or the same config to resume"
            )
        return
    if write:
        write_json(path, current)


def data_info(
    data: Any, config: ml_collections.ConfigDict | None = None, preprocessing: str | None = None
) -> dict[str, Any]:
    """What inference needs besides the weights: class names, input shape and the normalisation used; with
    `config`, the resize policy too, and with `preprocessing`, where the mean/std/size came from
    (`pretrained.preprocessing.resolve_preprocessing`: a preset, the weight file, the user, or the defaults)."""
    info = {
        "class_names": list(data.class_names),
        "image_shape": list(data.image_shape),
        "mean": list(data.mean),
        "std": list(data.std),
    }
    if config is not None:
        info["resize_method"] = config.data.resize_method
        info["resize_shorter"] = int(config.data.get("resize_shorter", 0))
    if preprocessing is not None:
        info["preprocessing"] = preprocessing
    return info


def write_run_files(
    workdir: pathlib.Path, config: ml_collections.ConfigDict, data: Any, preprocessing: str | None = None
) -> None:
    """Creates `workdir` and writes (or checks, on resume) the files that describe the run before it trains.

    In a job of several processes every process checks config.json, process 0 alone writes, and all wait for it
    (`sharding.barrier`) before going on: the workdir is shared, each file is written once.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    writer = sharding.is_writer()
    check_or_write_config(workdir, config, write=writer)
    if writer:
        write_json(workdir / "class_names.json", list(data.class_names))
        write_json(workdir / "data_info.json", data_info(data, config, preprocessing))
        record_run_start(workdir, config.seed)
    sharding.barrier("run files written")


def _git_commit() -> str | None:
    repo = pathlib.Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def run_info(seed: int) -> dict[str, Any]:
    """What is needed to tell two runs apart: seed, code version, package versions, devices, time."""
    return {
        "seed": seed,
        "git_commit": _git_commit(),
        "packages": _versions(),
        "python": platform.python_version(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "process_count": jax.process_count(),
        "host": platform.node(),
        "command": sys.argv,
        "start_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def record_run_start(workdir: pathlib.Path, seed: int) -> None:
    """Writes run_info.json; a resumed run appends its own start under `resumes` instead of overwriting."""
    path = pathlib.Path(workdir) / "run_info.json"
    info = run_info(seed)
    if path.exists():
        saved = read_json(path)
        saved.setdefault("resumes", []).append(info)
        info = saved
    write_json(path, info)
