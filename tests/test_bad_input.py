"""Bad input on the command line and in the config fails at once with one line naming the culprit (config key,
file, value) and what is accepted, exit status 1, no traceback, nothing written. Data folders, images and
workdirs: tests/test_bad_input_files.py; the shared checks: tests/bad_input_checks.py.

The failures before main() runs (config file, override keys, flag values) need a real `python main.py`; the
others call what main.py calls (`main.run_mode`) in-process, which is much faster.
"""

import os

import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.train.loop import train_and_evaluate
from tests.bad_input_checks import assert_one_line, exit_line, run_main, stderr_line
from tests.conftest import tiny_digits_config

CASES = [
    ("model__name", "resnet19", ["config.model.name='resnet19'", "resnet18", "cnn", "vgg16_bn"]),
    ("optimizer__name", "adamm", ["config.optimizer.name='adamm'", "adam", "nesterov", "lion"]),
    ("schedule__name", "cosinus", ["config.schedule.name='cosinus'", "cosine", "one_cycle"]),
    ("loss", "crossentropy", ["config.loss='crossentropy'", "softmax_cross_entropy", "mse"]),
    ("data__source", "csv", ["config.data.source='csv'", "digits", "folder", "synthetic", "tfds"]),
    ("checkpoint__monitor", "loss", ["config.checkpoint.monitor='loss'", "val_accuracy", "val_loss"]),
    ("optimizer__learning_rate", -0.1, ["config.optimizer.learning_rate=-0.1", "> 0"]),
]


@pytest.mark.parametrize(("key", "value", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_names_key_and_choices(tmp_path, key, value, expected):
    with pytest.raises(ConfigError) as error:
        train_and_evaluate(tiny_digits_config(**{key: value}), tmp_path, show_progress=False)
    message = str(error.value)
    assert "\n" not in message
    for part in expected:
        assert part in message
    assert not (tmp_path / "config.json").exists(), "nothing is written for a config that cannot run"


def test_missing_data_dir(tmp_path):
    config = tiny_digits_config(data__source="folder", data__dir=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"config\.data\.dir=.*nowhere"):
        train_and_evaluate(config, tmp_path / "run", show_progress=False)


def train_line(tmp_path, **overrides) -> str:
    """The line `--mode=train` prints for the tiny digits config with `overrides`; checks nothing was written."""
    workdir = tmp_path / "run"
    line = exit_line("train", config=tiny_digits_config(**overrides), workdir=workdir)
    assert not workdir.exists(), "nothing is written for a config that cannot run"
    return line


# --- Hyper-parameters that are numbers but not usable ones ----------------------------------------------------


def test_nan_learning_rate(tmp_path):
    line = train_line(tmp_path, optimizer__learning_rate=float("nan"))
    assert_one_line(line, "config.optimizer.learning_rate=nan", "must be > 0 and finite")


def test_infinite_learning_rate(tmp_path):
    line = train_line(tmp_path, optimizer__learning_rate=float("inf"))
    assert_one_line(line, "config.optimizer.learning_rate=inf", "must be > 0 and finite")


def test_infinite_weight_decay(tmp_path):
    line = train_line(tmp_path, optimizer__weight_decay=float("inf"))
    assert_one_line(line, "config.optimizer.weight_decay=inf", "must be >= 0 and finite")


def test_negative_batch_size(tmp_path):
    import jax

    devices = jax.device_count()
    line = train_line(tmp_path, batch_size=-8)
    count = "(1 device); e.g. 8" if devices == 1 else f"({devices} devices)"
    assert_one_line(line, "config.batch_size=-8 must be a positive multiple of the device count", count)


def test_batch_size_that_does_not_split_over_the_devices(tmp_path, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "device_count", lambda: 3)  # as on a 3-device machine
    line = train_line(tmp_path, batch_size=64)
    assert_one_line(line, "config.batch_size=64", "multiple of the device count (3 devices)", "e.g. 63")


# --- tfds names and split strings --------------------------------------------------------------------------------


def test_unknown_tfds_name(tmp_path):
    line = train_line(tmp_path, data__source="tfds", data__name="mnistt")
    assert_one_line(line, "config.data.name='mnistt' is not a tensorflow-datasets dataset", "did you mean 'mnist'")


def test_malformed_split_string(tmp_path):
    line = train_line(tmp_path, data__source="tfds", data__name="mnist", data__val_split="train[:abc]")
    assert_one_line(line, "config.data.val_split='train[:abc]' is not a tfds split", "'train[:90%]'")


# --- Workdirs and sweeps -------------------------------------------------------------------------------------------


def test_workdir_that_is_a_file(tmp_path):
    workdir = tmp_path / "notes.txt"
    workdir.write_text("keep me\n")
    line = exit_line("train", config=tiny_digits_config(), workdir=workdir)
    assert_one_line(line, f"--workdir={workdir} is a file, not a folder")
    assert workdir.read_text() == "keep me\n"


def test_sweep_file_that_does_not_exist(tmp_path):
    line = exit_line("sweep", sweep="experiments/optimisers.py", workdir=tmp_path / "sweep")
    assert_one_line(line, "sweep file experiments/optimisers.py does not exist", "optimizers.py", "augmentation.py")
    assert not (tmp_path / "sweep").exists()


def test_sweep_file_that_raises_on_import(tmp_path):
    sweep_file = tmp_path / "broken_sweep.py"
    sweep_file.write_text("from dl4cv_jax.sweep import Sweep\n\nimport no_such_module_xyz\n")
    line = exit_line("sweep", sweep=str(sweep_file), workdir=tmp_path / "sweep")
    expected = "ModuleNotFoundError: No module named 'no_such_module_xyz' (line 3)"
    assert_one_line(line, f"sweep file {sweep_file} fails to import", expected)
    assert not (tmp_path / "sweep").exists()


def test_sweep_file_whose_get_sweep_raises(tmp_path):
    sweep_file = tmp_path / "raising_sweep.py"
    sweep_file.write_text("def get_sweep():\n    return {'optimizer.name': 'adam'}['optimizer.nmae']\n")
    line = exit_line("sweep", sweep=str(sweep_file), workdir=tmp_path / "sweep")
    assert_one_line(line, f"sweep file {sweep_file}: get_sweep() fails: KeyError: optimizer.nmae (line 2)")
    assert not (tmp_path / "sweep").exists()


def test_more_sweep_workers_than_cpu_cores(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU rule, also on a machine with GPUs
    cores = len(os.sched_getaffinity(0))
    sweep_file = tmp_path / "one_trial.py"
    sweep_file.write_text(
        "from dl4cv_jax.sweep import Sweep\n\n\n"
        "def get_sweep():\n"
        "    return Sweep(config='configs/digits_cnn.py', settings=[{'optimizer.name': 'adam'}])\n"
    )
    line = exit_line("sweep", sweep=str(sweep_file), workdir=tmp_path / "sweep", workers=cores + 1)
    assert_one_line(line, f"--workers={cores + 1} is more than the {cores} CPU cores", f"use --workers<={cores}")
    assert not (tmp_path / "sweep").exists()


# --- Before main() runs: `python main.py` itself (each ~3-8 s of imports) ----------------------------------------


def test_missing_config_file(tmp_path):
    result = run_main("--config=configs/nope.py", f"--workdir={tmp_path / 'run'}")
    stderr_line(result, "config file configs/nope.py does not exist", "digits_cnn.py", "resnet_cifar.py")
    assert not (tmp_path / "run").exists()


def test_syntactically_broken_config_file(tmp_path):
    config_file = tmp_path / "broken.py"
    config_file.write_text("import ml_collections\n\n\ndef get_config(:\n    pass\n")
    result = run_main(f"--config={config_file}", f"--workdir={tmp_path / 'run'}")
    stderr_line(result, f"config file {config_file} fails to import: SyntaxError: invalid syntax (line 4)")


def test_config_file_whose_get_config_raises(tmp_path):
    config_file = tmp_path / "raises.py"
    config_file.write_text("def get_config():\n    raise ValueError('pick a preset')\n")
    result = run_main(f"--config={config_file}", f"--workdir={tmp_path / 'run'}")
    stderr_line(result, f"config file {config_file}: get_config() fails: ValueError: pick a preset (line 2)")


def test_config_file_without_get_config(tmp_path):
    """In-process: the line main.py's flag parsing prints for whatever ml_collections raised on this file."""
    from main import DEFAULT_CONFIG, flag_error_line

    config_file = tmp_path / "no_function.py"
    config_file.write_text("CONFIG = {'num_epochs': 3}\n")
    error = AttributeError("module 'config_config' has no attribute 'get_config'")
    line = "error: " + flag_error_line(error, ["main.py", f"--config={config_file}"], DEFAULT_CONFIG)
    assert_one_line(line, f"config file {config_file} has no get_config() returning an ml_collections.ConfigDict")


def test_unknown_nested_key_of_the_default_config(tmp_path):
    # Without --config, ml_collections reads the default file and applies the overrides when main.py is imported.
    result = run_main("--config.optimizer.learnng_rate=0.1", f"--workdir={tmp_path / 'run'}")
    expected = "--config.optimizer.learnng_rate: config.optimizer has no field 'learnng_rate' (did you mean"
    stderr_line(result, expected, "its fields: b1, b2, eps, grad_clip_norm, learning_rate, momentum, name")


def test_unknown_nested_key_of_a_named_config(tmp_path):
    args = ["--config=configs/digits_cnn.py", "--config.data.val_fraktion=0.1", f"--workdir={tmp_path / 'run'}"]
    result = run_main(*args)
    stderr_line(result, "--config.data.val_fraktion: config.data has no field 'val_fraktion'", "val_fraction")


def test_value_of_the_wrong_type(tmp_path):
    result = run_main("--config.num_epochs=abc", f"--workdir={tmp_path / 'run'}")
    stderr_line(result, "--config.num_epochs=abc: invalid literal for int()", "config.num_epochs takes an int")


def test_unknown_mode(tmp_path):
    result = run_main("--mode=trian", f"--workdir={tmp_path / 'run'}")
    stderr_line(result, "--mode=trian: value should be one of <train|eval|predict|", "|sweep|")


def test_main_prints_one_line_error_and_fails(tmp_path):
    args = ["--config=configs/digits_cnn.py", "--config.optimizer.name=adamm", f"--workdir={tmp_path}"]
    result = run_main(*args)
    stderr_line(result, "error: config.optimizer.name='adamm' is not supported; choose one of:")
