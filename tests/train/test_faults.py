"""Fault injection with real processes: SIGKILL at random points (one in the middle of a checkpoint save) and a
disk that fills up or turns read-only under a run. Each command is main.py's (through killable_run.py, which
only announces steps and pauses commits) under `timeout -s KILL`.

The kill points are random; a failure names the seed: rerun with DL4CV_KILL_SEED=<seed> to repeat it.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import jax
import numpy as np
import pytest

from dl4cv_jax.data import load_data
from dl4cv_jax.train import callbacks as callbacks_lib
from dl4cv_jax.train.checkpoints import BEST, LATEST, CheckpointStore
from dl4cv_jax.train.loop import build_trainer
from tests.conftest import REPO

CHILD = REPO / "tests" / "train" / "killable_run.py"
EPOCHS, STEPS_PER_EPOCH = 3, 16  # 1,078 training digits in batches of 64
FLAGS = [
    "--config=configs/digits_cnn.py",
    "--config.model.width=8",
    "--config.batch_size=64",
    f"--config.num_epochs={EPOCHS}",
    "--config.model.dropout_rate=0.3",
]


def run_config():
    from configs import digits_cnn

    config = digits_cnn.get_config()
    config.model.width, config.batch_size, config.num_epochs, config.model.dropout_rate = 8, 64, EPOCHS, 0.3
    return config


COMPILED = {}  # the compilation cache the module's processes share (set by the `reference` fixture)


def start(workdir, log, extra_env=None, flags=FLAGS):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **COMPILED, **(extra_env or {}))
    return subprocess.Popen(
        ["timeout", "-s", "KILL", "300", sys.executable, str(CHILD), *flags, f"--workdir={workdir}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log.open("a"),
        text=True,
        start_new_session=True,  # its own process group: a kill reaches timeout and python alike
    )


def run_until(workdir, log, kill_when, extra_env=None, flags=FLAGS):
    """Runs the command; SIGKILLs its process group at the first stdout line for which `kill_when` is true.
    Returns (the line it was killed at or None, exit status)."""
    process = start(workdir, log, extra_env, flags)
    killed_at = None
    for line in process.stdout:
        if kill_when(line.strip()):
            killed_at = line.strip()
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.stdout.close()
    return killed_at, process.wait(timeout=300)


def at_step(n):
    return lambda line: line.startswith("step ") and int(line.split()[1]) >= n


def outcome(workdir):
    config = run_config()
    _, state = build_trainer(config, load_data(config))
    store = CheckpointStore(workdir)
    restored, loop = store.restore(LATEST, state)
    best_step = store.latest_step(BEST)
    store.close()
    rows = callbacks_lib.read_history(workdir / "history.csv")
    return {
        "history": [{k: v for k, v in r.items() if "second" not in k} for r in rows],
        "test": json.loads((workdir / "test_metrics.json").read_text()),
        "best_step": best_step,
        "arrays": jax.device_get((restored.params, restored.batch_stats, restored.opt_state)),
    }


def assert_same(a, b, context):
    assert a["history"] == b["history"], context
    assert a["test"] == b["test"], context
    assert a["best_step"] == b["best_step"], context
    for x, y in zip(jax.tree.leaves(a["arrays"]), jax.tree.leaves(b["arrays"]), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=context)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's outcome. It also fills a compilation cache, so that the many short processes
    of these tests compile each program once (jax's persistent cache; the executables are the same)."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    COMPILED.update(JAX_COMPILATION_CACHE_DIR=str(workdir / "compiled"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    killed_at, status = run_until(workdir / "run", workdir / "log.txt", lambda line: False)
    assert status == 0, (workdir / "log.txt").read_text()[-3000:]
    return outcome(workdir / "run")


def test_three_sigkills_one_during_a_checkpoint_save_resume_to_the_uninterrupted_result(reference, tmp_path):
    seed = int(os.environ.get("DL4CV_KILL_SEED", random.SystemRandom().randrange(1_000_000)))
    rng = random.Random(seed)
    total = EPOCHS * STEPS_PER_EPOCH
    first_step = rng.randint(2, STEPS_PER_EPOCH + 4)  # in epoch 1 or early in epoch 2
    nth_commit = rng.randint(1, 4)  # state, loop or whole-step rename, of the first or second save
    last_step = rng.randint(2 * STEPS_PER_EPOCH + 1, total - 1)  # in epoch 3
    context = f"DL4CV_KILL_SEED={seed}: kills at step {first_step}, commit {nth_commit}, step {last_step}"
    workdir, log = tmp_path / "run", tmp_path / "log.txt"

    commits = []

    def at_commit(line):
        commits.append(line) if line.startswith("commit ") else None
        return len(commits) >= nth_commit

    pause = {"DL4CV_TEST_PAUSE_AT_COMMIT": str(nth_commit)}  # written, not yet renamed into place: it waits
    kills = [run_until(workdir, log, at_step(first_step)), run_until(workdir, log, at_commit, pause)]
    kills.append(run_until(workdir, log, at_step(last_step)))
    for killed_at, status in kills:
        assert killed_at is not None and status == -signal.SIGKILL, (context, kills, log.read_text()[-3000:])
    assert ".orbax-checkpoint-tmp" in kills[1][0], (context, kills[1])
    assert run_until(workdir, log, lambda line: False)[1] == 0, (context, log.read_text()[-3000:])
    assert "Traceback" not in log.read_text(), context
    assert_same(outcome(workdir), reference, context)


def _mount_tmpfs(path, size):
    path.mkdir(parents=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {result.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    _mount_tmpfs(mount, "32m")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _remount_read_only(mount):
    """`mount -o remount,ro`, retried while the killed process is still letting go of its files (EBUSY)."""
    for _ in range(20):
        result = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True, text=True)
        if result.returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"cannot remount {mount} read-only: {result.stderr.strip()}")


def _checkpoint_files(workdir):
    return {str(p.relative_to(workdir)): p.read_bytes() for p in (workdir / "checkpoints").rglob("*") if p.is_file()}


def _error_lines(log):
    text = log.read_text()
    return text, [line for line in text.splitlines() if line.startswith("error:")]


def test_a_disk_that_fills_up_stops_the_run_in_one_line_and_keeps_the_earlier_checkpoints(reference, small_disk):
    workdir, log = small_disk / "run", small_disk.parent / "full.txt"
    killed_at, status = run_until(workdir, log, lambda line: False, {"DL4CV_TEST_FILL_DISK_AFTER_EPOCH": "1"})
    text, errors = _error_lines(log)
    assert status == 1 and len(errors) == 1, text[-3000:]
    assert "No space left on device" in errors[0] and f"{workdir}/checkpoints" in errors[0], errors[0]
    assert "Traceback" not in text, text[-3000:]
    # Epoch 1's checkpoints are intact: with the space back, the same command finishes the uninterrupted run.
    (small_disk / "filler").unlink()
    assert run_until(workdir, log, lambda line: False)[1] == 0, log.read_text()[-3000:]
    assert_same(outcome(workdir), reference, "after the disk was full")


def test_a_read_only_workdir_stops_in_one_line_and_changes_nothing(reference, small_disk):
    workdir, log = small_disk / "run", small_disk.parent / "read_only.txt"
    assert run_until(workdir, log, at_step(STEPS_PER_EPOCH + 4))[1] == -signal.SIGKILL  # killed in epoch 2
    before = _checkpoint_files(workdir)
    _remount_read_only(small_disk)
    killed_at, status = run_until(workdir, log, lambda line: False)  # the same command, to resume
    text, errors = _error_lines(log)
    assert status == 1 and len(errors) == 1, text[-3000:]
    assert "Read-only file system" in errors[0] and str(workdir) in errors[0], errors[0]
    assert "Traceback" not in text
    assert _checkpoint_files(workdir) == before
