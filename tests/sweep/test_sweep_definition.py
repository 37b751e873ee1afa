"""Sweep definitions: product/zipped helpers, trial names, override arguments, loading and checking sweep files."""

import pathlib

import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.sweep import Sweep, Trial, load_sweep, product, zipped
from dl4cv_jax.sweep.definition import safe_name
from tests.conftest import tiny_digits_config


def test_product_is_every_combination_first_factor_slowest():
    settings = product({"optimizer.name": ["sgd", "adam"]}, {"model.norm": ["batch", "none"]})
    assert settings == [
        {"optimizer.name": "sgd", "model.norm": "batch"},
        {"optimizer.name": "sgd", "model.norm": "none"},
        {"optimizer.name": "adam", "model.norm": "batch"},
        {"optimizer.name": "adam", "model.norm": "none"},
    ]
    assert len(product({"a.x": [1, 2, 3], "a.y": [4, 5]})) == 6


def test_zipped_pairs_values_and_composes_with_product():
    pairs = zipped({"optimizer.name": ["sgd", "adam"], "optimizer.learning_rate": [0.1, 1e-3]})
    assert pairs == [
        {"optimizer.name": "sgd", "optimizer.learning_rate": 0.1},
        {"optimizer.name": "adam", "optimizer.learning_rate": 1e-3},
    ]
    assert len(product(pairs, {"seedless.k": [1, 2, 3]})) == 6
    with pytest.raises(ConfigError, match="one length"):
        zipped({"a.x": [1, 2], "a.y": [1]})
    with pytest.raises(ConfigError, match="two factors"):
        product({"a.x": [1]}, {"a.x": [2]})


def test_trial_names_are_readable_deterministic_and_safe():
    trial = Trial((("optimizer.name", "adam"), ("data.augment", ("crop", "flip"))), seed=1)
    assert trial.name == "optimizer.name=adam,data.augment=crop+flip,seed=1"
    assert Trial((("data.augment", ()),), seed=0).name == "data.augment=none,seed=0"
    assert Trial((), seed=3).name == "base,seed=3"
    odd = Trial((("data.dir", "/tmp/a b"),), seed=0).name
    assert "/" not in odd and " " not in odd
    long_a, long_b = safe_name("x" * 300 + "a"), safe_name("x" * 300 + "b")
    assert len(long_a) <= 200 and long_a != long_b and safe_name("x" * 300 + "a") == long_a


def test_override_args_round_trip_through_apply():
    trial = Trial(
        (("optimizer.name", "adam"), ("optimizer.learning_rate", 1e-3), ("data.augment", ("crop",))),
        seed=2,
        fixed=(("num_epochs", 1),),
    )
    assert trial.override_args() == [
        "--config.num_epochs=1",
        "--config.optimizer.name=adam",
        "--config.optimizer.learning_rate=0.001",
        "--config.data.augment=('crop',)",
        "--config.seed=2",
    ]
    config = trial.apply(tiny_digits_config())
    assert (config.optimizer.name, config.optimizer.learning_rate, config.data.augment) == ("adam", 1e-3, ("crop",))
    assert (config.seed, config.num_epochs) == (2, 1)


def test_sweep_trials_and_their_errors():
    sweep = Sweep("configs/digits_cnn.py", product({"model.norm": ["batch", "none"]}), seeds=(0, 1))
    assert [t.name for t in sweep.trials()] == [
        "model.norm=batch,seed=0",
        "model.norm=batch,seed=1",
        "model.norm=none,seed=0",
        "model.norm=none,seed=1",
    ]
    with pytest.raises(ConfigError, match="share the name"):
        Sweep("c.py", [{"model.norm": "batch"}, {"model.norm": "batch"}]).trials()
    with pytest.raises(ConfigError, match="seeds="):
        Sweep("c.py", [{"seed": 1}]).trials()
    with pytest.raises(ConfigError, match="dotted config path"):
        Sweep("c.py", [{"model norm": "batch"}]).trials()
    with pytest.raises(ConfigError, match="has type dict"):
        Sweep("c.py", [{"model.norm": {"a": 1}}]).trials()


def _write(tmp_path: pathlib.Path, body: str) -> pathlib.Path:
    path = tmp_path / "my_sweep.py"
    path.write_text("from dl4cv_jax.sweep import Sweep, product\n\n" + body)
    return path


def test_load_sweep_checks_keys_against_the_base_config(tmp_path):
    good = _write(
        tmp_path, "def get_sweep():\n    return Sweep('configs/digits_cnn.py', product({'model.norm': ['none']}))\n"
    )
    assert load_sweep(good).settings == [{"model.norm": "none"}]
    typo = _write(tmp_path, "def get_sweep():\n    return Sweep('configs/digits_cnn.py', [{'learning_rate': 0.1}])\n")
    with pytest.raises(ConfigError, match="did you mean 'optimizer.learning_rate'"):
        load_sweep(typo)
    with pytest.raises(ConfigError, match="get_sweep"):
        load_sweep(_write(tmp_path, "SWEEP = 1\n"))
    with pytest.raises(FileNotFoundError, match="nowhere.py"):
        load_sweep(tmp_path / "nowhere.py")


def test_example_sweeps_load():
    files = ("experiments/optimizers.py", "experiments/normalization.py", "experiments/augmentation.py")
    names = {path: [t.name for t in load_sweep(path).trials()] for path in files}
    assert len(names["experiments/optimizers.py"]) == 5 * 3
    assert names["experiments/normalization.py"][3] == "model.norm=group,seed=0"
    assert names["experiments/augmentation.py"][:4] == [
        "data.augment=none,seed=0",
        "data.augment=none,seed=1",
        "data.augment=none,seed=2",
        "data.augment=crop+flip,seed=0",
    ]
