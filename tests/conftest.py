"""Shared test fixtures: tiny configs that train in seconds, and the real CIFAR-10 JPEG folder."""

import os
import pathlib
import tarfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR_TAR = pathlib.Path(os.environ.get("DL4CV_CIFAR10_TAR", REPO.parent / "shared" / "data" / "cifar10_jpeg.tar.gz"))


def tiny_digits_config(**overrides):
    """A digits run that compiles and trains in a few seconds (8-channel CNN, batch 64)."""
    from configs import default

    config = default.get_config()
    config.data.source = "digits"
    config.model.name = "cnn"
    config.model.width = 8
    config.batch_size = 64
    config.num_epochs = 3
    config.log_every_steps = 5
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.05
    config.schedule.name = "cosine"
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split("__")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


@pytest.fixture
def digits_config():
    return tiny_digits_config


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory) -> pathlib.Path:
    """CIFAR-10 JPEG class folders extracted once per test session from ../shared/data."""
    if not CIFAR_TAR.exists():
        pytest.skip(f"CIFAR-10 archive not found at {CIFAR_TAR} (set DL4CV_CIFAR10_TAR)")
    root = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(CIFAR_TAR) as archive:
        archive.extractall(root, filter="data")
    return root
