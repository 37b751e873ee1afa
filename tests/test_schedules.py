"""Schedules against optax's own schedule functions or closed forms; reduce-on-plateau; the monitor mode."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs.default import get_config
from dl4cv_jax import schedules
from dl4cv_jax.choices import ConfigError
from dl4cv_jax.monitor import monitor_mode

LR, SPE, EPOCHS = 0.2, 10, 8  # 80 steps in all
TOTAL = SPE * EPOCHS
STEPS = [0, 1, 5, 9, 10, 11, 20, 39, 40, 41, 55, 60, 79, 80, 100]


def _config(name, **schedule):
    config = get_config()
    config.optimizer.learning_rate = LR
    config.schedule.name = name
    config.schedule.update(schedule)
    return config


def _values(schedule, steps=STEPS):
    """All steps in one compiled call (schedules are traced under jit in training too)."""
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps)))


def _inverse_time(step, decay_steps, rate, staircase):
    progress = np.floor(step / decay_steps) if staircase else step / decay_steps
    return LR / (1 + rate * progress)


# name -> (schedule fields, reference over the post-warmup span `span`)
REFERENCES = {
    "constant": ({}, lambda span: optax.constant_schedule(LR)),
    "reduce_on_plateau": ({}, lambda span: optax.constant_schedule(LR)),
    "exponential": (
        {"decay_rate": 0.5, "decay_epochs": 2.0},
        lambda span: optax.exponential_decay(LR, 2 * SPE, 0.5),
    ),
    "exponential_staircase": (
        {"decay_rate": 0.5, "decay_epochs": 2.0, "staircase": True},
        lambda span: optax.exponential_decay(LR, 2 * SPE, 0.5, staircase=True),
    ),
    "polynomial": (
        {"power": 2.0, "end_fraction": 0.1},
        lambda span: optax.polynomial_schedule(LR, 0.1 * LR, 2.0, span),
    ),
    "cosine": ({"end_fraction": 0.05}, lambda span: optax.cosine_decay_schedule(LR, span, alpha=0.05)),
    "linear": ({"end_fraction": 0.0}, lambda span: optax.linear_schedule(LR, 0.0, span)),
    "one_cycle": ({"pct_start": 0.25}, lambda span: optax.cosine_onecycle_schedule(span, LR, pct_start=0.25)),
    "inverse_time": (
        {"decay_rate": 0.5, "decay_epochs": 1.5},
        lambda span: lambda s: _inverse_time(s, 15, 0.5, False),
    ),
    "inverse_time_staircase": (
        {"decay_rate": 0.5, "decay_epochs": 1.5, "staircase": True},
        lambda span: lambda s: _inverse_time(s, 15, 0.5, True),
    ),
}


@pytest.mark.parametrize("warmup_epochs", [0.0, 2.0])
@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_schedule_matches_reference(case, warmup_epochs):
    fields, reference = REFERENCES[case]
    name = case.removesuffix("_staircase")
    schedule = schedules.make_schedule(_config(name, warmup_epochs=warmup_epochs, **fields), SPE, EPOCHS)
    warmup = round(warmup_epochs * SPE)
    main = reference(TOTAL - warmup)
    expected = [LR * s / warmup if s < warmup else float(main(s - warmup)) for s in STEPS]
    np.testing.assert_allclose(_values(schedule), expected, rtol=1e-5, atol=1e-7)


def test_warmup_rises_linearly_from_zero_to_peak():
    schedule = schedules.make_schedule(_config("cosine", warmup_epochs=1.0), SPE, EPOCHS)
    np.testing.assert_allclose(_values(schedule, [0, 5, 10]), [0.0, LR / 2, LR], rtol=1e-6)


# (schedule, num_epochs, warmup_epochs, the warmup in steps (SPE per epoch), reference over the whole run)
SHORTENED = [
    # A recipe's 1-epoch warmup in a 1-epoch quick run: half the run (5 of 10 steps), then the cosine.
    ("cosine", 1, 1.0, 5, optax.warmup_cosine_decay_schedule(0.0, LR, 5, SPE, end_value=0.0)),
    ("cosine", 1, 5.0, 5, optax.warmup_cosine_decay_schedule(0.0, LR, 5, SPE, end_value=0.0)),
    ("cosine", EPOCHS, 8.0, 40, optax.warmup_cosine_decay_schedule(0.0, LR, 40, TOTAL, end_value=0.0)),
    (
        "linear",
        2,
        3.0,
        10,
        optax.join_schedules([optax.linear_schedule(0.0, LR, 10), optax.linear_schedule(LR, 0.0, 10)], [10]),
    ),
]


@pytest.mark.parametrize(
    ("name", "epochs", "warmup_epochs", "warmup_steps", "reference"),
    SHORTENED,
    ids=[f"{name}-warmup_{warmup}_of_{epochs}" for name, epochs, warmup, *_ in SHORTENED],
)
def test_a_warmup_not_shorter_than_the_run_becomes_half_the_run(
    name, epochs, warmup_epochs, warmup_steps, reference, caplog
):
    config = _config(name, warmup_epochs=warmup_epochs, end_fraction=0.0)
    with caplog.at_level(logging.WARNING):
        schedule = schedules.make_schedule(config, SPE, epochs)
    steps = list(range(SPE * epochs + 2))
    np.testing.assert_allclose(_values(schedule, steps), [float(reference(s)) for s in steps], rtol=1e-5, atol=1e-7)
    assert _values(schedule, [warmup_steps])[0] == pytest.approx(LR)  # the peak right after the warmup
    shortened = f"config.schedule.warmup_epochs={warmup_epochs} is not below num_epochs={epochs}: using {epochs / 2}"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [shortened]


def test_a_warmup_below_the_run_is_kept_and_leaves_the_schedule_a_step(caplog):
    """0.95 of a 1-epoch run is 10 of 10 steps after rounding: the cosine keeps its last step (optax refuses a cosine
    over 0 steps), and nothing is shortened, so nothing is logged."""
    with caplog.at_level(logging.WARNING):
        schedule = schedules.make_schedule(_config("cosine", warmup_epochs=0.95), SPE, 1)
    reference = optax.warmup_cosine_decay_schedule(0.0, LR, SPE - 1, SPE, end_value=0.0)
    steps = list(range(SPE + 1))
    np.testing.assert_allclose(_values(schedule, steps), [float(reference(s)) for s in steps], rtol=1e-5, atol=1e-7)
    assert not caplog.records


def test_step_boundaries_are_fractions_of_the_whole_run():
    config = _config("step", decay_rate=0.1, boundaries_epochs=(0.5, 0.75))
    got = _values(schedules.make_schedule(config, SPE, EPOCHS), [0, 39, 40, 59, 60, 79])
    np.testing.assert_allclose(got, [LR, LR, LR * 0.1, LR * 0.1, LR * 0.01, LR * 0.01], rtol=1e-5)
    # With a 1-epoch warmup the boundaries stay at steps 40 and 60 of the run.
    config.schedule.warmup_epochs = 1.0
    got = _values(schedules.make_schedule(config, SPE, EPOCHS), [5, 10, 39, 40, 59, 60])
    np.testing.assert_allclose(got, [LR / 2, LR, LR, LR * 0.1, LR * 0.1, LR * 0.01], rtol=1e-5)


def _plateau(**fields):
    config = _config("reduce_on_plateau", plateau_factor=0.5, plateau_patience=2, **fields)
    plateau = schedules.make_plateau(config)
    return plateau, plateau.init({"w": jnp.zeros(3)})


def test_plateau_stalling_metric_reduces_after_patience():
    plateau, state = _plateau()
    scales = []
    for value in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:  # first sets the best, then patience (2) stalls -> reduce
        state = schedules.step_plateau(plateau, state, value, higher_is_better=False)
        scales.append(schedules.plateau_scale(state))
    assert scales == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_plateau_improving_metric_keeps_scale():
    plateau, state = _plateau()
    for value in [1.0, 0.9, 0.8, 0.7, 0.6]:
        state = schedules.step_plateau(plateau, state, value, higher_is_better=False)
    assert schedules.plateau_scale(state) == 1.0


def test_plateau_higher_is_better():
    plateau, state = _plateau()
    for value in [0.5, 0.6, 0.7, 0.8]:  # rising accuracy is an improvement
        state = schedules.step_plateau(plateau, state, value, higher_is_better=True)
    assert schedules.plateau_scale(state) == 1.0
    for value in [0.7, 0.6]:  # falling accuracy for `patience` epochs is a plateau
        state = schedules.step_plateau(plateau, state, value, higher_is_better=True)
    assert schedules.plateau_scale(state) == 0.5


def test_plateau_min_delta_and_cooldown():
    plateau, state = _plateau(plateau_min_delta=0.1, plateau_cooldown=1)
    for value in [1.0, 0.95, 0.92]:  # improvements smaller than min_delta do not count
        state = schedules.step_plateau(plateau, state, value, higher_is_better=False)
    assert schedules.plateau_scale(state) == 0.5
    for value in [0.92, 0.92]:  # one cooldown epoch, then one stalled epoch: patience not yet reached
        state = schedules.step_plateau(plateau, state, value, higher_is_better=False)
    assert schedules.plateau_scale(state) == 0.5


def test_make_plateau_is_none_for_other_schedules():
    assert schedules.make_plateau(_config("cosine")) is None


def test_monitor_mode():
    assert monitor_mode("val_accuracy") is True
    assert monitor_mode("val_loss") is False
    with pytest.raises(ConfigError, match=r"config\.checkpoint\.monitor='loss'.*val_accuracy, val_loss"):
        monitor_mode("loss")


@pytest.mark.parametrize(
    "name, fields, match",
    [
        ("warm_restarts", {}, r"config\.schedule\.name='warm_restarts'.*choose one of: constant, cosine"),
        ("cosine", {"warmup_epochs": -1.0}, r"config\.schedule\.warmup_epochs=-1\.0 must be >= 0"),
        ("cosine", {"warmup_epochs": float("nan")}, r"config\.schedule\.warmup_epochs=nan must be >= 0"),
        ("cosine", {"end_fraction": 1.5}, r"config\.schedule\.end_fraction=1\.5"),
        ("exponential", {"decay_rate": 0.0}, r"config\.schedule\.decay_rate=0\.0"),
        ("inverse_time", {"decay_epochs": 0.0}, r"config\.schedule\.decay_epochs=0\.0"),
        ("step", {"boundaries_epochs": (0.75, 0.5)}, r"config\.schedule\.boundaries_epochs.*increasing"),
        ("step", {"boundaries_epochs": (30, 60)}, r"config\.schedule\.boundaries_epochs.*\(0, 1\)"),
        ("step", {"boundaries_epochs": (0.1,), "warmup_epochs": 2.0}, r"after the warmup"),
        ("one_cycle", {"pct_start": 1.0}, r"config\.schedule\.pct_start=1\.0"),
        ("polynomial", {"power": 0.0}, r"config\.schedule\.power=0\.0"),
    ],
)
def test_bad_schedule_values(name, fields, match):
    with pytest.raises(ConfigError, match=match):
        schedules.make_schedule(_config(name, **fields), SPE, EPOCHS)


def test_bad_learning_rate_and_plateau_values():
    config = _config("cosine")
    config.optimizer.learning_rate = -0.1
    with pytest.raises(ConfigError, match=r"config\.optimizer\.learning_rate=-0\.1 must be > 0"):
        schedules.make_schedule(config, SPE, EPOCHS)
    for field, value in [("plateau_factor", 1.0), ("plateau_patience", 0), ("plateau_min_delta", 0.0)]:
        config = _config("reduce_on_plateau", **{field: value})
        with pytest.raises(ConfigError, match=rf"config\.schedule\.{field}="):
            schedules.make_plateau(config)
