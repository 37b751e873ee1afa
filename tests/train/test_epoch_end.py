"""The per-epoch bookkeeping the loop and vmap_seeds share: history row, loop state, which checkpoints are saved."""

import json
import types

import numpy as np
import pytest

from dl4cv_jax.train import callbacks as callbacks_lib
from dl4cv_jax.train import epoch_end
from dl4cv_jax.train.checkpoints import BEST, LATEST
from tests.conftest import tiny_digits_config

DATA = types.SimpleNamespace(class_names=("a", "b"), image_shape=(8, 8, 1), mean=(0.5,), std=(0.25,))
TRAIN = {"loss": 1.0, "accuracy": 0.5, "seconds": 2.0, "images_per_second": 100.0}


def _run(values, monitor="val_accuracy", patience=0, min_delta=0.0, resume_each_epoch=False):
    """Feeds one monitored value per epoch; returns the loop states and the improved flags."""
    config = tiny_digits_config(
        checkpoint__monitor=monitor, early_stopping__patience=patience, early_stopping__min_delta=min_delta
    )
    loop, loops, flags = epoch_end.initial_loop_state(config), [], []
    for epoch, value in enumerate(values, start=1):
        val = {"loss": value, "accuracy": value}
        logs = epoch_end.epoch_logs(epoch, epoch * 10, TRAIN, val, 0.1)
        if resume_each_epoch:  # what a checkpoint gives back: the JSON round trip
            loop = json.loads(json.dumps(loop))
        loop, improved = epoch_end.update_loop_state(loop, logs, config, monitor == "val_accuracy", DATA)
        loops.append(loop)
        flags.append(improved)
    return loops, flags


def test_epoch_logs_is_one_history_row():
    logs = epoch_end.epoch_logs(3, 30, TRAIN, {"loss": 0.7, "accuracy": 0.8}, 0.01)
    assert tuple(logs) == callbacks_lib.HISTORY_FIELDS
    assert (logs["epoch"], logs["step"], logs["val_accuracy"], logs["learning_rate"]) == (3, 30, 0.8, 0.01)


@pytest.mark.parametrize("monitor", ["val_accuracy", "val_loss"])
def test_best_epoch_follows_the_monitor_direction(monitor):
    values = [0.5, 0.7, 0.6, 0.7, 0.9]
    loops, flags = _run(values, monitor)
    # Reference: the running best, strictly better (a tie is not an improvement), by the monitor's direction.
    better = (lambda a, b: a > b) if monitor == "val_accuracy" else (lambda a, b: a < b)
    best, best_epoch, expected = None, 0, []
    for epoch, value in enumerate(values, start=1):
        improved = best is None or better(value, best)
        best, best_epoch = (value, epoch) if improved else (best, best_epoch)
        expected.append((improved, best_epoch))
    assert list(zip(flags, [loop["best_epoch"] for loop in loops], strict=True)) == expected
    fields = {"epoch", "best_epoch", "stopped_early", "best", "early", "data", "history"}
    assert all(set(loop) == fields for loop in loops)
    assert [row["epoch"] for row in loops[-1]["history"]] == [1, 2, 3, 4, 5]  # the rows travel with the state
    assert [loop["epoch"] for loop in loops] == [1, 2, 3, 4, 5]
    assert loops[-1]["data"] == {"class_names": ["a", "b"], "image_shape": [8, 8, 1], "mean": [0.5], "std": [0.25]}
    assert not any(loop["stopped_early"] for loop in loops)  # patience 0: off


def test_early_stopping_counts_epochs_without_an_improvement_of_min_delta():
    # +0.01 is an improvement for the best checkpoint but not for early stopping (min_delta 0.05).
    loops, flags = _run([0.5, 0.51, 0.52, 0.53], patience=2, min_delta=0.05)
    assert flags == [True, True, True, True]
    assert [loop["early"]["patience_count"] for loop in loops] == [0, 1, 2, 3]
    assert [loop["stopped_early"] for loop in loops] == [False, False, True, True]
    np.testing.assert_allclose(loops[-1]["early"]["best_metric"], -0.5)  # higher is better: fed negated
    np.testing.assert_allclose(loops[-1]["best"]["best_metric"], -0.53)


def test_a_loop_state_read_back_from_json_continues_alike():
    values = [0.5, 0.4, 0.6, 0.6, 0.2]
    straight = _run(values, "val_loss", patience=3, min_delta=0.05)
    resumed = _run(values, "val_loss", patience=3, min_delta=0.05, resume_each_epoch=True)
    assert straight == resumed


class RecordingStore:
    def __init__(self, best_step=None):
        self.saves, self.best_step = [], best_step

    def save(self, which, step, state, loop):
        self.saves.append((which, step))

    def wait(self, which=None):
        self.saves.append(("wait", which))

    def latest_step(self, which):
        return self.best_step if which == BEST else None

    def restore(self, which, state):
        return "restored", {}


def test_save_epoch_writes_best_only_when_improved():
    store = RecordingStore()
    epoch_end.save_epoch(store, 10, "state", {}, improved=True)
    epoch_end.save_epoch(store, 20, "state", {}, improved=False)
    # The best checkpoint is complete before the latest one is started (a kill in between keeps both consistent).
    assert store.saves == [(BEST, 10), ("wait", BEST), (LATEST, 10), (LATEST, 20)]


def test_best_state_falls_back_to_the_current_state_without_a_best_checkpoint():
    state = types.SimpleNamespace(step=np.int32(30))
    assert epoch_end.best_state(RecordingStore(best_step=10), state) == ("restored", 10)
    assert epoch_end.best_state(RecordingStore(best_step=None), state) == (state, 30)
