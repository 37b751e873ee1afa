"""Every experiment config trains end to end on a small synthetic stand-in for its data (a file of its own, so
that pytest-xdist can run it beside the other slow files)."""

import importlib

import numpy as np
import pytest

from tests.test_configs import CONFIG_NAMES

LARGE_MODELS = ("resnet50", "resnet18", "vgg16_bn")


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_trains_on_a_small_synthetic_stand_in(name, tmp_path):
    """Each config's own model (a small CNN instead of the large ones), optimizer, schedule, precision, EMA, TTA
    and pipeline run end to end for a few steps, on 32x32 (or smaller) synthetic images: a combination that
    crashes (as EMA with the donated train state once did for fast_cifar) fails here, not in a user's first hour."""
    from dl4cv_jax.train.loop import train_and_evaluate

    config = importlib.import_module(f"configs.{name}").get_config()
    if config.model.name in LARGE_MODELS:  # compiling them costs a minute each here; tests/models covers them
        config.model.name, config.model.width = "cnn", 8
    size = min(config.data.image_size or 32, 32)
    config.data.source = "synthetic"
    config.data.synthetic_shape = (size, size, config.data.channels or 3)
    config.data.image_size = 0
    config.data.synthetic_examples = 16
    config.data.synthetic_classes = 4
    config.batch_size = 8
    config.num_epochs = 2  # two steps per epoch
    config.schedule.warmup_epochs = min(config.schedule.warmup_epochs, 1.0)
    test = train_and_evaluate(config, tmp_path, show_progress=False)
    assert test["num_examples"] == 4 and 0 <= test["accuracy"] <= 1 and np.isfinite(test["loss"])
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert len(history) == 1 + config.num_epochs
