"""Forward passes: every norm option runs; dropout and BatchNorm act in train mode only.

Parameters come from `fake_variables`, not `model.init`: on CPU, XLA compiles a random-number kernel for each
parameter shape (up to 1.5 s each), which would make these tests ten times slower and test nothing more.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.models import create_model

X = jnp.asarray(np.random.default_rng(1).normal(size=(4, 8, 8, 3)), jnp.float32)
NORMS = ["batch", "group", "instance", "layer", "none"]


def build(name: str, **overrides):
    config = get_config().model
    config.update(name=name, stem="cifar", width=8, hidden_sizes=(16,), group_norm_groups=3, **overrides)
    return create_model(config, 5)


def fake_variables(model, x: jax.Array) -> dict:
    """Variables shaped like `model.init`'s: He-scaled normal kernels, 1 for scales and variances, else 0."""
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    numbers = np.random.default_rng(0)

    def fill(path, leaf):
        if path[-1].key in ("scale", "var"):
            return jnp.ones(leaf.shape, leaf.dtype)
        if leaf.ndim == 1:
            return jnp.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return jnp.asarray(numbers.normal(size=leaf.shape) * np.sqrt(2 / fan_in), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["cnn", "resnet20"])
def test_norm_options_run(name, norm):
    model = build(name, norm=norm)
    variables = fake_variables(model, X)
    assert ("batch_stats" in variables) == (norm == "batch")
    logits, _ = model.apply(variables, X, train=True, mutable=["batch_stats"])
    assert logits.shape == (4, 5) and bool(jnp.all(jnp.isfinite(logits)))
    assert model.apply(variables, X, train=False).shape == (4, 5)


@pytest.mark.parametrize("name", ["mlp", "lenet", "cnn", "resnet20", "resnet18", "vgg11"])
def test_dropout_is_random_in_train_and_off_in_eval(name):
    model = build(name, dropout_rate=0.5, norm="none")
    variables = fake_variables(model, X)

    def train_logits(seed):
        return model.apply(variables, X, train=True, rngs={"dropout": jax.random.key(seed, impl="rbg")})

    assert not np.allclose(train_logits(1), train_logits(2))
    np.testing.assert_array_equal(model.apply(variables, X, train=False), model.apply(variables, X, train=False))


def test_dropout_rate_zero_needs_no_rng():
    model = build("cnn", dropout_rate=0.0, norm="none")
    assert model.apply(fake_variables(model, X), X, train=True).shape == (4, 5)


@pytest.mark.parametrize("name", ["cnn", "resnet20"])
def test_batch_norm_updates_statistics_only_in_train_mode(name):
    model = build(name, norm="batch")
    variables = fake_variables(model, X)
    _, updated = model.apply(variables, X, train=True, mutable=["batch_stats"])
    before, after = jax.tree.leaves(variables["batch_stats"]), jax.tree.leaves(updated["batch_stats"])
    assert all(not np.allclose(b, a) for b, a in zip(before, after, strict=True))
    _, unchanged = model.apply(variables, X, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, variables["batch_stats"], unchanged["batch_stats"])


def test_bn_momentum_is_the_flax_convention():
    # momentum 0.9: new running mean = 0.9 * old (0) + 0.1 * mean of the first conv's output over the batch.
    model = build("cnn", norm="batch", bn_momentum=0.9)
    variables = fake_variables(model, X)
    _, state = model.apply(
        variables, X, train=True, mutable=["batch_stats", "intermediates"], capture_intermediates=True
    )
    conv_out = state["intermediates"]["conv1_1"]["__call__"][0]
    np.testing.assert_allclose(
        state["batch_stats"]["norm1_1"]["mean"], 0.1 * conv_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6
    )


def test_eval_mode_uses_running_statistics():
    # Eval-mode BatchNorm normalises each image with the stored statistics, not the batch's, so a batch and
    # the same images one at a time give the same logits (in train mode they would not).
    model = build("cnn", norm="batch")
    variables = fake_variables(model, X)
    whole = model.apply(variables, X, train=False)
    single = jnp.concatenate([model.apply(variables, X[i : i + 1], train=False) for i in range(4)])
    np.testing.assert_allclose(whole, single, rtol=1e-5, atol=1e-5)
    train_whole, _ = model.apply(variables, X, train=True, mutable=["batch_stats"])
    assert not np.allclose(train_whole, whole)
