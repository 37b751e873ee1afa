"""End-to-end on real data: CIFAR-10 JPEG folders from ../shared/data, a stratified subset, a small CNN."""

import json

import pytest

from configs import cnn_cifar
from dl4cv_jax.train.loop import train_and_evaluate


@pytest.mark.e2e
def test_cifar10_folder_subset_learns(cifar10_dir, tmp_path):
    config = cnn_cifar.get_config()
    config.data.dir = str(cifar10_dir)
    config.data.max_train_examples = 3000
    config.model.width = 16
    config.num_epochs = 4
    config.batch_size = 100
    test = train_and_evaluate(config, tmp_path, show_progress=False)
    assert test["num_examples"] == 10000  # the whole test folder, every image once
    assert test["accuracy"] > 0.30  # chance is 0.10
    assert json.loads((tmp_path / "class_names.json").read_text())[:3] == ["airplane", "automobile", "bird"]
