"""Two real processes on the CPU (one device each, gloo collectives): the multi-host path, run as users run it.

One job is shared by the tests (module fixture), in two launches on one workdir, as a lost process plays out:
1. two processes started by hand with JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID; in epoch 2
   process 1 is SIGKILLed, and process 0 must stop by itself, soon, with one line;
2. the same command again, through `python -m dl4cv_jax.launch -n 2`: it resumes and finishes.
Its history must equal one process on two devices (XLA's forced host device count) run without interruption.
Every process runs under `timeout -s KILL` in a session of its own: a jax process stuck in a collective ignores
SIGTERM, and a hung test must not hang the suite.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.launch import free_port
from dl4cv_jax.train import sharding
from tests.conftest import REPO

ARGS = [
    "--config=configs/digits_cnn.py",
    "--config.num_epochs=2",
    "--config.batch_size=64",
    "--config.model.width=8",
]
KILLABLE = "tests/train/killable_run.py"  # main.py that prints `step N` (and records writes, see there)
HARD_TIMEOUT = 240  # seconds for any one process; the whole module takes ~90 s on 2 cores
DISTRIBUTED_TIMEOUT = 10  # --distributed_timeout for the kill test
TIMING_COLUMNS = ("epoch_seconds", "images_per_second")


def _env(tmp, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "XLA_FLAGS"}  # the caller's device count
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", **extra)
    # One compilation cache for this module's processes: the resumed launch reuses the first one's programs.
    env.update(JAX_COMPILATION_CACHE_DIR=str(tmp / "xla-cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def _start(command: list[str], env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        ["timeout", "-s", "KILL", str(HARD_TIMEOUT), sys.executable, *command],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _run(command: list[str], env: dict[str, str], log_path) -> tuple[int, str]:
    with open(log_path, "w") as log:
        process = _start(command, env, log)
        code = process.wait()
    return code, log_path.read_text()


def _wait_for(path, text: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in path.read_text():
        assert process.poll() is None, f"process ended before {text!r}:\n{path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} within {seconds} s"
        time.sleep(0.1)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _history(workdir) -> list[dict[str, str]]:
    with open(workdir / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multiprocess")
    workdir, writes = tmp / "two", str(tmp / "writes")
    command = [KILLABLE, *ARGS, f"--workdir={workdir}"]
    result = types.SimpleNamespace(workdir=workdir, tmp=tmp)

    # The reference, beside the job (2 cores: the job's processes often wait for each other): one process, two
    # devices, uninterrupted.
    one, one_log = tmp / "one", open(tmp / "one.log", "w")  # noqa: SIM115
    env = _env(tmp, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    reference = _start(["main.py", *ARGS, f"--workdir={one}"], env, one_log)

    # 1. By hand, as on two hosts; process 1 dies (SIGKILL) at step 20 of 32, in epoch 2.
    port, processes, logs = free_port(), [], [tmp / "p0.log", tmp / "p1.log"]
    try:
        for index in (0, 1):
            env = _env(
                tmp,
                JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(index),
                JAX_PLATFORMS="cpu",
                DL4CV_TEST_RECORD_WRITES=writes,
            )
            with open(logs[index], "w") as log:
                processes.append(_start([*command, f"--distributed_timeout={DISTRIBUTED_TIMEOUT}"], env, log))
        _wait_for(logs[1], "step 20\n", processes[1], HARD_TIMEOUT - 30)
        _kill_group(processes[1])
        killed_at = time.monotonic()
        try:
            result.survivor_code = processes[0].wait(timeout=DISTRIBUTED_TIMEOUT + 50)
        except subprocess.TimeoutExpired:
            result.survivor_code = None
        result.survivor_seconds = time.monotonic() - killed_at
        result.survivor_log = logs[0].read_text()
    finally:
        for process in processes:
            _kill_group(process)
    result.checkpoints_after_loss = sorted(p.name for p in (workdir / "checkpoints" / "latest").iterdir())

    # 2. The same command again, through the launcher: it resumes.
    launch = ["-m", "dl4cv_jax.launch", "-n", "2", "--timeout", str(HARD_TIMEOUT - 20), "--", *command]
    result.code, result.log = _run(launch, _env(tmp, DL4CV_TEST_RECORD_WRITES=writes), tmp / "launch.log")
    result.writes = [(tmp / f"writes-{i}.txt").read_text().splitlines() for i in (0, 1)]

    # 3. --mode=eval on the finished run, two processes again (each times as many collective calls).
    evaluate = ["-m", "dl4cv_jax.launch", "-n", "2", "--timeout", str(HARD_TIMEOUT - 20), "--", "main.py"]
    evaluate += ["--mode=eval", f"--workdir={workdir}"]
    result.eval_code, result.eval_log = _run(evaluate, _env(tmp), tmp / "eval.log")

    result.one_code, result.one = reference.wait(), one
    one_log.close()
    result.one_log = (tmp / "one.log").read_text()
    return result


def test_a_lost_process_stops_the_other_within_the_timeout_in_one_line(job):
    assert job.survivor_code == 1, job.survivor_log[-3000:]
    assert job.survivor_seconds < DISTRIBUTED_TIMEOUT + 20, job.survivor_seconds
    print(f"process 0 stopped {job.survivor_seconds:.1f} s after process 1 was killed")
    last = job.survivor_log.strip().splitlines()[-1]
    assert last.startswith("error: process 0 of 2 lost another process of the job"), last
    # Epoch 1's checkpoint: latest/16, or best/16 (the same state) while latest's background write was not done.
    assert "checkpoints/latest/16;" in last or "checkpoints/best/16;" in last, last
    assert "run the same command again on every process: python" in last, last
    assert "main.py --config=configs/digits_cnn.py" in last and "--distributed_timeout=10" in last, last
    assert "Check failure stack trace" not in job.survivor_log and "Fatal Python error" not in job.survivor_log
    assert "32" not in job.checkpoints_after_loss  # nothing of epoch 2


def test_two_processes_train_like_one_process_on_two_devices_after_a_resume(job):
    assert job.one_code == 0, job.one_log[-3000:]
    assert job.code == 0, job.log[-3000:]
    assert "resuming from" in job.log and "at epoch 1" in job.log
    two, one = _history(job.workdir), _history(job.one)
    assert [row["epoch"] for row in two] == ["1", "2"]
    assert two[0].keys() == one[0].keys()
    assert "2 devices" in job.one_log
    differences = [abs(float(a[k]) - float(b[k])) for a, b in zip(two, one, strict=True) for k in a]
    assert max(differences) <= 1e-6, (two, one)
    print(f"largest history difference, 2 processes (resumed) vs 1 process on 2 devices: {max(differences):.3g}")
    test_two = json.loads((job.workdir / "test_metrics.json").read_text())
    test_one = json.loads((job.one / "test_metrics.json").read_text())
    assert test_two["checkpoint_step"] == test_one["checkpoint_step"] == 32
    assert test_two["accuracy"] == pytest.approx(test_one["accuracy"], abs=1e-6)


def test_each_run_file_is_written_by_process_zero_once_per_launch(job):
    zero, one = job.writes
    outside_checkpoints = [line for line in one if "/checkpoints/" not in line]
    assert outside_checkpoints == [], "process 1 wrote run files"
    written = [line.split(" ", 1)[1].removeprefix(str(job.workdir) + "/") for line in zero]
    assert written.count("config.json.tmp") == 1  # the first launch writes it, the resumed one checks it
    for name in ("class_names.json.tmp", "data_info.json.tmp", "run_info.json.tmp"):
        assert written.count(name) == 2, name  # once per launch
    assert written.count("test_metrics.json.tmp") == 1  # only the finished launch tests
    run_info = json.loads((job.workdir / "run_info.json").read_text())
    assert run_info["process_count"] == 2 and len(run_info["resumes"]) == 1
    assert sorted(p.name for p in (job.workdir / "checkpoints").iterdir()) == ["best", "latest"]


def test_a_batch_that_does_not_split_over_the_processes_stops_in_one_line(tmp_path):
    launch = ["-m", "dl4cv_jax.launch", "-n", "2", "--timeout", "120", "--", "main.py", *ARGS]
    command = [*launch, "--config.batch_size=65", f"--workdir={tmp_path / 'w'}"]
    code, log = _run(command, _env(tmp_path), tmp_path / "log")
    assert code == 1, log
    errors = [line for line in log.splitlines() if "error:" in line]
    assert any(line.startswith("error: config.batch_size=65 must be a positive multiple") for line in errors), log
    assert "Traceback" not in log


def test_a_half_described_cluster_stops_in_one_line(tmp_path):
    env = _env(tmp_path, JAX_COORDINATOR_ADDRESS="localhost:1", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="2")
    code, log = _run(["main.py", *ARGS, f"--workdir={tmp_path / 'w'}"], env, tmp_path / "log")
    assert (code, log.strip()) == (1, "error: --process_id=2 must be in 0..1 (--num_processes=2)")
    # An address alone, outside SLURM and the like: jax finds no process count, and says so in one line.
    env = _env(tmp_path, JAX_COORDINATOR_ADDRESS=f"localhost:{free_port()}")
    code, log = _run(["main.py", *ARGS, f"--workdir={tmp_path / 'w'}"], env, tmp_path / "log")
    assert code == 1 and log.strip().startswith("error: jax.distributed: ") and "\n" not in log.strip(), log
    assert "--num_processes and --process_id" in log


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        (dict(coordinator="h:1"), {}, "needs --num_processes and --process_id"),
        (dict(num_processes=2, process_id=0), {}, "needs a coordinator"),
        (dict(coordinator="h:1", num_processes=2, process_id=2), {}, r"--process_id=2 must be in 0\.\.1"),
        ({}, {"JAX_COORDINATOR_ADDRESS": "h", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "host:port"),
        ({}, {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two"}, "must be an integer"),
    ],
)
def test_explicit_cluster_refuses_half_a_description(flags, environ, message):
    with pytest.raises(ConfigError, match=message):
        sharding.explicit_cluster(**flags, environ=environ)


def test_explicit_cluster_reads_flags_over_variables_and_leaves_slurm_to_jax():
    environ = {"JAX_COORDINATOR_ADDRESS": "a:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert sharding.explicit_cluster(environ=environ) == sharding.Cluster("a:1", 4, 3)
    assert sharding.explicit_cluster("b:2", 2, 1, environ=environ) == sharding.Cluster("b:2", 2, 1)
    assert sharding.explicit_cluster(environ={}) is None
    slurm = {"JAX_COORDINATOR_ADDRESS": "a:1", "SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"}
    assert sharding.explicit_cluster(environ=slurm) is None  # jax takes the count and id from SLURM (or says why not)


def test_the_launcher_stops_the_others_when_one_fails_even_if_they_ignore_sigterm(capfd):
    from dl4cv_jax import launch

    script = (
        "import os, signal, sys, time\n"
        "if os.environ['JAX_PROCESS_ID'] == '1': sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)  # like a jax process waiting in a collective\n"
        "print('waiting', os.environ['JAX_NUM_PROCESSES'], os.environ['JAX_COORDINATOR_ADDRESS'], flush=True)\n"
        "time.sleep(100)\n"
    )
    start = time.monotonic()
    assert launch.launch(["-c", script], num_processes=2, timeout=60) == 3
    assert time.monotonic() - start < 20
    out, err = capfd.readouterr()
    assert err.strip().splitlines()[-1] == "error: launch: process 1 exited with status 3 (the others were stopped)"
    assert launch.launch(["-c", "import time; time.sleep(100)"], num_processes=1, timeout=1) == 124
    assert "did not finish within --timeout=1 s" in capfd.readouterr().err


def test_eval_on_two_processes_reports_the_tested_accuracy_once(job):
    assert job.eval_code == 0, job.eval_log[-3000:]
    report = json.loads((job.workdir / "eval" / "test" / "report.json").read_text())
    tested = json.loads((job.workdir / "test_metrics.json").read_text())
    assert report["accuracy"] == pytest.approx(tested["accuracy"], abs=1e-6)
    assert report["num_examples"] == tested["num_examples"]
    assert job.eval_log.count("wrote ") == 1, job.eval_log[-3000:]  # process 0's report only
