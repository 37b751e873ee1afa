"""What happens when an epoch ends, whoever trained it: the history row, the loop state (best-checkpoint and
early-stopping trackers), the checkpoints; and at the end of a run, the best checkpoint's test metrics.

`train/loop.py` and `vmap_seeds.py` (K seeds in one program) both call these, so a seed's workdir holds what a
separate run's would (the same history columns, the same loop state in its checkpoints) and resumes like one.

The loop state is a small JSON dict saved with every checkpoint: epoch (epochs done), best_epoch, stopped_early,
best and early (the two trackers), history (the history.csv rows so far, so that a run killed between its
checkpoint and its history row resumes to the same file) and data (`run_files.data_info`, so class names
travel with the weights). A mid-epoch checkpoint (SIGTERM, checkpoint.every_steps) adds `epoch_steps`: the
per-step train metrics of the batches of epoch `epoch` trained so far, whose count is the position within it.
"""

import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.training.early_stopping import EarlyStopping

from dl4cv_jax.train import run_files
from dl4cv_jax.train.callbacks import HISTORY_FIELDS
from dl4cv_jax.train.checkpoints import BEST, LATEST, CheckpointStore, UnreadableCheckpointError
from dl4cv_jax.train.state import TrainState


def _tracker_to_json(tracker: EarlyStopping) -> dict[str, Any]:
    return {"best_metric": tracker.best_metric, "patience_count": tracker.patience_count}


def _tracker_from_json(min_delta: float, saved: dict[str, Any]) -> EarlyStopping:
    return EarlyStopping(min_delta=min_delta).replace(
        best_metric=saved["best_metric"], patience_count=saved["patience_count"]
    )


def initial_loop_state(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The loop state of a run that has not trained an epoch yet."""
    # Both trackers minimise: a higher-is-better monitor is fed negated. The best-checkpoint tracker counts any
    # improvement (min_delta 0, like Keras' save_best_only); early stopping uses early_stopping.min_delta.
    return {
        "epoch": 0,
        "best_epoch": 0,
        "stopped_early": False,
        "best": _tracker_to_json(EarlyStopping(min_delta=0.0)),
        "early": _tracker_to_json(EarlyStopping(min_delta=config.early_stopping.min_delta)),
        "history": [],
    }


def restore_latest(
    store: CheckpointStore, state: TrainState, config: ml_collections.ConfigDict
) -> tuple[TrainState, dict[str, Any]]:
    """The newest readable checkpoint's state and loop state, for resume; `state` and a fresh loop state when
    there is none.

    An unreadable latest checkpoint (truncated, half-copied) is moved aside and the run resumes from the best
    one, itself a complete resume point at an earlier or equal epoch. When nothing can be read, the run stops
    with UnreadableCheckpointError rather than start over beside checkpoints it could not read.
    """
    unreadable = []
    for which in (LATEST, BEST):
        step = store.latest_step(which)
        if step is None:
            continue
        try:
            restored, loop = store.restore(which, state)
        except Exception as error:  # a damaged checkpoint raises whatever its reader meets (KeyError, ValueError...)
            unreadable.append((which, step, error))
            continue
        for bad_which, bad_step, error in unreadable:
            moved = store.set_aside(bad_which, bad_step)
            logging.warning("checkpoint %s is unreadable (%s); moved to %s", bad_step, _first_line(error), moved)
        within = len(seen_step_metrics(loop))  # > 0: a mid-epoch checkpoint (SIGTERM, checkpoint.every_steps)
        where = f"after step {within} of epoch {loop['epoch'] + 1}" if within else f"at epoch {loop['epoch']}"
        logging.info("resuming from %s %s", store.step_directory(which, step), where)
        return restored, loop
    if unreadable:
        which, step, error = unreadable[0]
        raise UnreadableCheckpointError(
            f"checkpoint {store.step_directory(which, step)} cannot be read ({_first_line(error)}) and no other "
            "checkpoint of this workdir can; nothing was deleted: move checkpoints/ away to start over"
        )
    return state, initial_loop_state(config)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def learning_rate(schedule: optax.Schedule, state: TrainState, step: int, grad_accum_steps: int) -> float:
    """The rate of the last optimizer update before `step` (schedules count updates, not micro-batches),
    times the reduce-on-plateau multiplier."""
    updates = step // grad_accum_steps
    return float(schedule(max(updates - 1, 0))) * float(state.lr_scale())


def epoch_logs(epoch: int, step: int, train: dict[str, float], val: dict[str, float], lr: float) -> dict[str, Any]:
    """One history row (callbacks.HISTORY_FIELDS): `epoch` counts from 1, `step` is the global step after it,
    `train` is what `train_epoch` returns and `val` what `evaluate` returns."""
    return {
        "epoch": epoch,
        "step": step,
        "train_loss": train["loss"],
        "train_accuracy": train["accuracy"],
        "val_loss": val["loss"],
        "val_accuracy": val["accuracy"],
        "learning_rate": lr,
        "epoch_seconds": train["seconds"],
        "images_per_second": train["images_per_second"],
    }


def update_loop_state(
    loop: dict[str, Any], logs: dict[str, Any], config: ml_collections.ConfigDict, higher_is_better: bool, data: Any
) -> tuple[dict[str, Any], bool]:
    """The loop state after the epoch of `logs`, and whether its `checkpoint.monitor` value is the best so far.

    `stopped_early` turns true once early stopping's patience is used up (never with early_stopping.patience=0).
    """
    monitored = (-1.0 if higher_is_better else 1.0) * logs[config.checkpoint.monitor]
    best = _tracker_from_json(0.0, loop["best"]).update(monitored)
    early = _tracker_from_json(config.early_stopping.min_delta, loop["early"]).update(monitored)
    patience = config.early_stopping.patience
    new = {
        "epoch": logs["epoch"],
        "best_epoch": logs["epoch"] if best.has_improved else loop["best_epoch"],
        "stopped_early": bool(patience > 0 and early.patience_count >= patience),
        "best": _tracker_to_json(best),
        "early": _tracker_to_json(early),
        "data": run_files.data_info(data),
    }
    if "history" in loop:  # absent in checkpoints saved before 2026-12-03: their runs keep cutting the file
        new["history"] = [*loop["history"], {key: logs[key] for key in HISTORY_FIELDS}]
    return new, bool(best.has_improved)


def mid_epoch_loop_state(loop: dict[str, Any], history: list) -> dict[str, Any]:
    """The loop state of a checkpoint taken after the `len(history)`-th step of epoch `loop["epoch"]` (0-based).

    The step metrics are kept, not only their count: the epoch's train_loss and train_accuracy average all of
    its steps, so the resumed run needs the ones it will not see again to write the same history row.
    """
    steps = jax.device_get(history)
    return {**loop, "epoch_steps": {key: [float(m[key]) for m in steps] for key in steps[0]}}


def seen_step_metrics(loop: dict[str, Any]) -> list[dict[str, np.float32]]:
    """The per-step metrics saved by `mid_epoch_loop_state` ([] after a whole epoch), as float32 scalars again:
    float32 -> JSON float -> float32 is exact, so the epoch's means come out bit for bit as without the stop."""
    saved = loop.get("epoch_steps") or {}
    columns = {key: np.asarray(values, np.float32) for key, values in saved.items()}
    count = len(next(iter(columns.values()), ()))
    return [{key: values[i] for key, values in columns.items()} for i in range(count)]


def save_epoch(store: CheckpointStore, step: int, state: TrainState, loop: dict[str, Any], improved: bool) -> None:
    """Checkpoints the epoch: always as latest (for resume), also as best when it `improved`.

    The best is complete before the latest starts: a latest checkpoint whose loop state names this epoch as
    best is never on disk without that best checkpoint.
    """
    if improved:
        store.save(BEST, step, state, loop)
        store.wait(BEST)
    store.save(LATEST, step, state, loop)


def best_state(store: CheckpointStore, state: TrainState) -> tuple[TrainState, int]:
    """The best checkpoint restored into `state`'s structure, and its step.

    Waits for pending saves first. Without a best checkpoint (no epoch ever improved, e.g. a NaN metric) it is
    `state` itself at its own step.
    """
    store.wait()
    step = store.latest_step(BEST)
    if step is None:
        return state, int(state.step)
    try:
        restored, _ = store.restore(BEST, state)
    except Exception as error:  # damaged after it was saved: say which directory, keep it for inspection
        raise UnreadableCheckpointError(
            f"best checkpoint {store.step_directory(BEST, step)} cannot be read ({_first_line(error)}); "
            "the latest checkpoint is kept beside it"
        ) from error
    return restored, int(step)


def write_test_metrics(workdir: pathlib.Path, test: dict[str, Any], checkpoint_step: int) -> dict[str, Any]:
    """`test` (from `evaluate`) with the step of the checkpoint it scored, written to test_metrics.json."""
    test = {**test, "checkpoint_step": int(checkpoint_step)}
    if jax.process_index() == 0:
        run_files.write_json(pathlib.Path(workdir) / "test_metrics.json", test)
    return test
