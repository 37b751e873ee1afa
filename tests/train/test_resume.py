"""Resume under interruptions at the awkward moments: mid-patience, between an epoch's checkpoint and its
history row (both orders), with a damaged latest checkpoint. Each resumed run must equal one uninterrupted run.

The runs share one config that stops early: a vanishing learning rate, so validation accuracy cannot improve by
min_delta after epoch 1 and patience 2 ends the run after epoch 3 of 6.
"""

import json
import shutil

import jax
import numpy as np
import pytest

from dl4cv_jax.data import load_data
from dl4cv_jax.train import callbacks as callbacks_lib
from dl4cv_jax.train import checkpoints
from dl4cv_jax.train.checkpoints import BEST, LATEST, CheckpointStore, UnreadableCheckpointError
from dl4cv_jax.train.loop import build_trainer, train_and_evaluate
from tests.conftest import tiny_digits_config


class Killed(Exception):
    """Stands for the process being killed at the point where a test raises it."""


class StepRecorder(callbacks_lib.Callback):
    def __init__(self):
        self.steps = []

    def on_batch_end(self, step, metrics):
        self.steps.append(step)


class KillAfterEpoch(callbacks_lib.Callback):
    """Raises after `epoch` ended: its checkpoint was saved and (being after HistoryCSV) its history row written."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            raise Killed


def patience_config():
    config = tiny_digits_config(num_epochs=6, schedule__name="constant", model__dropout_rate=0.3)
    config.optimizer.learning_rate = 1e-9
    config.early_stopping.patience = 2
    config.early_stopping.min_delta = 0.05
    return config


def untimed(rows):
    return [{k: v for k, v in r.items() if "second" not in k} for r in rows]


def outcome(workdir):
    """What a finished run leaves: history without timings, test metrics, latest parameters and loop state."""
    config = patience_config()
    _, state = build_trainer(config, load_data(config))
    store = CheckpointStore(workdir)
    restored, loop = store.restore(LATEST, state)
    store.close()
    return {
        "history": untimed(callbacks_lib.read_history(workdir / "history.csv")),
        "test": json.loads((workdir / "test_metrics.json").read_text()),
        "params": jax.device_get(restored.params),
        "batch_stats": jax.device_get(restored.batch_stats),
        "loop": {**loop, "history": untimed(loop["history"])},
    }


def assert_same_outcome(a, b):
    assert a["history"] == b["history"]
    assert a["test"] == b["test"]
    assert a["loop"] == b["loop"]
    for x, y in zip(
        jax.tree.leaves((a["params"], a["batch_stats"])), jax.tree.leaves((b["params"], b["batch_stats"])), strict=True
    ):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run: its workdir, and the step numbers its callbacks saw."""
    workdir = tmp_path_factory.mktemp("straight")
    recorder = StepRecorder()
    train_and_evaluate(patience_config(), workdir, callbacks=[recorder], show_progress=False)
    return workdir, recorder.steps


def test_early_stopping_stops_after_patience(straight):
    workdir, _ = straight
    history = callbacks_lib.read_history(workdir / "history.csv")
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]  # epoch 1 sets the best, 2 and 3 do not improve
    # Running again does not train further: the stopped state was checkpointed.
    train_and_evaluate(patience_config(), workdir, show_progress=False)
    assert len(callbacks_lib.read_history(workdir / "history.csv")) == 3


def test_interrupted_mid_patience_resumes_with_global_steps_and_stops_at_the_same_epoch(straight, tmp_path):
    workdir, straight_steps = straight
    steps_per_epoch = int(callbacks_lib.read_history(workdir / "history.csv")[0]["step"])
    assert straight_steps == list(range(1, 3 * steps_per_epoch + 1))  # global: epoch 2 continues from epoch 1

    before, after = StepRecorder(), StepRecorder()
    with pytest.raises(Killed):  # after epoch 2: one epoch of patience used, one left
        train_and_evaluate(patience_config(), tmp_path, callbacks=[before, KillAfterEpoch(2)], show_progress=False)
    train_and_evaluate(patience_config(), tmp_path, callbacks=[after], show_progress=False)
    assert before.steps == list(range(1, 2 * steps_per_epoch + 1))
    assert after.steps == list(range(2 * steps_per_epoch + 1, 3 * steps_per_epoch + 1)), "steps restart on resume"
    assert_same_outcome(outcome(tmp_path), outcome(workdir))


def test_killed_after_the_checkpoint_before_the_history_row(straight, tmp_path, monkeypatch):
    write_row = callbacks_lib.HistoryCSV.on_epoch_end

    def killed_before_row_2(self, epoch, logs):
        if epoch == 2:
            raise Killed
        write_row(self, epoch, logs)

    monkeypatch.setattr(callbacks_lib.HistoryCSV, "on_epoch_end", killed_before_row_2)
    with pytest.raises(Killed):
        train_and_evaluate(patience_config(), tmp_path, show_progress=False)
    monkeypatch.undo()
    assert len(callbacks_lib.read_history(tmp_path / "history.csv")) == 1
    store = CheckpointStore(tmp_path)
    assert store.latest_step(LATEST) == 2 * int(callbacks_lib.read_history(tmp_path / "history.csv")[0]["step"])
    store.close()
    train_and_evaluate(patience_config(), tmp_path, show_progress=False)
    assert_same_outcome(outcome(tmp_path), outcome(straight[0]))


def test_killed_after_the_history_row_before_the_checkpoint(straight, tmp_path, monkeypatch):
    save = CheckpointStore.save

    def epoch_2_never_saved(self, which, step, state, loop_state):
        if loop_state["epoch"] != 2:
            save(self, which, step, state, loop_state)

    monkeypatch.setattr(CheckpointStore, "save", epoch_2_never_saved)
    with pytest.raises(Killed):
        train_and_evaluate(patience_config(), tmp_path, callbacks=[KillAfterEpoch(2)], show_progress=False)
    monkeypatch.undo()
    assert len(callbacks_lib.read_history(tmp_path / "history.csv")) == 2  # one row more than the checkpoint
    train_and_evaluate(patience_config(), tmp_path, show_progress=False)
    assert_same_outcome(outcome(tmp_path), outcome(straight[0]))


def _damage(step_directory):
    """Truncates every array file of a checkpoint, as a copy interrupted half-way would leave it."""
    files = [p for p in (step_directory / "state").rglob("*") if p.is_file() and "ocdbt" in str(p)]
    assert files, f"no array files under {step_directory}"
    for path in files:
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size // 3)


def test_an_unreadable_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_best(straight, tmp_path):
    shutil.copytree(straight[0], tmp_path, dirs_exist_ok=True)
    store = CheckpointStore(tmp_path)
    latest, best = store.latest_step(LATEST), store.latest_step(BEST)
    store.close()
    assert best < latest  # the best epoch is 1, the run stopped after 3
    _damage(tmp_path / "checkpoints" / LATEST / str(latest))
    train_and_evaluate(patience_config(), tmp_path, show_progress=False)
    assert_same_outcome(outcome(tmp_path), outcome(straight[0]))
    set_aside = list((tmp_path / "checkpoints" / "unreadable").iterdir())
    assert [p.name.rsplit("-", 2)[0] for p in set_aside] == [f"{LATEST}-{latest}"]  # kept, not deleted


def test_no_readable_checkpoint_stops_with_one_line_and_deletes_nothing(straight, tmp_path):
    shutil.copytree(straight[0], tmp_path, dirs_exist_ok=True)
    for which in (LATEST, BEST):
        for step_directory in (tmp_path / "checkpoints" / which).iterdir():
            _damage(step_directory)
    files_before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "checkpoints" in str(p))
    with pytest.raises(UnreadableCheckpointError) as error:
        train_and_evaluate(patience_config(), tmp_path, show_progress=False)
    message = str(error.value)
    assert "\n" not in message and f"{tmp_path}/checkpoints/{LATEST}/" in message and "cannot be read" in message
    files_after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "checkpoints" in str(p))
    assert files_after == files_before
    assert checkpoints.UnreadableCheckpointError is UnreadableCheckpointError
