"""Importing dl4cv_jax changes no global state; `process.configure_process` is the one place that does, and a seed
means the same numbers whether a run starts from main.py or from `train_and_evaluate` in a notebook."""

import csv
import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

_ENVIRONMENT = {k: v for k, v in os.environ.items() if k not in ("JAX_THREEFRY_PARTITIONABLE", "XLA_FLAGS")}


def _run(code: str, *args: str, timeout: int = 120) -> str:
    """`code` in a fresh interpreter, without the variables an earlier import or set-up may have set."""
    command = [sys.executable, "-c", textwrap.dedent(code), *args]
    result = subprocess.run(command, cwd=REPO, env=_ENVIRONMENT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_importing_every_module_changes_no_jax_setting_and_no_environment_variable():
    code = """
        import importlib, os, pkgutil, jax
        import clu.metric_writers, matplotlib.pyplot, orbax.checkpoint, tensorflow, tensorflow_datasets  # their own
        environ, threefry = dict(os.environ), jax.config.jax_threefry_partitionable
        import dl4cv_jax
        modules = [m.name for m in pkgutil.walk_packages(dl4cv_jax.__path__, "dl4cv_jax.")]
        for name in modules:
            importlib.import_module(name)
        changed = sorted(k for k in environ.keys() | os.environ.keys() if environ.get(k) != os.environ.get(k))
        print(len(modules), threefry == jax.config.jax_threefry_partitionable, changed)
    """
    count, same_threefry, changed = _run(code).split(" ", 2)
    assert int(count) > 60  # every module of the package, the CPU backend's included
    assert same_threefry == "True" and changed == "[]", (same_threefry, changed)


def test_configure_process_is_what_sets_the_prng():
    code = """
        import jax
        from dl4cv_jax.process import configure_process
        before = jax.config.jax_threefry_partitionable
        configure_process()
        print(before, jax.config.jax_threefry_partitionable)
    """
    assert _run(code) == "True False"  # jax's default, then the classic threefry


def test_the_start_up_modules_do_not_load_jax():
    # main.py's restart under jemalloc must happen before jax is imported (its import would be thrown away).
    code = "import sys, dl4cv_jax.process, dl4cv_jax.backends.cpu.allocator; print('jax' in sys.modules)"
    assert _run(code) == "False"


_NOTEBOOK = """
    import sys
    import jax
    jax.random.normal(jax.random.key(0), (3,))  # the notebook used jax before: XLA_FLAGS are read already
    from configs.digits_cnn import get_config
    from dl4cv_jax.train.loop import train_and_evaluate
    config = get_config()
    config.num_epochs, config.data.max_train_examples = 1, 400
    train_and_evaluate(config, sys.argv[1], show_progress=False)
"""


def _history(workdir) -> list[dict[str, str]]:
    with open(workdir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "images_per_second")} for row in rows]


def test_a_seed_means_the_same_numbers_from_main_and_from_a_notebook(tmp_path):
    flags = ["--config=configs/digits_cnn.py", "--config.num_epochs=1", "--config.data.max_train_examples=400"]
    command = [sys.executable, "main.py", *flags, f"--workdir={tmp_path / 'main'}"]
    subprocess.run(command, cwd=REPO, env=_ENVIRONMENT, check=True, capture_output=True, timeout=300)
    _run(_NOTEBOOK, str(tmp_path / "notebook"), timeout=300)
    from_main, from_notebook = _history(tmp_path / "main"), _history(tmp_path / "notebook")
    assert len(from_main) == 1 and from_main == from_notebook
