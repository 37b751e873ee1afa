"""Keras-style callbacks: hooks called by the loop at the end of each batch and each epoch.

The built-in ones write `history.csv`, TensorBoard scalars and the console progress bar. Checkpointing and
early stopping are not callbacks here: their state must be saved with the checkpoint to resume exactly, so the
loop owns them (see `loop.py`).
"""

import csv
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from tqdm import tqdm

from dl4cv_jax.tensorboard_writer import open_writer

HISTORY_FIELDS = (
    "epoch",
    "step",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "epoch_seconds",
    "images_per_second",
)


class Callback:
    """Base class: override the hooks you need. `metrics` values are device scalars; `float()` them to read.

    Reading a device value waits for the step to finish, so per-batch callbacks that read every step cost
    some speed; that is the price Keras' `on_batch_end` pays too.
    """

    def on_train_begin(self, start_epoch: int, num_epochs: int, steps_per_epoch: int) -> None:
        """Called once, with the epoch the run starts from (> 0 when resuming)."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Called before the first batch of each epoch; `epoch` counts from 1."""

    def on_batch_end(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        """Called after every train step with that batch's `loss` and `accuracy` (step counts from 1)."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Called after validation with one row of history (see HISTORY_FIELDS); `epoch` counts from 1."""

    def on_train_end(self, logs: Mapping[str, Any]) -> None:
        """Called once at the end with the test metrics."""


class CallbackList(Callback):
    """Calls each callback in turn."""

    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = list(callbacks)

    def on_train_begin(self, start_epoch: int, num_epochs: int, steps_per_epoch: int) -> None:
        for callback in self.callbacks:
            callback.on_train_begin(start_epoch, num_epochs, steps_per_epoch)

    def on_epoch_begin(self, epoch: int) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch)

    def on_batch_end(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        for callback in self.callbacks:
            callback.on_batch_end(step, metrics)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: Mapping[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_train_end(logs)


class BatchLossHistory(Callback):
    """Records the loss of every batch (the seeds' Keras example), e.g. to plot a noisy training curve."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_batch_end(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        self.losses.append(float(metrics["loss"]))


class HistoryCSV(Callback):
    """`history.csv`: one row per epoch.

    On resume the file is rewritten from `restored_rows`, the rows saved in the restored checkpoint, so that it
    ends at the restored epoch whether the run was killed before or after writing that epoch's row. Without
    them (checkpoints saved before 2026-12-03) the rows after the restored epoch are dropped.
    """

    def __init__(self, path: pathlib.Path, restored_rows: Sequence[Mapping[str, Any]] | None = None):
        self.path = pathlib.Path(path)
        self.restored_rows = restored_rows

    def on_train_begin(self, start_epoch: int, num_epochs: int, steps_per_epoch: int) -> None:
        if self.restored_rows is not None:
            rows = list(self.restored_rows)
        else:
            rows = read_history(self.path)[:start_epoch] if self.path.exists() else []
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=HISTORY_FIELDS).writerow({k: logs[k] for k in HISTORY_FIELDS})


def read_history(path: pathlib.Path) -> list[dict[str, str]]:
    """The rows of a history.csv as dicts of strings."""
    with pathlib.Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


class TensorBoard(Callback):
    """Per-epoch scalars (loss, accuracy, learning rate, images/second) in TensorBoard event files."""

    def __init__(self, logdir: pathlib.Path):
        # TensorBoard only: the loop already prints one summary line per epoch to the console.
        self.writer = open_writer(logdir, asynchronous=True)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        scalars = {k: v for k, v in logs.items() if k not in ("epoch", "step")}
        self.writer.write_scalars(int(logs["step"]), scalars)
        self.writer.flush()

    def on_train_end(self, logs: Mapping[str, Any]) -> None:
        test = {f"test_{k}": v for k, v in logs.items() if k in ("loss", "accuracy")}
        if test:
            self.writer.write_scalars(int(logs.get("checkpoint_step", 0)), test)
        self.writer.close()


class ProfileTrace(Callback):
    """A `jax.profiler` trace of `num_steps` train steps for TensorBoard's profile tab (`workdir/profile`).

    Starts two steps into the run, so compilation is not in the trace, and waits for the last traced step's
    device work before stopping.
    """

    def __init__(self, logdir: pathlib.Path, num_steps: int):
        self.logdir, self.num_steps = pathlib.Path(logdir), num_steps
        self.first_step: int | None = None
        self.start: int | None = None

    def on_batch_end(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        self.first_step = step if self.first_step is None else self.first_step
        if self.start is None and step == self.first_step + 1:
            jax.block_until_ready(metrics)
            jax.profiler.start_trace(str(self.logdir))
            self.start = step
        elif self.start is not None and step == self.start + self.num_steps:
            jax.block_until_ready(metrics)
            jax.profiler.stop_trace()
            self.start = -1  # done

    def on_train_end(self, logs: Mapping[str, Any]) -> None:
        if self.start is not None and self.start >= 0:  # the run ended before num_steps were traced
            jax.profiler.stop_trace()


class ProgressBar(Callback):
    """A tqdm bar per epoch with ETA, images/second, and the latest batch's loss and accuracy, on a terminal only
    (redirected to a file, a bar leaves a half-drawn line per epoch)."""

    def __init__(self, batch_size: int, update_every: int = 20, stream: Any = None):
        self.batch_size = batch_size
        self.update_every = max(1, update_every)
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None

    def on_train_begin(self, start_epoch: int, num_epochs: int, steps_per_epoch: int) -> None:
        self.num_epochs, self.steps_per_epoch = num_epochs, steps_per_epoch

    def on_epoch_begin(self, epoch: int) -> None:
        self.bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}/{self.num_epochs}",
            unit="step",
            file=self.stream,
            mininterval=1.0,
            dynamic_ncols=True,
            leave=False,
            disable=None,  # off when the stream is not a terminal: logs and CI output keep only the epoch lines
        )
        self.first_step = (epoch - 1) * self.steps_per_epoch
        self.start = time.perf_counter()

    def on_batch_end(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        done = step - self.first_step
        if self.bar is None or (done % self.update_every and done != self.steps_per_epoch):
            return
        self.bar.update(done - self.bar.n)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(
            loss=f"{float(metrics['loss']):.4f}",
            acc=f"{float(metrics['accuracy']):.3f}",
            img_s=f"{done * self.batch_size / elapsed:.0f}",
            refresh=False,
        )

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
