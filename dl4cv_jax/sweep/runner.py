"""Runs a sweep's trials, each as its own `python main.py --mode=train` process, in parallel workers.

Why processes: a trial that crashes (bad value, out of memory, NaN) cannot take the others down, each worker is
given only its own devices before JAX starts (CUDA_VISIBLE_DEVICES on GPUs; a CPU affinity mask on CPUs, which
XLA and tf.data size their thread pools by), and every trial's command line is a plain `main.py` call that can be
copied and re-run by hand.

State lives in the trial directories, so a sweep can be stopped and started again at will:
- finished = `test_metrics.json` exists: skipped on a re-run;
- `trial_status.json` says running / done / failed (with its error line) / interrupted; a trial left "running"
  by a killed sweep is interrupted, and a re-run resumes it from its latest checkpoint (as `main.py` does);
  failed trials are tried again (the failure may have been the machine's);
- `train.log` holds each attempt's output.
"""

import dataclasses
import datetime
import json
import os
import pathlib
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent import futures
from typing import Any

import numpy as np
from absl import logging

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.sweep.aggregate import aggregate, write_text_atomic, write_trial_file
from dl4cv_jax.sweep.definition import Sweep, Trial
from dl4cv_jax.train.run_files import read_json, write_json

MAIN = pathlib.Path(__file__).resolve().parents[2] / "main.py"
STATUS_FILE = "trial_status.json"
_ERROR_LINE = re.compile(r"^(error:|FATAL|[A-Za-z_.]*(Error|Exception|Interrupt)\b)")


@dataclasses.dataclass(frozen=True)
class WorkerSlot:
    """What one worker may use: environment variables (e.g. CUDA_VISIBLE_DEVICES) and CPU cores (None = all)."""

    index: int
    env: Mapping[str, str]
    cpus: tuple[int, ...] | None = None

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.env.items()]
        if self.cpus is not None:
            parts.append(f"cpus={','.join(map(str, self.cpus))}")
        return f"worker {self.index}" + (f" ({' '.join(parts)})" if parts else "")


def worker_slots(workers: int, gpus: Sequence[str], cpus: Sequence[int]) -> list[WorkerSlot]:
    """Splits the machine between `workers`: the GPUs when there are any, else the CPU cores, in even groups.

    On GPUs each worker must get at least one device; on CPUs more workers than cores would share them all,
    but `run_sweep` refuses that first (`check_workers`).
    """
    if workers < 1:
        raise ConfigError(f"--workers={workers} must be >= 1")
    if gpus:
        if workers > len(gpus):
            raise ConfigError(f"--workers={workers} is more than the {len(gpus)} GPUs; use --workers<={len(gpus)}")
        groups = np.array_split(np.asarray(gpus), workers)
        return [WorkerSlot(i, {"CUDA_VISIBLE_DEVICES": ",".join(g)}) for i, g in enumerate(groups)]
    if workers == 1 or workers > len(cpus):
        return [WorkerSlot(i, {}) for i in range(workers)]
    groups = np.array_split(np.asarray(cpus), workers)
    return [WorkerSlot(i, {}, tuple(int(c) for c in g)) for i, g in enumerate(groups)]


def check_workers(workers: int, gpus: Sequence[str], cpus: Sequence[int]) -> None:
    """ConfigError for a --workers the machine cannot give each trial a GPU, or a CPU core, of its own.

    More trial processes than cores finish no sooner than that many (XLA:CPU and tf.data size their thread pools
    by the cores they see, so the processes fight over them), and the trials' times are then not comparable.
    """
    if workers < 1:
        raise ConfigError(f"--workers={workers} must be >= 1")
    if gpus and workers > len(gpus):
        raise ConfigError(f"--workers={workers} is more than the {len(gpus)} GPUs; use --workers<={len(gpus)}")
    if not gpus and workers > len(cpus):
        raise ConfigError(
            f"--workers={workers} is more than the {len(cpus)} CPU cores this process may use (no GPU found); "
            f"use --workers<={len(cpus)}"
        )


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids this process may hand out, found without starting JAX (which would claim GPU memory).

    CUDA_VISIBLE_DEVICES when set, else one id per line of `nvidia-smi -L`, else none.
    """
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def array_task(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(this task, task count) of a SLURM job array; (0, 1) outside one. Task k runs trials k, k+n, k+2n, ..."""
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" not in env:
        return 0, 1
    first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
    count = int(env.get("SLURM_ARRAY_TASK_COUNT", "1"))
    return int(env["SLURM_ARRAY_TASK_ID"]) - first, count


def is_finished(trial_dir: pathlib.Path) -> bool:
    """A trial is finished once its test metrics are written: the loop writes them last."""
    return (trial_dir / "test_metrics.json").exists()


def trial_state(trial_dir: pathlib.Path) -> str:
    """done | failed | interrupted (left running by a sweep that was stopped) | pending (never started)."""
    if is_finished(trial_dir):
        return "done"
    path = trial_dir / STATUS_FILE
    if not path.exists():
        return "pending"
    status = read_json(path).get("status")
    return "interrupted" if status in ("running", "interrupted") else status


def error_line(log_text: str) -> str:
    """The line that says why a run failed: main.py's `error: ...`, absl's `FATAL Flags parsing error: ...`, else
    the exception line, else the last line."""
    lines = [line.strip() for line in log_text.replace("\r", "\n").splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line[:500]
    return lines[-1][:500] if lines else "no output"


def train_command(trial: Trial, base_config: str, trial_dir: pathlib.Path) -> list[str]:
    """The main.py command line that runs `trial`: base config, workdir, then the trial's overrides."""
    return [
        sys.executable,
        str(MAIN),
        "--mode=train",
        f"--config={base_config}",
        f"--workdir={trial_dir.absolute()}",
        *trial.override_args(),
    ]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _Runner:
    """Runs trials on worker slots; remembers the live processes so that Ctrl-C can stop them cleanly."""

    def __init__(self, sweep: Sweep, sweep_dir: pathlib.Path, slots: Sequence[WorkerSlot]):
        self.sweep, self.sweep_dir = sweep, sweep_dir
        self.free: queue.Queue[WorkerSlot] = queue.Queue()
        for slot in slots:
            self.free.put(slot)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.live: dict[str, subprocess.Popen] = {}

    def run(self, trial: Trial) -> dict[str, Any]:
        slot = self.free.get()
        try:
            return self._run_on(trial, slot)
        finally:
            self.free.put(slot)

    def _run_on(self, trial: Trial, slot: WorkerSlot) -> dict[str, Any]:
        trial_dir = self.sweep_dir / trial.name
        trial_dir.mkdir(parents=True, exist_ok=True)
        write_trial_file(trial_dir, trial.name, trial.setting, trial.seed, trial.shown_overrides())
        previous = read_json(trial_dir / STATUS_FILE) if (trial_dir / STATUS_FILE).exists() else {}
        command = train_command(trial, self.sweep.config, trial_dir)
        status = {
            "status": "running",
            "attempts": previous.get("attempts", 0) + 1,
            "wall_seconds": previous.get("wall_seconds", 0.0),
            "started": _now(),
            "worker": slot.describe(),
            "command": command,
        }
        if self.stopping.is_set():
            return {"name": trial.name, **previous, "status": "interrupted"}
        write_json(trial_dir / STATUS_FILE, status)
        logging.info("trial %s: starting on %s", trial.name, slot.describe())
        start = time.perf_counter()
        with (trial_dir / "train.log").open("a") as log:
            log.write(f"\n=== attempt {status['attempts']} at {status['started']}: {' '.join(command)}\n")
            log.flush()
            offset = log.tell()  # this attempt's output starts here
            env = {**os.environ, **slot.env}
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the sweep only, which then stops its trials as interrupted
            )
            _pin(process.pid, slot.cpus)
            with self.lock:
                self.live[trial.name] = process
                if self.stopping.is_set():  # stop() ran while this one was starting
                    process.terminate()
            returncode = process.wait()
            with self.lock:
                self.live.pop(trial.name, None)
        status["wall_seconds"] += time.perf_counter() - start
        status["finished"] = _now()
        status["returncode"] = returncode
        status["status"] = self._outcome(trial_dir, returncode)
        if status["status"] == "failed":
            with (trial_dir / "train.log").open(errors="replace") as log:
                log.seek(offset)
                status["error"] = error_line(log.read())
            if returncode < 0:
                status["error"] = f"killed by signal {-returncode}; last line: {status['error']}"
        write_json(trial_dir / STATUS_FILE, status)
        detail = f": {status['error']}" if "error" in status else ""
        logging.info("trial %s: %s after %.0f s%s", trial.name, status["status"], status["wall_seconds"], detail)
        return {"name": trial.name, **status}

    def _outcome(self, trial_dir: pathlib.Path, returncode: int) -> str:
        if returncode == 0 and is_finished(trial_dir):
            return "done"
        return "interrupted" if self.stopping.is_set() else "failed"

    def stop(self) -> None:
        """Asks every live trial to stop (SIGTERM); their status becomes interrupted, and a re-run resumes them."""
        self.stopping.set()
        with self.lock:
            for process in self.live.values():
                process.terminate()


def _pin(pid: int, cpus: tuple[int, ...] | None) -> None:
    """Pins a just-started trial to its cores. Done from the parent (preexec_fn is unsafe in threads); the child
    is still importing Python then, long before XLA and tf.data size their thread pools by its affinity."""
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:  # the process already exited
            pass


def run_sweep(
    sweep: Sweep,
    sweep_dir: str | pathlib.Path,
    workers: int = 1,
    extra_overrides: Mapping[str, Any] | None = None,
    task: tuple[int, int] = (0, 1),
) -> list[dict[str, Any]]:
    """Runs the unfinished trials of `sweep` in `sweep_dir/<trial name>` with `workers` in parallel, then
    aggregates everything finished so far into results.csv / results.md / results.png.

    `extra_overrides` (e.g. `--config.num_epochs=1` given on the sweep's command line) go to every trial.
    `task` = (k, n) runs only trials k, k+n, ... : one share of a SLURM job array sharing `sweep_dir`.
    Returns the status of each trial this call was responsible for; a failed trial does not stop the others.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    gpus = visible_gpus()
    check_workers(workers, gpus, cpus)  # before anything is written
    if extra_overrides:
        sweep = dataclasses.replace(sweep, fixed={**sweep.fixed, **extra_overrides})
    sweep_dir = pathlib.Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(sweep_dir / "sweep.json", json.dumps(sweep.to_json(), indent=2) + "\n")
    index, count = task
    mine = [trial for i, trial in enumerate(sweep.trials()) if i % count == index]
    todo = [trial for trial in mine if not is_finished(sweep_dir / trial.name)]
    for trial in todo:
        state = trial_state(sweep_dir / trial.name)
        if state != "pending":
            logging.info("trial %s: %s before, running it again", trial.name, state)
    slots = worker_slots(min(workers, max(len(todo), 1)), gpus, cpus)
    logging.info(
        "sweep %s: %d trials here, %d finished, %d to run on %d workers",
        sweep_dir,
        len(mine),
        len(mine) - len(todo),
        len(todo),
        len(slots),
    )
    runner = _Runner(sweep, sweep_dir, slots)
    results = {trial.name: {"name": trial.name, "status": "done"} for trial in mine if trial not in todo}
    with futures.ThreadPoolExecutor(max_workers=len(slots)) as pool:
        pending = {pool.submit(runner.run, trial): trial for trial in todo}
        try:
            for done in futures.as_completed(pending):
                results[pending[done].name] = done.result()
        except KeyboardInterrupt:
            logging.warning("sweep interrupted: stopping the running trials (a re-run resumes them)")
            runner.stop()
            raise
    aggregate(sweep_dir)
    ordered = [results[trial.name] for trial in mine]
    failed = [r for r in ordered if r["status"] != "done"]
    details = "".join(f"\n  {r['name']}: {r['status']}: {r.get('error', '')}" for r in failed)
    logging.info("sweep %s: %d done, %d not done%s", sweep_dir, len(ordered) - len(failed), len(failed), details)
    return ordered
