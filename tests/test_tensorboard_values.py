"""TensorBoard's event files hold the numbers the run wrote to history.csv and test_metrics.json: every epoch's
scalars at that epoch's step, once, and the test metrics at the step of the checkpoint that was tested.

The events are read back with TensorFlow's own reader, not with anything of ours. clu's writer (used where
TensorFlow is installed) stores a scalar as a float32 tensor, tensorboard.summary.Writer as a `simple_value`:
both are accepted, so the check holds for either writer.
"""

import collections
import json

import numpy as np
import pytest

from dl4cv_jax.train.callbacks import read_history
from dl4cv_jax.train.loop import train_and_evaluate
from tests.conftest import tiny_digits_config

tf = pytest.importorskip("tensorflow")


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value), ...] in the order written, from every event file in `logdir` (not its subfolders)."""
    scalars = collections.defaultdict(list)
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = value.simple_value
                elif value.HasField("tensor") and not value.tensor.tensor_shape.dim:  # a rank-0 tensor
                    number = tf.make_ndarray(value.tensor).item()
                else:
                    continue  # images and the like
                scalars[value.tag].append((event.step, number))
    return dict(scalars)


def test_event_files_hold_the_history_and_test_metrics(tmp_path):
    train_and_evaluate(tiny_digits_config(num_epochs=2), tmp_path, show_progress=False)
    history = read_history(tmp_path / "history.csv")
    tested = json.loads((tmp_path / "test_metrics.json").read_text())
    scalars = read_scalars(tmp_path)

    epoch_fields = [name for name in history[0] if name not in ("epoch", "step")]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(epoch_fields)
    assert set(scalars) == {*epoch_fields, "test_loss", "test_accuracy"}
    steps = [int(row["step"]) for row in history]
    assert len(history) == 2 and steps[1] == 2 * steps[0]  # two epochs of equal length
    for name in epoch_fields:
        assert [step for step, _ in scalars[name]] == steps, name
        expected = [float(row[name]) for row in history]
        # Written as float32 by TensorBoard, as float64 to the CSV.
        np.testing.assert_allclose([value for _, value in scalars[name]], expected, rtol=1e-6, err_msg=name)
    for name in ("loss", "accuracy"):
        [(step, value)] = scalars[f"test_{name}"]
        assert step == tested["checkpoint_step"] and step in steps, (name, step, tested)
        assert value == pytest.approx(tested[name], rel=1e-6), name
