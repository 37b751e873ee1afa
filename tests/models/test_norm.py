"""Every `config.model.norm` option runs, and only BatchNorm keeps running statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.models import create_model
from dl4cv_jax.models.norm import NormSpec, largest_divisor_at_most, norm_layer


def rng(seed: int) -> jax.Array:
    """An 'rbg' key: XLA on CPU compiles threefry for ~1.5 s per parameter shape, rbg in ~0.2 s."""
    return jax.random.key(seed, impl="rbg")


NORMS = ["batch", "group", "instance", "layer", "none"]


def build(name: str, norm: str, **overrides):
    config = get_config().model
    config.update(name=name, norm=norm, stem="cifar", width=8, group_norm_groups=3, **overrides)
    return create_model(config, 5)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg11_bn"])
def test_batch_stats_only_with_batch_norm(name, norm):
    model = build(name, norm)
    variables = jax.eval_shape(lambda: model.init(rng(0), jnp.zeros((1, 8, 8, 3)), train=False))
    assert ("batch_stats" in variables) == (norm == "batch")


@pytest.mark.parametrize("name", ["mlp", "lenet", "vgg11"])
def test_models_without_norm_layers_have_no_batch_stats(name):
    model = build(name, "batch")
    variables = jax.eval_shape(lambda: model.init(rng(0), jnp.zeros((1, 12, 12, 1)), train=False))
    assert set(variables) == {"params"}


@pytest.mark.parametrize("channels, limit, expected", [(64, 32, 32), (48, 32, 24), (6, 32, 6), (7, 4, 1), (16, 3, 2)])
def test_group_count_divides_channels(channels, limit, expected):
    assert largest_divisor_at_most(channels, limit) == expected


def apply_norm(name: str, x: jax.Array) -> jax.Array:
    """Applies a freshly initialised norm layer (scale 1, bias 0) of kind `name`, groups=2, in train mode."""

    class Wrapped(nn.Module):
        @nn.compact
        def __call__(self, x):
            return norm_layer(NormSpec(name=name, groups=2), train=True)(x.shape[-1], "norm")(x)

    variables = Wrapped().init(rng(0), x)
    out, _ = Wrapped().apply(variables, x, mutable=["batch_stats"])
    return out


# Reference: split the 4 channels into groups of `group_size`, i.e. view x as [B, H, W, groups, group_size],
# and standardise over `axes` of that view with numpy (epsilon 1e-5).
@pytest.mark.parametrize(
    "name, group_size, axes",
    [("batch", 1, (0, 1, 2)), ("group", 2, (1, 2, 4)), ("instance", 1, (1, 2)), ("layer", 4, (1, 2, 4))],
)
def test_norms_standardise_the_documented_axes(name, group_size, axes):
    x = np.random.default_rng(2).normal(size=(3, 5, 5, 4)).astype(np.float32) * 3 + 1
    grouped = x.reshape(3, 5, 5, 4 // group_size, group_size)
    mean = grouped.mean(axis=axes, keepdims=True)
    var = grouped.var(axis=axes, keepdims=True)
    expected = ((grouped - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(apply_norm(name, jnp.asarray(x)), expected, atol=1e-4)
