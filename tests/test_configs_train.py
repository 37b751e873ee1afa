"""Quick runs: every shipped config trains for one short epoch (`--config.num_epochs=1`), in-process, on a small
synthetic stand-in for its data (a file of its own, so that pytest-xdist can run it beside the other slow files).

The data is offline and tiny (the CIFAR configs read ../shared/data's JPEG folders, MNIST / Fashion-MNIST /
ImageNet come through tfds); each config keeps its optimizer, schedule with its warmup, augmentation, precision,
EMA, TTA and pipeline, and its model unless that is one of the large ones below.
"""

import csv
import importlib
import json
import logging
import math
import pathlib

import pytest

CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
# Every file with a get_config (default.py too: it is a runnable config); __init__ and cifar_common are helpers.
QUICK_RUN_CONFIGS = sorted(p.stem for p in CONFIGS_DIR.glob("*.py") if "def get_config(" in p.read_text())
# Compiling these takes 40-130 s each here (ResNet-50 130 s, ResNet-18 70 s, VGG-16-BN 40 s at 32x32, batch 16,
# measured 2026-12-03 on 2 cores): a small CNN stands in; tests/models covers their definitions.
LARGE_MODELS = ("resnet50", "resnet18", "vgg16_bn")
# The shape of each config's own images (data.name, or data.source for digits); ImageNet's 224 costs too much.
SHAPES = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def quick_config(name: str):
    """configs/<name>.py with --config.num_epochs=1 and two steps of 8 synthetic images of its own shape."""
    config = importlib.import_module(f"configs.{name}").get_config()
    if config.model.name in LARGE_MODELS:
        config.model.name, config.model.width = "cnn", 8
    config.data.synthetic_shape = SHAPES.get(config.data.name or config.data.source, (32, 32, 3))
    config.data.source, config.data.image_size = "synthetic", 0
    config.data.synthetic_examples, config.data.synthetic_classes = 16, 4
    config.batch_size = 8  # 2 steps per epoch: a shortened warmup of half the run is 1 step, then the schedule
    config.num_epochs = 1
    return config


def test_every_config_is_listed():
    assert "cifar_common" not in QUICK_RUN_CONFIGS and "__init__" not in QUICK_RUN_CONFIGS
    assert {"default", "digits_cnn", "cnn_cifar", "resnet20_cifar", "resnet50_imagenet"} <= set(QUICK_RUN_CONFIGS)


@pytest.mark.parametrize("name", QUICK_RUN_CONFIGS)
def test_config_runs_one_quick_epoch(name, tmp_path, caplog):
    from dl4cv_jax.train.loop import train_and_evaluate

    config = quick_config(name)
    warmup = config.schedule.warmup_epochs
    with caplog.at_level(logging.WARNING):
        test = train_and_evaluate(config, tmp_path, show_progress=False)
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    assert math.isfinite(float(rows[0]["train_loss"])) and math.isfinite(float(rows[0]["val_loss"]))
    saved = json.loads((tmp_path / "test_metrics.json").read_text())
    assert math.isfinite(saved["loss"]) and 0 <= saved["accuracy"] <= 1 and saved["loss"] == pytest.approx(test["loss"])
    shortened = f"config.schedule.warmup_epochs={warmup} is not below num_epochs=1: using 0.5"
    assert (shortened in caplog.text) == (warmup >= 1), caplog.text[-2000:]
