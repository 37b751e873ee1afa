"""Shared test fixtures: tiny configs that train in seconds, and the real CIFAR-10 JPEG folder."""

import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR_TAR = pathlib.Path(os.environ.get("DL4CV_CIFAR10_TAR", REPO.parent / "shared" / "data" / "cifar10_jpeg.tar.gz"))
# A folder for the XLA compilation cache of this test session's processes, or "off"; see pytest_configure.
COMPILATION_CACHE = "DL4CV_TEST_COMPILATION_CACHE"
_OWNS_CACHE = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    """One compilation cache for the session's pytest processes (xdist's workers share their controller's), so a
    program that several tests compile alike (a tiny CNN's steps and evaluation, an initialiser) is compiled once.
    Not for the programs the tests start (main.py and the like): some are killed on purpose, maybe mid-write, and
    an entry cut short is read back with a warning on stderr, which those tests read. Set the variable to "off"
    to compile everything afresh."""
    if COMPILATION_CACHE not in os.environ:  # the session's first process: the one that removes the folder
        os.environ[COMPILATION_CACHE] = tempfile.mkdtemp(prefix="dl4cv-test-xla-cache-")
        config.stash[_OWNS_CACHE] = True
    if os.environ[COMPILATION_CACHE] != "off":
        import jax  # before any compilation: jax decides at the first one whether this process uses a cache

        jax.config.update("jax_compilation_cache_dir", os.environ[COMPILATION_CACHE])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_OWNS_CACHE, False):
        shutil.rmtree(os.environ.pop(COMPILATION_CACHE), ignore_errors=True)


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
    if shutil.which("tar"):
        # The tar command: ~5 CPU seconds for the 60,000 files here, where tarfile took ~50 (system time, per member).
        subprocess.run(["tar", "-xzf", str(CIFAR_TAR), "-C", str(root)], check=True)
    else:
        with tarfile.open(CIFAR_TAR) as archive:
            archive.extractall(root, filter="data")
    return root
