"""Preemption with real processes: SIGTERM to main.py's process group (as SLURM and cloud VMs send it) in the middle
of epoch 2 stops the run at a step boundary with a checkpoint, one line and status 75; the same command resumes
with the batches the epoch had not seen. `checkpoint.every_steps` saves mid-epoch through the same path: the run
resumed after SIGTERM is SIGKILLed in epoch 3 and resumes from such a checkpoint. The end result is the
uninterrupted run's history (less the timing columns) and test metrics.

The commands are test_faults.py's (killable_run.py prints `step N`); the reference here is a run of its own,
whose compilation cache the other processes share.
"""

import json
import os
import signal
import time

import pytest

from dl4cv_jax.train import callbacks as callbacks_lib
from dl4cv_jax.train.preemption import PREEMPTED_EXIT_STATUS, PreemptionWatch
from tests.train import test_faults
from tests.train.test_faults import FLAGS, STEPS_PER_EPOCH, run_until, start

SIGTERM_AT = STEPS_PER_EPOCH + 6  # the 6th of 16 steps of epoch 2 (not a multiple of every_steps)
EVERY = 5  # checkpoint.every_steps: latest at steps 5, 10, ..., 35, 40 besides the epoch ends
SIGKILL_AT = 2 * STEPS_PER_EPOCH + 9  # epoch 3, after the checkpoints of steps 35 and 40 (the latter maybe unfinished)


def results(workdir):
    rows = callbacks_lib.read_history(workdir / "history.csv")
    history = [{k: v for k, v in row.items() if "second" not in k} for row in rows]
    return history, json.loads((workdir / "test_metrics.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's history and test metrics; it fills the compilation cache the other runs read."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    test_faults.COMPILED.update(
        JAX_COMPILATION_CACHE_DIR=str(workdir / "compiled"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0"
    )
    assert run_until(workdir / "run", workdir / "log.txt", lambda line: False)[1] == 0
    return results(workdir / "run")


def sigterm_at(workdir, log, step, flags):
    """Runs the command and sends SIGTERM to its process group once it prints `step <step>`; returns the exit
    status and the seconds from the signal to the exit (the checkpoint is on disk before the exit)."""
    process = start(workdir, log, flags=flags)
    sent = None
    for line in process.stdout:
        if sent is None and line.strip() == f"step {step}":
            sent = time.perf_counter()
            os.killpg(process.pid, signal.SIGTERM)
    process.stdout.close()
    status = process.wait(timeout=300)
    return status, time.perf_counter() - sent if sent is not None else None


def test_sigterm_saves_at_the_step_and_reruns_continue_with_the_unseen_batches(reference, tmp_path):
    workdir, log = tmp_path / "run", tmp_path / "log.txt"
    flags = [*FLAGS, f"--config.checkpoint.every_steps={EVERY}"]
    status, seconds = sigterm_at(workdir, log, SIGTERM_AT, flags)
    text = log.read_text()
    print(f"SIGTERM at step {SIGTERM_AT}: exit status {status} {seconds:.2f} s later")
    assert status == PREEMPTED_EXIT_STATUS, text[-3000:]
    lines = [line for line in text.splitlines() if line.startswith("preempted")]
    assert len(lines) == 1, text[-3000:]
    # The signal lands a step or so after the `step` line was printed: the step the run stopped at is in the line.
    stopped = int(lines[0].split()[4])
    assert SIGTERM_AT <= stopped < 2 * STEPS_PER_EPOCH, lines
    saved = workdir / "checkpoints" / "latest" / str(stopped)
    assert lines[0] == (
        f"preempted (SIGTERM) at step {stopped} of epoch 2: saved {saved}; run the same command again to resume"
    )
    assert "Traceback" not in text and "error:" not in text, text[-3000:]
    loop = json.loads((saved / "loop" / "metadata").read_text())
    assert loop["epoch"] == 1 and len(loop["epoch_steps"]["loss"]) == stopped - STEPS_PER_EPOCH, loop

    # The same command resumes after step 6 of epoch 2; SIGKILLed in epoch 3, after every_steps' steps 35 and 40.
    killed_at, status = run_until(workdir, log, lambda line: line == f"step {SIGKILL_AT}", flags=flags)
    assert status == -signal.SIGKILL, log.read_text()[-3000:]
    assert run_until(workdir, log, lambda line: False, flags=flags)[1] == 0, log.read_text()[-3000:]
    resumed = [line.split("resuming from ", 1)[1] for line in log.read_text().splitlines() if "resuming from" in line]
    assert resumed[0] == f"{saved} after step {stopped - STEPS_PER_EPOCH} of epoch 2", resumed
    assert resumed[1].endswith(("latest/40 after step 8 of epoch 3", "latest/35 after step 3 of epoch 3")), resumed
    assert results(workdir) == reference


def test_the_watch_catches_sigterm_only_inside_and_puts_the_previous_handler_back():
    caught = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    try:
        with PreemptionWatch() as watch:
            assert not watch.reached(1)
            os.kill(os.getpid(), signal.SIGTERM)
            assert watch.reached(2) and watch.reached(2) and not caught  # the loop's flag, not the old handler
        os.kill(os.getpid(), signal.SIGTERM)
        assert caught == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
