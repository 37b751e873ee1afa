"""`models.pool.max_pool_2x2` equals `nn.max_pool` (2x2, stride 2) in values and gradients, ties included."""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl4cv_jax.backends.cpu.pool import _even_max_pool, max_pool_2x2

# Inputs and parameters are drawn with "rbg" keys: XLA:CPU compiles the default threefry generator for about a
# second per shape drawn, rbg in a fraction of that, and which values these are is beside the point.

flax_pool = functools.partial(nn.max_pool, window_shape=(2, 2), strides=(2, 2))


def _input_gradient(pool, x, weights):
    return jax.grad(lambda x: jnp.sum(pool(x) * weights))(x)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 2), (3, 28, 28, 6)])
@pytest.mark.parametrize("ties", [False, True])
def test_equals_flax_max_pool_in_value_and_gradient(shape, ties):
    x = jax.random.normal(jax.random.key(2, impl="rbg"), shape)
    if ties:  # ReLU zeros and values on a coarse grid: most windows hold two or more equal maxima
        x = jnp.round(jax.nn.relu(x) * 2) / 2
        batch, height, width, channels = x.shape
        windows = x[:, : height // 2 * 2, : width // 2 * 2].reshape(batch, height // 2, 2, width // 2, 2, channels)
        maxima_per_window = jnp.sum(windows == windows.max(axis=(2, 4), keepdims=True), axis=(2, 4))
        assert jnp.mean(maxima_per_window > 1) > 0.2
    weights = jax.random.normal(jax.random.key(3, impl="rbg"), flax_pool(x).shape)
    np.testing.assert_array_equal(max_pool_2x2(x), flax_pool(x))
    np.testing.assert_array_equal(_input_gradient(max_pool_2x2, x, weights), _input_gradient(flax_pool, x, weights))


def test_ties_send_the_gradient_to_one_element_per_window():
    x = jnp.zeros((1, 2, 2, 1))  # one window, four equal maxima
    gradient = _input_gradient(max_pool_2x2, x, jnp.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(gradient[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


def test_bfloat16_and_vmap_match_flax():
    x = jnp.round(jax.random.normal(jax.random.key(4, impl="rbg"), (4, 2, 6, 6, 3)) * 2).astype(jnp.bfloat16)
    weights = jax.random.normal(jax.random.key(5, impl="rbg"), (4, 2, 3, 3, 3)).astype(jnp.bfloat16)
    ours = jax.vmap(functools.partial(_input_gradient, max_pool_2x2))(x, weights)
    reference = jax.vmap(functools.partial(_input_gradient, flax_pool))(x, weights)
    assert ours.dtype == jnp.bfloat16
    np.testing.assert_array_equal(ours, reference)


def test_sides_below_two_are_left_as_they_are():
    x = jnp.arange(6.0).reshape(1, 1, 6, 1)
    np.testing.assert_array_equal(max_pool_2x2(x), x)


def test_gradient_compiles_to_no_scatter_where_flax_pool_has_one():
    """The reason for the custom gradient: XLA:CPU runs `nn.max_pool`'s select-and-scatter as a scatter."""
    x = jnp.ones((2, 8, 8, 3))

    def compiled_gradient(pool):
        gradient = jax.jit(jax.grad(lambda x: jnp.sum(pool(x) ** 2)))
        return gradient.lower(x).compile().as_text()

    scatter_op = re.compile(r" (select-and-)?scatter\(")  # an HLO instruction, not a name in the metadata
    assert scatter_op.search(compiled_gradient(flax_pool))
    assert not scatter_op.search(compiled_gradient(max_pool_2x2))


def test_bfloat16_is_pooled_in_float32_without_rounding_after_every_op():
    """XLA:CPU computes bf16 maxima and selects in float32, rounding to bf16 and back after each one; pooling in
    float32 (exact for a maximum) leaves only the casts in and out."""
    x, weights = jnp.ones((4, 8, 8, 3), jnp.bfloat16), jnp.ones((4, 4, 4, 3))

    def converts(pool):
        step = jax.jit(jax.value_and_grad(lambda x: jnp.sum(pool(x).astype(jnp.float32) * weights)))
        return len(re.findall(r" convert\(", step.lower(x).compile().as_text()))

    ours, in_bfloat16 = converts(max_pool_2x2), converts(_even_max_pool)  # the same pool, computed in bf16
    assert ours <= 8 and 3 * ours <= in_bfloat16, (ours, in_bfloat16)
