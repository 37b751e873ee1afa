"""Sweeps: many trainings of one base config with different overrides and seeds, run in parallel and summarised.

sweep = load_sweep("experiments/optimizers.py")   # a file with get_sweep() -> Sweep
run_sweep(sweep, "runs/optimizers", workers=2)    # trials in runs/optimizers/<name>; then results.{csv,md,png}
aggregate("runs/optimizers")                      # results.{csv,md,png} again, for any sweep directory
"""

from typing import Any

from dl4cv_jax.sweep.definition import Sweep, Trial, load_sweep, product, zipped

__all__ = ["Sweep", "Trial", "aggregate", "load_sweep", "product", "run_sweep", "zipped"]


def __getattr__(name: str) -> Any:
    # run_sweep and aggregate load on first use: sweep files import this package for Sweep and the helpers only,
    # and `python -m dl4cv_jax.sweep.aggregate` must not find its own module imported already.
    if name == "run_sweep":
        from dl4cv_jax.sweep.runner import run_sweep

        return run_sweep
    if name == "aggregate":
        from dl4cv_jax.sweep.aggregate import aggregate

        return aggregate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
