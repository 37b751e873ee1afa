"""The learning-rate range test on digits: exponential rates, the documented suggestion (a third of the rate at the
smoothed loss's minimum), the plot and JSON; and how the suggestion compares with the best learning rate of real
training."""

import json

import jax
import ml_collections
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

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
from dl4cv_jax.models import create_model
from tests.conftest import tiny_digits_config


def third_of_min_loss_lr(learning_rates: np.ndarray, losses: np.ndarray, beta: float) -> float:
    """The documented rule, written out again here: bias-corrected EMA of the losses, then a third of the rate at
    its minimum."""
    weights = beta ** np.arange(len(losses))[::-1]  # the EMA as explicit weighted means, not a running average
    smoothed = np.array(
        [(weights[-i - 1 :] * losses[: i + 1]).sum() / weights[-i - 1 :].sum() for i in range(len(losses))]
    )
    return float(learning_rates[int(np.argmin(smoothed))]) / 3


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """One range test with the default settings on the tiny BatchNorm CNN, shared by the tests below."""
    workdir = tmp_path_factory.mktemp("lr_find_cnn")
    return workdir, lr_find(tiny_digits_config(optimizer__name="nesterov"), workdir, LRFindSettings())


def test_lr_find_on_digits_suggests_a_third_of_the_min_loss_rate_and_writes_the_plot(cnn_run):
    workdir, result = cnn_run
    lrs = np.asarray(result["learning_rates"])
    # The suggestion is a third of the minimum of the smoothed curve of the losses the test returned (beta 29/30:
    # the automatic smoothing of a 300-step test).
    expected = third_of_min_loss_lr(lrs, np.asarray(result["losses"], dtype=float), beta=29 / 30)
    assert result["settings"]["beta"] == pytest.approx(29 / 30)
    assert result["suggested_lr"] == pytest.approx(expected, rel=1e-6)
    assert lrs[0] == pytest.approx(1e-7)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], (1e8) ** (1 / 299), rtol=1e-4)  # exponential growth
    assert result["steps_run"] == len(lrs) and result["steepest_lr"] < result["min_loss_lr"]
    assert (workdir / "lr_find.png").stat().st_size > 10_000
    saved = json.loads((workdir / "lr_find.json").read_text())
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


def test_suggest_picks_a_third_of_the_minimum_and_reports_the_steepest_descent():
    lrs = np.logspace(-7, 1, 81)  # ten rates per decade: 1e-1 is lrs[60]
    loss = 2.3 / (1 + np.exp(3 * (np.log10(lrs) + 2)))  # falls all the way, fastest at 1e-2
    loss[lrs > 0.11] = 10.0  # diverges after 1e-1, so the minimum is at 1e-1
    picks = suggest(lrs, loss)
    assert picks["min_loss_lr"] == pytest.approx(0.1)
    assert picks["min_loss_lr_div3"] == pytest.approx(0.1 / 3)
    assert picks["min_loss_lr_div10"] == pytest.approx(0.01)
    assert picks["steepest_lr"] == pytest.approx(1e-2, rel=0.3)


def test_settings_come_from_an_optional_config_section():
    config = tiny_digits_config()
    assert settings_from_config(config) == LRFindSettings()
    config.lr_find = ml_collections.ConfigDict({"num_steps": 50, "end_lr": 1.0})
    assert settings_from_config(config) == LRFindSettings(num_steps=50, end_lr=1.0)
    config.lr_find.steps = 3
    with pytest.raises(ConfigError, match="lr_find"):
        settings_from_config(config)


def best_constant_lr(model_config, grid, num_steps=80, batch_size=64, seeds=(0, 1)) -> float:
    """Independent of lr_find: the rate of `grid` whose plain-optax Nesterov SGD (momentum 0.9, as the config's
    optimizer) at a constant rate reaches the lowest training loss, averaged over the last 16 batches of
    `num_steps` and over data orders. The digits are standardised here, from scikit-learn's arrays; BatchNorm
    statistics, where the model has them, are carried along as in training."""
    digits = load_digits()
    x = digits.images[..., None].astype(np.float32)
    x, y = jax.numpy.asarray((x - x.mean()) / x.std()), jax.numpy.asarray(digits.target)
    model = create_model(model_config, 10)
    variables = model.init(jax.random.key(0, impl="rbg"), x[:1], train=False)
    params, stats = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    @jax.jit
    def final_loss(lr, batches):
        tx = optax.sgd(lr, momentum=0.9, nesterov=True)

        def step(carry, index):
            params, stats, opt_state = carry

            def loss_fn(p):
                logits, new_stats = model.apply({"params": p, **stats}, x[index], train=True, mutable=list(stats))
                return optax.softmax_cross_entropy_with_integer_labels(logits, y[index]).mean(), new_stats

            (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), stats, opt_state), loss

        _, losses = jax.lax.scan(step, (params, stats, tx.init(params)), batches)
        return losses[-16:].mean()

    per_batch = len(y) // batch_size
    losses = np.zeros(len(grid))
    for seed in seeds:
        rng = np.random.default_rng(seed)
        epochs = [rng.permutation(len(y))[: per_batch * batch_size].reshape(per_batch, batch_size) for _ in range(9)]
        batches = np.concatenate(epochs)[:num_steps]
        losses += [float(final_loss(np.float32(lr), batches)) for lr in grid]
    losses = np.where(np.isfinite(losses), losses, np.inf)
    return float(grid[int(np.argmin(losses))])


def test_suggestion_is_within_3x_of_the_best_rate_of_real_training(tmp_path):
    # The requirement, on a fixed problem without BatchNorm (a 64-unit MLP on the digits), whose loss after
    # a few epochs has one clear best constant rate, just below where training turns unstable; the range test runs
    # with its defaults.
    config = tiny_digits_config(model__name="mlp", model__hidden_sizes=(64,))
    result = lr_find(config, tmp_path, LRFindSettings())
    best = best_constant_lr(config.model, grid=10 ** np.arange(-3, 1.01, 0.25))
    assert best / 3 <= result["suggested_lr"] <= 3 * best, (result["suggested_lr"], best)


def test_suggestion_is_within_3x_of_the_best_rate_with_batchnorm(cnn_run):
    # The same on the tiny BatchNorm CNN, whose loss saturates instead of exploding; it trains slower, so a
    # half-decade grid around its best rate and one data order.
    _, result = cnn_run
    best = best_constant_lr(tiny_digits_config().model, grid=10 ** np.arange(-2, 0.01, 0.5), seeds=(0,))
    assert best / 3 <= result["suggested_lr"] <= 3 * best, (result["suggested_lr"], best)
