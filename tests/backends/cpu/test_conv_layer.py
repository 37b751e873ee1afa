"""`backends.cpu.conv_layer`: the CPU backend's conv layer has `nn.Conv`'s parameters and values, and sums its bias
gradient in float32 (Flax sums it in the layer's dtype, a slow bfloat16 reduction on XLA:CPU)."""

import flax.linen as nn
import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from dl4cv_jax.backends.cpu import conv
from dl4cv_jax.backends.cpu.conv_layer import Conv, add_bias
from dl4cv_jax.backends.cpu.layers import cpu_layers
from dl4cv_jax.models import create_model
from dl4cv_jax.models.norm import conv_kernel_init
from tests.conftest import tiny_digits_config

# Inputs and parameters are drawn with "rbg" keys: XLA:CPU compiles the default threefry generator for about a
# second per shape drawn, rbg in a fraction of that, and which values these are is beside the point.


def _flax_conv(features, kernel, strides, padding, use_bias):
    return nn.Conv(
        features,
        kernel,
        strides,
        padding,
        use_bias=use_bias,
        kernel_init=conv_kernel_init,
        conv_general_dilated=conv.conv_general_dilated,
    )


def _sum_sin(layer, params, x):  # a nonlinear loss, so the cotangents are not all equal
    return jnp.sum(jnp.sin(layer.apply(params, x).astype(jnp.float32)))


@pytest.mark.parametrize(
    ("shape", "features", "kernel", "strides", "padding", "use_bias"),
    [
        ((2, 9, 9, 1), 6, (5, 5), (1, 1), "SAME", True),  # LeNet's conv1
        ((2, 8, 8, 3), 4, (3, 3), (2, 2), ((1, 1), (1, 1)), True),
        ((2, 8, 8, 5), 7, (3, 3), (1, 1), "VALID", False),  # after a norm: no bias, no 'bias' parameter
    ],
)
def test_same_parameters_values_and_gradients_as_nn_conv(shape, features, kernel, strides, padding, use_bias):
    x = jax.random.normal(jax.random.key(1, impl="rbg"), shape)
    ours, flax_conv = (
        Conv(features, kernel, strides, padding, use_bias, kernel_init=conv_kernel_init),
        _flax_conv(*(features, kernel), strides, padding, use_bias),
    )
    params = ours.init(jax.random.key(0, impl="rbg"), x)
    expected_params = flax_conv.init(jax.random.key(0, impl="rbg"), x)
    assert jax.tree.structure(params) == jax.tree.structure(expected_params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected_params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours.apply(params, x), flax_conv.apply(params, x))
    got = jax.grad(lambda p, x: _sum_sin(ours, p, x), argnums=(0, 1))(params, x)
    expected = jax.grad(lambda p, x: _sum_sin(flax_conv, p, x), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def _reduce_sum_dtypes(jaxpr) -> list:
    dtypes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "reduce_sum":
            dtypes.append(eqn.invars[0].aval.dtype)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            dtypes += _reduce_sum_dtypes(sub)
    return dtypes


def test_bfloat16_bias_gradient_is_a_float32_sum_rounded_once():
    x = jax.random.normal(jax.random.key(1, impl="rbg"), (8, 12, 12, 1)).astype(jnp.bfloat16)
    cotangent = jax.random.normal(jax.random.key(2, impl="rbg"), (8, 12, 12, 6)).astype(jnp.bfloat16)
    ours, flax_conv = Conv(6, (5, 5)), _flax_conv(6, (5, 5), (1, 1), "SAME", True)
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), ours.init(jax.random.key(0, impl="rbg"), x))

    def bias_gradient(layer):
        def loss(p):
            return jnp.sum(layer.apply(p, x).astype(jnp.float32) * cotangent.astype(jnp.float32))

        return jax.grad(loss), jax.make_jaxpr(jax.grad(loss))(params).jaxpr

    grad, jaxpr = bias_gradient(ours)
    got = grad(params)["params"]["bias"]
    assert got.dtype == jnp.bfloat16
    # The reference: the same cotangents summed in float64, rounded to bfloat16 once.
    exact = np.asarray(cotangent, np.float64).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(got, np.float32), exact, rtol=2**-8, atol=1e-6)
    # No bfloat16 sum anywhere in our gradient; Flax's own layer has one (its bias gradient), so this can fail.
    assert jnp.bfloat16 not in _reduce_sum_dtypes(jaxpr)
    assert jnp.bfloat16 in _reduce_sum_dtypes(bias_gradient(flax_conv)[1])


def test_add_bias_under_vmap_equals_each_copy():
    y = jax.random.normal(jax.random.key(0, impl="rbg"), (3, 2, 4, 4, 5))
    bias = jax.random.normal(jax.random.key(1, impl="rbg"), (3, 5))
    g = jax.random.normal(jax.random.key(2, impl="rbg"), y.shape)
    out, vjp = jax.vjp(jax.vmap(add_bias), y, bias)
    dy, dbias = vjp(g)
    for k in range(3):
        np.testing.assert_allclose(out[k], y[k] + bias[k], rtol=1e-6)
        np.testing.assert_allclose(dbias[k], g[k].sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(dy, g)


def test_models_keep_their_parameter_names():
    # Checkpoints saved before this layer existed must still restore: LeNet's convs are 'conv1' and 'conv2',
    # each with a 'kernel' and a 'bias', as nn.Conv named them.
    model = create_model(tiny_digits_config(model__name="lenet").model, 10, cpu_layers())
    params = model.init(jax.random.key(0, impl="rbg"), jnp.ones((1, 28, 28, 1)), train=False)["params"]
    assert set(params["conv1"]) == set(params["conv2"]) == {"kernel", "bias"}
    assert params["conv1"]["kernel"].shape == (5, 5, 1, 6) and params["conv2"]["bias"].shape == (16,)
