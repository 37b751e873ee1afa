"""The learning-rate range test on digits: exponential rates, a suggestion in a sane range, the plot and JSON."""

import json

import ml_collections
import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.lr_find import (
    LRFindSettings,
    diverging,
    exponential_schedule,
    lr_find,
    settings_from_config,
    smooth,
    suggest,
)
from tests.conftest import tiny_digits_config


def test_lr_find_on_digits_suggests_a_sane_rate_and_writes_the_plot(tmp_path):
    config = tiny_digits_config(optimizer__name="nesterov")
    result = lr_find(config, tmp_path, LRFindSettings(num_steps=40))
    assert 1e-4 <= result["suggested_lr"] <= 1.0, result["suggested_lr"]
    lrs = np.asarray(result["learning_rates"])
    assert lrs[0] == pytest.approx(1e-7)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], (1e8) ** (1 / 39), rtol=1e-4)  # exponential growth
    assert result["steps_run"] == len(lrs) and result["min_loss_lr"] > result["suggested_lr"]
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["suggested_lr"] == result["suggested_lr"] and len(saved["losses"]) == result["steps_run"]


def test_exponential_schedule_ends():
    schedule = exponential_schedule(1e-7, 10.0, 300)
    assert float(schedule(0)) == pytest.approx(1e-7) and float(schedule(299)) == pytest.approx(10.0, rel=1e-5)


def test_the_test_stops_when_the_loss_explodes():
    assert not diverging(2.0, smoothed=2.5, lowest=1.0, factor=4.0)
    assert diverging(9.0, smoothed=4.5, lowest=1.0, factor=4.0)
    assert diverging(float("nan"), smoothed=1.0, lowest=1.0, factor=4.0)


def test_smooth_is_a_bias_corrected_moving_average():
    np.testing.assert_allclose(smooth(np.full(5, 2.0), 0.9), 2.0)  # no pull towards 0 at the start
    values = np.asarray([1.0, 3.0])
    assert smooth(values, 0.5)[1] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)


def test_suggest_picks_the_steepest_descent_before_the_minimum():
    lrs = np.logspace(-7, 1, 81)
    loss = 2.3 / (1 + np.exp(3 * (np.log10(lrs) + 2)))  # falls fastest at 1e-2
    loss[lrs > 0.5] = 10.0
    picks = suggest(lrs, loss)
    assert picks["steepest_lr"] == pytest.approx(1e-2, rel=0.3)
    assert picks["min_loss_lr_div10"] == pytest.approx(picks["min_loss_lr"] / 10)


def test_settings_come_from_an_optional_config_section():
    config = tiny_digits_config()
    assert settings_from_config(config) == LRFindSettings()
    config.lr_find = ml_collections.ConfigDict({"num_steps": 50, "end_lr": 1.0})
    assert settings_from_config(config) == LRFindSettings(num_steps=50, end_lr=1.0)
    config.lr_find.steps = 3
    with pytest.raises(ConfigError, match="lr_find"):
        settings_from_config(config)
