"""`--mode=reproduce`: train a finished workdir's config.json again in a new workdir and say whether it matches.

What must match: every history.csv column except the timings (epoch_seconds, images_per_second), the test
metrics, and the final parameters and BatchNorm statistics (latest checkpoints). On a CPU with the same
versions they match bit for bit; on a GPU some XLA kernels (scatter, some reductions and convolution
algorithms) are not deterministic unless `XLA_FLAGS=--xla_gpu_deterministic_ops=true` (see README,
"Sweeps, reproducibility and debugging"), so compare with a tolerance there (`atol`).

The config trained is config.json over today's defaults (`run_files.load_run_config`, as evaluation reads it): a
run written by today's code trains exactly its saved config, and one written before a field was added still runs.
"""

import math
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from dl4cv_jax.train.callbacks import read_history
from dl4cv_jax.train.loop import train_and_evaluate
from dl4cv_jax.train.run_files import load_run_config, read_json, write_json

TIMING_COLUMNS = ("epoch_seconds", "images_per_second")


def reproduction_workdir(workdir: pathlib.Path) -> pathlib.Path:
    """`<workdir>_reproduce`, `_reproduce2`, ...: the first one not finished yet (so an interrupted reproduction
    resumes, and a finished one is never overwritten)."""
    for k in range(1, 1000):
        candidate = workdir.with_name(f"{workdir.name}_reproduce{k if k > 1 else ''}")
        if not (candidate / "test_metrics.json").exists():
            return candidate
    raise FileExistsError(f"999 reproductions of {workdir} already exist")


def _history_differences(a: pathlib.Path, b: pathlib.Path) -> tuple[dict[str, float], int, int]:
    rows_a, rows_b = read_history(a / "history.csv"), read_history(b / "history.csv")
    common = min(len(rows_a), len(rows_b))
    columns = [c for c in (rows_a[0] if rows_a else {}) if c not in TIMING_COLUMNS]
    diffs = {}
    for column in columns:
        values_a = np.asarray([float(r[column]) for r in rows_a[:common]])
        values_b = np.asarray([float(r[column]) for r in rows_b[:common]])
        diffs[column] = float(np.max(np.abs(values_a - values_b))) if common else 0.0
    return diffs, len(rows_a), len(rows_b)


def final_state(workdir: pathlib.Path) -> dict[str, Any]:
    """The latest checkpoint's saved state (params, batch_stats, ...) as host arrays, without building a model."""
    latest = pathlib.Path(workdir) / "checkpoints" / "latest"
    steps = sorted((p for p in latest.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {latest}")
    with ocp.StandardCheckpointer() as checkpointer:
        return jax.device_get(checkpointer.restore((steps[-1] / "state").absolute()))


def _state_difference(a: pathlib.Path, b: pathlib.Path) -> float:
    state_a, state_b = final_state(a), final_state(b)
    trees = [{k: s[k] for k in ("params", "batch_stats")} for s in (state_a, state_b)]
    if jax.tree.structure(trees[0]) != jax.tree.structure(trees[1]):
        return math.inf
    leaves = zip(jax.tree.leaves(trees[0]), jax.tree.leaves(trees[1]), strict=True)
    return max((float(np.max(np.abs(np.asarray(x) - np.asarray(y)), initial=0.0)) for x, y in leaves), default=0.0)


def compare_runs(original: str | pathlib.Path, reproduction: str | pathlib.Path, atol: float = 0.0) -> dict[str, Any]:
    """Largest absolute differences between two workdirs (history, test metrics, final state) and whether all
    are within `atol` (0 = bit-identical)."""
    original, reproduction = pathlib.Path(original), pathlib.Path(reproduction)
    history, epochs_a, epochs_b = _history_differences(original, reproduction)
    test_a, test_b = (read_json(w / "test_metrics.json") for w in (original, reproduction))
    test = {key: abs(float(test_a[key]) - float(test_b[key])) for key in ("accuracy", "loss")}
    state = _state_difference(original, reproduction)
    worst = max([*history.values(), *test.values(), state])
    return {
        "original": str(original),
        "reproduction": str(reproduction),
        "atol": atol,
        "epochs": [epochs_a, epochs_b],
        "max_abs_diff": {"history": history, "test": test, "params_and_batch_stats": state},
        "matches": bool(epochs_a == epochs_b and worst <= atol),
    }


def reproduce(
    workdir: str | pathlib.Path, new_workdir: str | pathlib.Path | None = None, atol: float = 0.0
) -> dict[str, Any]:
    """Re-runs `workdir/config.json` into `new_workdir` (default: see `reproduction_workdir`), compares the two
    runs, writes the report to `new_workdir/reproduce.json` and returns it."""
    workdir = pathlib.Path(workdir)
    for name in ("config.json", "history.csv", "test_metrics.json"):
        if not (workdir / name).exists():
            raise FileNotFoundError(f"{workdir / name} not found: --mode=reproduce needs a finished workdir")
    new_workdir = pathlib.Path(new_workdir) if new_workdir else reproduction_workdir(workdir)
    config = load_run_config(workdir)  # over today's defaults, so an older workdir still trains
    logging.info("reproducing %s in %s", workdir, new_workdir)
    train_and_evaluate(config, new_workdir)
    report = compare_runs(workdir, new_workdir, atol)
    write_json(new_workdir / "reproduce.json", report)
    diffs = report["max_abs_diff"]
    logging.info(
        "reproduction %s: max |difference| history %.3g, test %.3g, parameters %.3g (atol %g)",
        "MATCHES" if report["matches"] else "DIFFERS",
        max(diffs["history"].values(), default=0.0),
        max(diffs["test"].values()),
        diffs["params_and_batch_stats"],
        atol,
    )
    return report
