"""Warm start from one of our own runs (`config.model.init_from`, train/warm_start.py): its best checkpoint exactly,
a fresh head for another class count, and one clear line when there is nothing to start from."""

import logging

import jax
import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data
from dl4cv_jax.train.checkpoints import BEST, CheckpointStore
from dl4cv_jax.train.finetune import param_path
from dl4cv_jax.train.loop import build_trainer, train_and_evaluate
from dl4cv_jax.train.warm_start import initial_variables
from tests.conftest import tiny_digits_config


def _flat(tree):
    return {param_path(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir trained for 1 epoch on digits, and its best checkpoint's params and BatchNorm statistics."""
    workdir = tmp_path_factory.mktemp("source_run")
    config = tiny_digits_config(num_epochs=1)
    train_and_evaluate(config, workdir, show_progress=False)
    _, template = build_trainer(config, load_data(config))
    store = CheckpointStore(workdir)
    best, _ = store.restore(BEST, template)
    store.close()
    return workdir, _flat(best.params), _flat(best.batch_stats)


def _initial(config):
    _, state = build_trainer(config, load_data(config))
    return _flat(state.params), _flat(state.batch_stats)


def test_init_from_starts_exactly_from_the_best_checkpoint(trained):
    workdir, best_params, best_stats = trained
    config = tiny_digits_config(seed=7)  # another seed: a fresh init would differ everywhere
    config.model.init_from = str(workdir)
    params, stats = _initial(config)
    assert params.keys() == best_params.keys() and stats.keys() == best_stats.keys()
    for name in params:
        np.testing.assert_array_equal(params[name], best_params[name], err_msg=name)
    for name in stats:
        np.testing.assert_array_equal(stats[name], best_stats[name], err_msg=name)
    fresh, _ = _initial(tiny_digits_config(seed=7))
    assert not np.array_equal(fresh["conv1_1/kernel"], best_params["conv1_1/kernel"])


# warm_start._head falls back to "the last top-level params entry" for families without a torch layout (cnn, lenet,
# mlp, ...), but create_train_state initialises under jax.jit, which returns the dict with sorted keys: for cnn
# the "head" found is norm2_2, and the new fc is refused as mis-shaped.
def test_another_class_count_keeps_a_fresh_head_and_says_so(trained, caplog):
    workdir, best_params, best_stats = trained
    # 4 classes of 8x8x1 images: the backbone fits the digits run, the classifier does not.
    config = tiny_digits_config(data__source="synthetic", data__synthetic_classes=4, data__synthetic_shape=(8, 8, 1))
    config.model.init_from = str(workdir)
    with caplog.at_level(logging.INFO, logger="absl"):
        params, stats = _initial(config)
    config.model.init_from = ""
    fresh, _ = _initial(config)
    assert params["fc/kernel"].shape == (16, 4)
    np.testing.assert_array_equal(params["fc/kernel"], fresh["fc/kernel"])
    np.testing.assert_array_equal(params["fc/bias"], fresh["fc/bias"])
    for name in params.keys() - {"fc/kernel", "fc/bias"}:
        np.testing.assert_array_equal(params[name], best_params[name], err_msg=name)
    for name in stats:
        np.testing.assert_array_equal(stats[name], best_stats[name], err_msg=name)
    messages = [r.getMessage() for r in caplog.records]
    head_lines = [m for m in messages if m.startswith("The class count differs: the classifier keeps its fresh init")]
    assert len(head_lines) == 1 and "fc/kernel" in head_lines[0] and "fc/bias" in head_lines[0], messages
    assert f"Initialised cnn from {workdir} (best checkpoint)" in messages


def test_a_workdir_without_checkpoint_is_a_config_error(tmp_path):
    config = tiny_digits_config()
    config.model.init_from = str(tmp_path / "no_such_run")
    with pytest.raises(ConfigError, match=r"config.model.init_from='.*no_such_run': no best checkpoint in "):
        build_trainer(config, load_data(config))


def test_a_mistyped_workdir_is_not_created(tmp_path):
    config = tiny_digits_config()
    config.model.init_from = str(tmp_path / "no_such_run")
    with pytest.raises(ConfigError):
        initial_variables(config.model, {"params": {}})
    assert not (tmp_path / "no_such_run").exists()


def test_pretrained_and_init_from_together_is_a_config_error(trained):
    config = tiny_digits_config()
    config.model.init_from = str(trained[0])
    config.model.pretrained = "resnet20.th"
    with pytest.raises(
        ConfigError, match=r"config.model.pretrained='resnet20.th' and config.model.init_from=.*set one"
    ):
        build_trainer(config, load_data(config))
