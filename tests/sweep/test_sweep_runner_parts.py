"""The runner's parts: splitting the machine between workers, SLURM array tasks, a failed trial's error line, and a
trial's state read back from its directory."""

import json

import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.sweep.runner import array_task, error_line, trial_state, visible_gpus, worker_slots


def test_gpus_are_split_between_workers():
    slots = worker_slots(2, ["0", "1", "2", "3"], cpus=[0, 1])
    assert [dict(s.env) for s in slots] == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert all(s.cpus is None for s in slots)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in worker_slots(3, list("0123"), [0])] == ["0,1", "2", "3"]
    with pytest.raises(ConfigError, match="--workers=3 is more than the 2 GPUs"):
        worker_slots(3, ["0", "1"], cpus=[0])


def test_cpu_cores_are_split_between_workers():
    assert [s.cpus for s in worker_slots(2, [], cpus=[0, 1, 2, 3])] == [(0, 1), (2, 3)]
    assert [s.cpus for s in worker_slots(1, [], cpus=[0, 1])] == [None]  # one worker keeps every core
    assert [s.cpus for s in worker_slots(3, [], cpus=[0, 1])] == [None, None, None]  # more workers than cores
    with pytest.raises(ConfigError, match="--workers=0"):
        worker_slots(0, [], cpus=[0])


def test_visible_gpus_from_the_environment():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_slurm_array_task():
    assert array_task({}) == (0, 1)
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert array_task(env) == (2, 4)


def test_error_line_prefers_the_error_message():
    log = "I0101 epoch 1\nTraceback (most recent call last):\n  File x\nValueError: bad thing\n\n"
    assert error_line(log) == "ValueError: bad thing"
    assert error_line("loading\nerror: config.optimizer.learning_rate=-1.0 must be > 0\n") == (
        "error: config.optimizer.learning_rate=-1.0 must be > 0"
    )
    assert error_line("FATAL Flags parsing error: flag --config.x=y: bad\nPass --helpshort\n").startswith("FATAL")
    assert error_line("just\nthe last line\r\n") == "the last line"
    assert error_line("") == "no output"


def test_trial_state_from_its_files(tmp_path):
    assert trial_state(tmp_path) == "pending"
    (tmp_path / "trial_status.json").write_text(json.dumps({"status": "running"}))
    assert trial_state(tmp_path) == "interrupted"  # left running by a sweep that is gone: resumed on a re-run
    (tmp_path / "trial_status.json").write_text(json.dumps({"status": "failed", "error": "x"}))
    assert trial_state(tmp_path) == "failed"
    (tmp_path / "test_metrics.json").write_text("{}")
    assert trial_state(tmp_path) == "done"
