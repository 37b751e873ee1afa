"""A trained workdir back in memory: its config, its data (or only the data's description), the compiled model
and the weights of one checkpoint.

The workdir describes itself (config.json, data_info.json, checkpoints/), so evaluation needs no flags beyond
the workdir and which checkpoint. The model is rebuilt with `build_trainer`, the very function training used,
so the restored pytree has exactly the structure and shardings the checkpoint was saved from. The config is
`run_files.load_run_config`'s: config.json over today's defaults, as reproduction reads it.
"""

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import logging

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import Data, load_data
from dl4cv_jax.data.dataset import StreamSplit
from dl4cv_jax.train.checkpoints import BEST, LATEST, CheckpointStore
from dl4cv_jax.train.loop import Trainer, build_trainer
from dl4cv_jax.train.run_files import load_run_config, read_json
from dl4cv_jax.train.state import TrainState

KINDS = (BEST, LATEST)


@dataclasses.dataclass
class RestoredRun:
    """A workdir's config, data, compiled steps and restored state, and which checkpoint that state is."""

    workdir: pathlib.Path
    config: ml_collections.ConfigDict
    trainer: Trainer
    state: TrainState
    checkpoint: str  # best or latest: the folder the restored step lives in
    step: int

    @property
    def data(self) -> Data:
        return self.trainer.data


def available_steps(workdir: pathlib.Path) -> dict[str, list[int]]:
    """{best: [steps], latest: [steps]} as found on disk (Orbax names each checkpoint folder by its step)."""
    root = pathlib.Path(workdir) / "checkpoints"
    steps = {}
    for kind in KINDS:
        folder = root / kind
        found = [p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
        steps[kind] = sorted(int(name) for name in found)
    return steps


def _describe(steps: dict[str, list[int]]) -> str:
    return "; ".join(f"{kind}: {', '.join(map(str, found)) or 'none'}" for kind, found in steps.items())


def resolve_checkpoint(workdir: pathlib.Path, checkpoint: str) -> tuple[str, int]:
    """--checkpoint (best | latest | a step number) → (best or latest, step); ConfigError listing what exists."""
    steps = available_steps(workdir)
    where = pathlib.Path(workdir) / "checkpoints"
    spec = str(checkpoint).strip()
    if spec in KINDS:
        if not steps[spec]:
            raise ConfigError(f"--checkpoint={spec}: {where / spec} holds no checkpoint (found {_describe(steps)})")
        return spec, steps[spec][-1]
    if not spec.isdigit():
        raise ConfigError(
            f"--checkpoint={spec!r} is not valid; choose best, latest or a step number (found {_describe(steps)})"
        )
    for kind in KINDS:
        if int(spec) in steps[kind]:
            return kind, int(spec)
    raise ConfigError(f"--checkpoint={spec}: no checkpoint at that step in {where} (found {_describe(steps)})")


def restore_state(workdir: pathlib.Path, state: TrainState, checkpoint: str) -> tuple[TrainState, str, int]:
    """`state` with the weights of --checkpoint; returns (state, best or latest, step)."""
    kind, step = resolve_checkpoint(workdir, checkpoint)
    store = CheckpointStore(pathlib.Path(workdir))
    try:
        restored, _ = store.restore(kind, state, step)
    finally:
        store.close()
    return restored, kind, step


def _no_examples():
    raise RuntimeError("this Data describes a run's data for inference only; it holds no examples")


def data_from_info(info: dict[str, Any], config: ml_collections.ConfigDict) -> Data:
    """A `Data` with the run's class names, image shape and normalisation but no examples.

    Enough for `build_trainer`, which reads only the description and the training-set size; that size sets
    the learning-rate schedule, which inference never evaluates, so any size that fits a batch will do.
    """
    shape = tuple(int(d) for d in info["image_shape"])
    placeholder = StreamSplit(make_dataset=_no_examples, size=config.batch_size * 1024, shape=shape)
    empty = StreamSplit(make_dataset=_no_examples, size=0, shape=shape)
    return Data(
        name=config.data.get("name", "") or config.data.get("source", ""),
        class_names=tuple(info["class_names"]),
        image_shape=shape,
        mean=tuple(float(m) for m in info["mean"]),
        std=tuple(float(s) for s in info["std"]),
        splits={"train": placeholder, "val": empty, "test": empty},
    )


def load_data_info(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> Data:
    """The run's data description from data_info.json; a workdir older than that file falls back to the data."""
    path = pathlib.Path(workdir) / "data_info.json"
    if path.is_file():
        return data_from_info(read_json(path), config)
    logging.warning("%s has no data_info.json; loading the training data to find classes and statistics", workdir)
    return load_data(config)


def load_run(
    workdir: pathlib.Path,
    checkpoint: str = BEST,
    with_data: bool = True,
    tta: Sequence[str] | None = None,
    data: Data | None = None,
) -> RestoredRun:
    """Config, data, compiled steps and restored weights of a training workdir.

    `with_data=False` (prediction) skips reading the data set: it builds from data_info.json alone, or from
    `data` when the caller has read that already (`load_data_info`, before decoding its images). `tta`
    replaces the run's config.eval_tta (the views evaluation averages; () for none), None keeps it.
    Checks the checkpoint exists before any data is read, so a typo fails in a second.
    """
    workdir = pathlib.Path(workdir)
    config = load_run_config(workdir)
    if tta is not None:
        config.eval_tta = tuple(tta)
    resolve_checkpoint(workdir, checkpoint)
    if data is None:
        data = load_data(config) if with_data else load_data_info(workdir, config)
    trainer, state = build_trainer(config, data)
    state, kind, step = restore_state(workdir, state, checkpoint)
    return RestoredRun(workdir, config, trainer, state, kind, step)
