"""The training loop on tiny digits runs: files written, resume, best vs latest, early stopping, NaN, callbacks."""

import json
import math

import jax
import numpy as np
import optax
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data
from dl4cv_jax.train import callbacks as callbacks_lib
from dl4cv_jax.train import loop as loop_lib
from dl4cv_jax.train.checkpoints import BEST, LATEST, CheckpointStore
from dl4cv_jax.train.loop import TrainingDivergedError, build_trainer, train_and_evaluate
from tests.conftest import tiny_digits_config


class StopAfterEpoch(callbacks_lib.Callback):
    """Simulates a run killed right after an epoch ended (and its checkpoint was written)."""

    class Killed(Exception):
        pass

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            raise self.Killed


def strip(rows):
    """History rows without their timings, which differ between any two runs."""
    return [{k: v for k, v in r.items() if "second" not in k} for r in rows]


def _restore_params(workdir, config, which=LATEST):
    trainer, state = build_trainer(config, load_data(config))
    store = CheckpointStore(workdir)
    restored, loop = store.restore(which, state)
    store.close()
    return jax.device_get(restored), loop


def test_run_writes_every_file_and_learns(tmp_path):
    config = tiny_digits_config()
    batches = callbacks_lib.BatchLossHistory()
    test = train_and_evaluate(config, tmp_path, callbacks=[batches], show_progress=False)

    history = callbacks_lib.read_history(tmp_path / "history.csv")
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]
    assert list(history[0]) == list(callbacks_lib.HISTORY_FIELDS)
    assert float(history[-1]["val_accuracy"]) > 0.8  # 10 classes: chance is 0.1
    saved = json.loads((tmp_path / "test_metrics.json").read_text())
    assert set(saved) == {"accuracy", "loss", "checkpoint_step", "num_examples"}
    assert saved == test
    assert saved["num_examples"] == load_data(config).num_examples("test") == 359  # 20% of 1,797, stratified
    assert json.loads((tmp_path / "config.json").read_text())["model"]["width"] == 8
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["seed"] == 0 and "jax" in info["packages"] and info["devices"]
    assert json.loads((tmp_path / "class_names.json").read_text()) == [str(i) for i in range(10)]
    assert list(tmp_path.glob("events.out.tfevents.*")), "no TensorBoard event file"

    # The per-batch callback saw every step, and its losses average to each epoch's train_loss.
    steps_per_epoch = int(history[0]["step"])
    assert len(batches.losses) == 3 * steps_per_epoch
    for epoch, row in enumerate(history):
        mean = np.mean(batches.losses[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch])
        assert mean == pytest.approx(float(row["train_loss"]), rel=1e-5)


@pytest.mark.parametrize(("monitor", "pick"), [("val_accuracy", np.argmax), ("val_loss", np.argmin)])
def test_the_best_checkpoint_is_the_best_epoch_of_the_monitored_metric(tmp_path, monitor, pick):
    # A learning rate high enough that the metric is not monotone gives best and latest different steps.
    config = tiny_digits_config(num_epochs=4, checkpoint__monitor=monitor, schedule__name="constant")
    config.optimizer.learning_rate = 0.3
    test = train_and_evaluate(config, tmp_path, show_progress=False)
    history = callbacks_lib.read_history(tmp_path / "history.csv")
    values = [float(r[monitor]) for r in history]
    best_row = history[int(pick(values))]  # the first of equal values, as a tracker that needs improvement keeps
    worst = np.argmin if pick is np.argmax else np.argmax
    assert pick(values) != worst(values), f"{monitor} cannot tell best from worst: {values}"
    assert test["checkpoint_step"] == int(best_row["step"])
    trainer, state = build_trainer(config, load_data(config))
    store = CheckpointStore(tmp_path)
    assert store.latest_step(LATEST) == int(history[-1]["step"])
    assert store.latest_step(BEST) == int(best_row["step"]), (monitor, values)
    best, _ = store.restore(BEST, state)
    store.close()
    # test_metrics.json scores the best epoch's weights: they give that epoch's validation numbers again.
    again = loop_lib.evaluate(trainer, best, "val")
    assert again[monitor.removeprefix("val_")] == pytest.approx(float(best_row[monitor]), rel=1e-6)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    config = tiny_digits_config(num_epochs=3, model__dropout_rate=0.3)
    config.data.augment = ("crop", "flip")
    config.data.crop_padding = 1
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train_and_evaluate(config, straight, show_progress=False)
    with pytest.raises(StopAfterEpoch.Killed):
        train_and_evaluate(config, interrupted, callbacks=[StopAfterEpoch(1)], show_progress=False)
    assert len(callbacks_lib.read_history(interrupted / "history.csv")) == 1
    train_and_evaluate(config, interrupted, show_progress=False)

    a, loop_a = _restore_params(straight, config)
    b, loop_b = _restore_params(interrupted, config)
    untimed = lambda loop: {**loop, "history": strip(loop["history"])}  # noqa: E731
    assert untimed(loop_a) == untimed(loop_b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    rows_a = callbacks_lib.read_history(straight / "history.csv")
    rows_b = callbacks_lib.read_history(interrupted / "history.csv")
    assert strip(rows_a) == strip(rows_b)
    info = json.loads((interrupted / "run_info.json").read_text())
    assert len(info["resumes"]) == 1


def test_non_finite_loss_stops_with_clear_message_and_keeps_best(tmp_path, monkeypatch):
    # A schedule that jumps to 1e30 after epoch 1: epoch 1 trains and is checkpointed, epoch 2 explodes.
    def exploding_schedule(config, steps_per_epoch, num_epochs):
        return optax.piecewise_constant_schedule(0.05, {steps_per_epoch: 1e30 / 0.05})

    monkeypatch.setattr(loop_lib.schedules, "make_schedule", exploding_schedule)
    config = tiny_digits_config(num_epochs=3)
    config.optimizer.name = "sgd"
    with pytest.raises(TrainingDivergedError, match=r"loss became (nan|inf) at step \d+"):
        train_and_evaluate(config, tmp_path, show_progress=False)
    history = callbacks_lib.read_history(tmp_path / "history.csv")
    assert len(history) == 1
    store = CheckpointStore(tmp_path)
    assert store.latest_step(BEST) == store.latest_step(LATEST) == int(history[0]["step"])
    store.close()
    assert not (tmp_path / "test_metrics.json").exists()


def test_workdir_with_another_config_is_refused_and_untouched(tmp_path):
    train_and_evaluate(tiny_digits_config(num_epochs=1), tmp_path, show_progress=False)
    before = (tmp_path / "history.csv").read_text(), (tmp_path / "config.json").read_text()
    other = tiny_digits_config(num_epochs=1)
    other.optimizer.learning_rate = 0.01
    with pytest.raises(ConfigError, match=r"optimizer.learning_rate: 0.05 -> 0.01"):
        train_and_evaluate(other, tmp_path, show_progress=False)
    assert ((tmp_path / "history.csv").read_text(), (tmp_path / "config.json").read_text()) == before


def test_reduce_on_plateau_lowers_the_logged_learning_rate(tmp_path):
    config = tiny_digits_config(num_epochs=4, schedule__name="reduce_on_plateau")
    config.optimizer.learning_rate = 1e-9  # nothing improves, so the plateau schedule must cut the rate
    config.schedule.plateau_patience = 1
    config.schedule.plateau_factor = 0.5
    config.schedule.plateau_min_delta = 0.05
    train_and_evaluate(config, tmp_path, show_progress=False)
    rates = [float(r["learning_rate"]) for r in callbacks_lib.read_history(tmp_path / "history.csv")]
    assert rates[0] == pytest.approx(1e-9)
    assert rates[-1] < rates[0] and all(math.isfinite(r) for r in rates)
