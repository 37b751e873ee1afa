"""Optimizers against the optax aliases called directly, weight decay in closed form, clipping, bad values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs.default import get_config
from dl4cv_jax import optim
from dl4cv_jax.choices import ConfigError

LR, WD = 0.05, 0.1
# Non-default hyperparameters, so a value that fails to reach the optimizer shows up as a mismatch.
HYPER = {"momentum": 0.7, "b1": 0.8, "b2": 0.95, "eps": 1e-3}
# The mask the library must build: only the >= 2-D kernel is decayed.
MASK = {"dense": {"kernel": True, "bias": False}, "norm": {"scale": False}}


def _params():
    rng = np.random.default_rng(0)
    return {
        "dense": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "bias": jnp.ones(2)},
        "norm": {"scale": jnp.full(2, 2.0)},
    }


def _grad(params):
    """Gradient of a quadratic bowl 0.5 * sum(c * p**2) with a different curvature per entry."""
    return jax.tree.map(lambda p: p * jnp.linspace(0.5, 2.0, p.size).reshape(p.shape), params)


def _config(name, **optimizer):
    config = get_config()
    config.optimizer.name = name
    config.optimizer.learning_rate = LR
    config.optimizer.update(optimizer)
    return config


def _updates(tx, steps=3, grad=_grad):
    """The updates of `steps` optimisation steps on the bowl, flattened per step."""
    params = _params()
    state = tx.init(params)
    out = []
    for _ in range(steps):
        updates, state = tx.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.concatenate([np.ravel(u) for u in jax.tree.leaves(updates)]))
    return out


def _assert_same(got, expected):
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7, err_msg=f"step {step}")


h = HYPER
REFERENCES = {
    "sgd": lambda: optax.sgd(LR),
    "momentum": lambda: optax.sgd(LR, momentum=h["momentum"]),
    "nesterov": lambda: optax.sgd(LR, momentum=h["momentum"], nesterov=True),
    "adam": lambda: optax.adam(LR, b1=h["b1"], b2=h["b2"], eps=h["eps"]),
    "adamw": lambda: optax.adamw(LR, b1=h["b1"], b2=h["b2"], eps=h["eps"], weight_decay=0.0),
    "adagrad": lambda: optax.adagrad(LR, eps=h["eps"]),
    "adadelta": lambda: optax.adadelta(LR, eps=h["eps"]),
    "adamax": lambda: optax.adamax(LR, b1=h["b1"], b2=h["b2"], eps=h["eps"]),
    "nadam": lambda: optax.nadam(LR, b1=h["b1"], b2=h["b2"], eps=h["eps"]),
    "rmsprop": lambda: optax.rmsprop(LR, eps=h["eps"], momentum=h["momentum"]),
    "lamb": lambda: optax.lamb(LR, b1=h["b1"], b2=h["b2"], eps=h["eps"], weight_decay=0.0),
    "lion": lambda: optax.lion(LR, b1=h["b1"], b2=h["b2"], weight_decay=0.0),
}


def test_every_optimizer_has_a_reference():
    assert sorted(REFERENCES) == sorted(optim.OPTIMIZERS)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_optimizer_matches_optax_alias(name):
    tx = optim.make_optimizer(_config(name, **HYPER), optax.constant_schedule(LR))
    _assert_same(_updates(tx), _updates(REFERENCES[name]()))


@pytest.mark.parametrize("name", ["adamw", "lamb", "lion"])
def test_native_decoupled_decay_matches_alias_with_mask(name):
    alias = {
        "adamw": lambda: optax.adamw(LR, h["b1"], h["b2"], h["eps"], weight_decay=WD, mask=MASK),
        "lamb": lambda: optax.lamb(LR, h["b1"], h["b2"], h["eps"], weight_decay=WD, mask=MASK),
        "lion": lambda: optax.lion(LR, h["b1"], h["b2"], weight_decay=WD, mask=MASK),
    }[name]
    tx = optim.make_optimizer(_config(name, weight_decay=WD, **HYPER), optax.constant_schedule(LR))
    _assert_same(_updates(tx), _updates(alias()))


def test_decoupled_adam_equals_adamw():
    tx = optim.make_optimizer(
        _config("adam", weight_decay=WD, weight_decay_mode="decoupled", **HYPER), optax.constant_schedule(LR)
    )
    reference = optax.adamw(LR, h["b1"], h["b2"], h["eps"], weight_decay=WD, mask=MASK)
    _assert_same(_updates(tx), _updates(reference))


def _first_update(name, mode, eps=1e-8):
    config = _config(name, weight_decay=WD, weight_decay_mode=mode, eps=eps)
    tx = optim.make_optimizer(config, optax.constant_schedule(LR))
    params = _params()
    updates, _ = tx.update(_grad(params), tx.init(params), params)
    return params, _grad(params), updates


@pytest.mark.parametrize("mode", ["l2", "auto"])
def test_sgd_l2_first_update(mode):
    p, g, u = _first_update("sgd", mode)
    k = p["dense"]["kernel"]
    np.testing.assert_allclose(u["dense"]["kernel"], -LR * (g["dense"]["kernel"] + WD * k), rtol=1e-6)
    np.testing.assert_allclose(u["dense"]["bias"], -LR * g["dense"]["bias"], rtol=1e-6)  # 1-D: no decay
    np.testing.assert_allclose(u["norm"]["scale"], -LR * g["norm"]["scale"], rtol=1e-6)


def test_sgd_decoupled_first_update():
    p, g, u = _first_update("sgd", "decoupled")
    k = p["dense"]["kernel"]
    np.testing.assert_allclose(u["dense"]["kernel"], -LR * g["dense"]["kernel"] - LR * WD * k, rtol=1e-6)
    np.testing.assert_allclose(u["norm"]["scale"], -LR * g["norm"]["scale"], rtol=1e-6)


def _adam_step(g, eps=1e-3):
    """Adam's bias-corrected first step: m_hat = g, v_hat = g**2."""
    return g / (np.abs(g) + eps)


def test_adam_l2_vs_decoupled_first_update():
    eps = 1e-3  # large enough that the decay is visible inside Adam's normalisation
    p, g, l2 = _first_update("adam", "l2", eps)
    _, _, dec = _first_update("adam", "decoupled", eps)
    k, gk = np.asarray(p["dense"]["kernel"]), np.asarray(g["dense"]["kernel"])
    np.testing.assert_allclose(l2["dense"]["kernel"], -LR * _adam_step(gk + WD * k, eps), rtol=1e-5)
    np.testing.assert_allclose(dec["dense"]["kernel"], -LR * _adam_step(gk, eps) - LR * WD * k, rtol=1e-5)
    gb = np.asarray(g["dense"]["bias"])
    for updates in (l2, dec):
        np.testing.assert_allclose(updates["dense"]["bias"], -LR * _adam_step(gb, eps), rtol=1e-5)


def test_decoupled_decay_follows_the_schedule():
    """With zero gradients only the decay moves the weights: param -= lr(t) * wd * param at every step t."""
    schedule = optax.linear_schedule(LR, 0.0, 4)
    tx = optim.make_optimizer(_config("momentum", weight_decay=WD, weight_decay_mode="decoupled"), schedule)
    params = _params()
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    for step in range(3):
        updates, state = tx.update(zeros, state, params)
        expected = -float(schedule(step)) * WD * np.asarray(params["dense"]["kernel"])
        np.testing.assert_allclose(updates["dense"]["kernel"], expected, rtol=1e-5, atol=1e-8)
        np.testing.assert_array_equal(updates["dense"]["bias"], 0.0)
        params = optax.apply_updates(params, updates)


def test_gradient_clipping_caps_the_global_norm():
    tx = optim.make_optimizer(_config("sgd", learning_rate=1.0, grad_clip_norm=0.5), optax.constant_schedule(1.0))
    big = _updates(tx, steps=1, grad=lambda p: jax.tree.map(lambda x: 100 * x, _grad(p)))[0]
    np.testing.assert_allclose(np.linalg.norm(big), 0.5, rtol=1e-5)
    small = _updates(tx, steps=1, grad=lambda p: jax.tree.map(lambda x: 1e-3 * x, _grad(p)))[0]
    unclipped = _updates(optax.sgd(1.0), steps=1, grad=lambda p: jax.tree.map(lambda x: 1e-3 * x, _grad(p)))[0]
    np.testing.assert_allclose(small, unclipped, rtol=1e-6)


def test_decay_mask_skips_1d_params():
    assert optim.decay_mask(_params()) == MASK


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"name": "adamm"}, r"config\.optimizer\.name='adamm'.*choose one of: adadelta, adagrad, adam, "),
        ({"learning_rate": -0.1}, r"config\.optimizer\.learning_rate=-0\.1 must be > 0"),
        ({"weight_decay": -1e-4}, r"config\.optimizer\.weight_decay=-0\.0001 must be >= 0"),
        ({"grad_clip_norm": -1.0}, r"config\.optimizer\.grad_clip_norm=-1\.0 must be >= 0"),
        (
            {"weight_decay_mode": "coupled"},
            r"weight_decay_mode='coupled'.*choose one of: auto, decoupled, l2",
        ),
        ({"momentum": 1.0}, r"config\.optimizer\.momentum=1\.0"),
        ({"eps": 0.0}, r"config\.optimizer\.eps=0\.0"),
    ],
)
def test_bad_values_name_the_key(fields, match):
    config = _config("adam")
    config.optimizer.update(fields)
    with pytest.raises(ConfigError, match=match):
        optim.make_optimizer(config, optax.constant_schedule(LR))
