"""Every experiment config loads, derives from default.py, and names things the registries know."""

import dataclasses
import importlib
import pathlib

import pytest

from configs import default
from dl4cv_jax import losses, optim, schedules
from dl4cv_jax.lr_find import LRFindSettings
from dl4cv_jax.models import MODELS

CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_NAMES = sorted(p.stem for p in CONFIGS_DIR.glob("*.py") if p.stem not in ("__init__", "default", "cifar_common"))
# Sections default.py leaves out on purpose, and the fields each may set (read with settings_from_config).
OPTIONAL_SECTIONS = {"lr_find": {f.name for f in dataclasses.fields(LRFindSettings)}}
REQUIRED = [
    "model.name",
    "data.source",
    "data.name",
    "data.dir",
    "data.image_size",
    "data.max_train_examples",
    "batch_size",
    "num_epochs",
    "optimizer.name",
    "optimizer.learning_rate",
    "schedule.name",
    "loss",
    "seed",
    "checkpoint.monitor",
    "early_stopping.patience",
]


def key_paths(tree, prefix=""):
    """Every leaf of a nested dict as a dotted path ("optimizer.learning_rate"); an empty section is a leaf."""
    paths = set()
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            paths |= key_paths(value, f"{prefix}{key}.")
        else:
            paths.add(f"{prefix}{key}")
    return paths


def _optional(path):
    section, _, field = path.partition(".")
    return section in OPTIONAL_SECTIONS and (field == "" or field in OPTIONAL_SECTIONS[section])


def _get(config, dotted):
    for name in dotted.split("."):
        config = config[name]
    return config


def test_the_issue_configs_exist():
    assert set(CONFIG_NAMES) >= {
        "digits_cnn",
        "lenet_mnist",
        "mlp_fashion_mnist",
        "cnn_cifar",
        "vgg_cifar",
        "resnet_cifar",
        "resnet20_cifar",
        "resnet50_imagenet",
    }


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_is_complete_and_valid(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    for key in REQUIRED:
        _get(config, key)
    # Every field, at every depth, is one default.py defines (a typo such as optimizer.learnng_rate would
    # otherwise be silently ignored), and none of default's fields was deleted.
    paths, expected = key_paths(config.to_dict()), key_paths(default.get_config().to_dict())
    unknown = {path for path in paths - expected if not _optional(path)}
    assert not unknown, f"configs/{name}.py sets fields that configs/default.py does not define: {sorted(unknown)}"
    assert not expected - paths, f"configs/{name}.py lacks default fields: {sorted(expected - paths)}"
    assert config.model.name in MODELS
    assert config.optimizer.name in optim.OPTIMIZERS
    assert config.schedule.name in schedules.SCHEDULES
    assert config.loss in losses.LOSSES
    assert config.data.source in ("tfds", "folder", "digits", "synthetic")
