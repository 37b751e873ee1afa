"""Importing `dl4cv_jax` fixes jax's threefry setting whichever of the two is imported first, without itself
loading jax (so main.py's restart under jemalloc happens before any jax import)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(code: str) -> str:
    """`code` in a fresh interpreter whose environment lacks the variable this process's import of the package set."""
    environment = {k: v for k, v in os.environ.items() if k != "JAX_THREEFRY_PARTITIONABLE"}
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


@pytest.mark.parametrize("imports", ["import dl4cv_jax, jax", "import jax, dl4cv_jax"])
def test_threefry_is_the_classic_one_in_either_import_order(imports):
    assert _run(f"{imports}; print(jax.config.jax_threefry_partitionable)") == "False"


def test_the_start_up_modules_do_not_load_jax():
    code = "import sys, dl4cv_jax.cpu_allocator, dl4cv_jax.xla_cpu; print('jax' in sys.modules)"
    assert _run(code) == "False"
