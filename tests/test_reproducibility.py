"""Same config and seed -> identical history.csv and final parameters on CPU; `reproduce` re-runs a workdir's
config.json and reports whether the two runs match."""

import json

import jax
import numpy as np

from dl4cv_jax.data import load_data
from dl4cv_jax.reproduce import TIMING_COLUMNS, compare_runs, reproduce
from dl4cv_jax.train.callbacks import read_history
from dl4cv_jax.train.checkpoints import LATEST, CheckpointStore
from dl4cv_jax.train.loop import build_trainer, check_config, train_and_evaluate
from dl4cv_jax.train.run_files import load_run_config
from tests.conftest import tiny_digits_config


def _latest_states(config, *workdirs):
    """Restores each workdir's latest checkpoint into a freshly built state (independently of dl4cv_jax.reproduce)."""
    _, target = build_trainer(config, load_data(config))
    states = []
    for workdir in workdirs:
        store = CheckpointStore(workdir)
        state, _ = store.restore(LATEST, target)
        store.close()
        states.append(jax.device_get({"params": state.params, "batch_stats": state.batch_stats}))
    return states


def test_two_runs_with_the_same_config_and_seed_are_identical(tmp_path):
    # Dropout and augmentation on, so every random stream (init, data order, crops, flips, dropout) is covered.
    config = tiny_digits_config(
        num_epochs=2, model__dropout_rate=0.2, data__augment=("crop", "flip"), data__crop_padding=2
    )
    first, second = tmp_path / "run", tmp_path / "run_reproduce"
    train_and_evaluate(config, first, show_progress=False)
    report = reproduce(first)  # trains the saved config.json again, into run_reproduce

    assert json.loads((first / "config.json").read_text()) == json.loads((second / "config.json").read_text())
    rows = [read_history(w / "history.csv") for w in (first, second)]
    strip = lambda history: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in history]
    assert len(rows[0]) == 2 and strip(rows[0]) == strip(rows[1])
    assert (first / "test_metrics.json").read_text() == (second / "test_metrics.json").read_text()
    state_a, state_b = _latest_states(config, first, second)
    assert jax.tree.structure(state_a) == jax.tree.structure(state_b)
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(a, b)

    assert report["matches"] and report["reproduction"] == str(second)
    assert report["max_abs_diff"]["params_and_batch_stats"] == 0.0
    assert json.loads((second / "reproduce.json").read_text())["matches"]

    # The comparison notices a difference (here: one validation loss changed by 1e-3).
    history = (second / "history.csv").read_text().splitlines()
    header, row = history[0].split(","), history[1].split(",")
    column = header.index("val_loss")
    row[column] = repr(float(row[column]) + 1e-3)
    (second / "history.csv").write_text("\n".join([history[0], ",".join(row), *history[2:]]) + "\n")
    differs = compare_runs(first, second)
    assert not differs["matches"]
    assert abs(differs["max_abs_diff"]["history"]["val_loss"] - 1e-3) < 1e-9
    assert compare_runs(first, second, atol=2e-3)["matches"]


def test_config_json_reads_back_as_the_config(tmp_path):
    config = tiny_digits_config(data__augment=("crop", "flip"), data__mean=(0.5,), data__std=(0.25,))
    (tmp_path / "config.json").write_text(config.to_json())
    loaded = load_run_config(tmp_path)
    assert loaded.to_json() == config.to_json()
    assert loaded.data.augment == ("crop", "flip") and loaded.model.hidden_sizes == (256, 128)


def test_an_older_config_json_loads_over_todays_defaults(tmp_path):
    # Written before `backend` existed, with a field since removed: the default fills the one in, the other is
    # kept as saved (no code reads it), and the config passes the checks a run makes before training.
    config = tiny_digits_config(data__augment=("crop",))
    saved = json.loads(config.to_json())
    del saved["backend"], saved["data"]["crop_padding"]
    saved["materialize_conv_inputs"] = True
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = load_run_config(tmp_path)
    assert loaded.backend == tiny_digits_config().backend
    assert loaded.data.crop_padding == tiny_digits_config().data.crop_padding
    assert loaded.materialize_conv_inputs is True and loaded.data.augment == ("crop",)
    check_config(loaded)
