"""`backends.cpu.batch_norm.BatchNorm`: Flax's `nn.BatchNorm` variables, values and gradients, computed by oneDNN in
training on the CPU (`backends.cpu.onednn_batch_norm`)."""

import platform
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl4cv_jax.backends.cpu import onednn_batch_norm
from dl4cv_jax.backends.cpu.batch_norm import BatchNorm

# Inputs and parameters are drawn with "rbg" keys: XLA:CPU compiles the default threefry generator for about a
# second per shape drawn, rbg in a fraction of that, and which values these are is beside the point.

pytestmark = pytest.mark.skipif(
    (sys.platform, platform.machine()) != ("linux", "x86_64"), reason="the oneDNN wheels are for Linux x86-64 only"
)
EPSILON, MOMENTUM = 1e-5, 0.9


def _layers(train: bool = True, relu: bool = False):
    return (
        BatchNorm(use_running_average=not train, momentum=MOMENTUM, epsilon=EPSILON, relu=relu),
        nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM, epsilon=EPSILON),
    )


def _apply(layer, variables, x, relu: bool = False):
    """(output, updated batch_stats); Flax's layer gets the ReLU after it that ours computes itself."""
    y, updated = layer.apply(variables, x, mutable=["batch_stats"])
    if relu and isinstance(layer, nn.BatchNorm):
        y = nn.relu(y)
    return y, updated


def _input(shape, dtype=jnp.float32, seed=0):
    return (jax.random.normal(jax.random.key(seed), shape) * 2.0 + 0.5).astype(dtype)


def _trained_variables(shape):
    """Variables with non-trivial scale, bias and running statistics, the same for both layers."""
    channels = shape[-1]
    keys = jax.random.split(jax.random.key(7, impl="rbg"), 4)
    return {
        "params": {
            "scale": jax.random.uniform(keys[0], (channels,), minval=0.5, maxval=1.5),
            "bias": jax.random.normal(keys[1], (channels,)),
        },
        "batch_stats": {
            "mean": jax.random.normal(keys[2], (channels,)),
            "var": jax.random.uniform(keys[3], (channels,), minval=0.5, maxval=2.0),
        },
    }


def test_oneDNN_takes_training_batches_here():
    assert onednn_batch_norm.applies(_input((4, 3, 3, 8)))
    assert onednn_batch_norm.applies(_input((4, 8)))
    assert not onednn_batch_norm.applies(_input((4, 3, 8)))  # 3-D: Flax's
    assert not onednn_batch_norm.applies(_input((4, 3, 3, 8), jnp.float16))


@pytest.mark.parametrize("shape", [(8, 6, 6, 5), (16, 12)])
def test_the_variables_are_flaxs_names_shapes_types_and_initial_values(shape):
    ours, flax_layer = _layers()
    x = _input(shape)
    mine, theirs = ours.init(jax.random.key(1, impl="rbg"), x), flax_layer.init(jax.random.key(1, impl="rbg"), x)
    assert jax.tree.structure(mine) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("elements_per_thread", [10**18, 1], ids=["one_thread", "every_thread"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(16, 8, 8, 16), (32, 12)])
def test_training_output_statistics_and_gradients_equal_flaxs_in_float32(shape, relu, elements_per_thread, monkeypatch):
    monkeypatch.setattr(onednn_batch_norm, "ELEMENTS_PER_THREAD", elements_per_thread)
    ours, flax_layer = _layers(relu=relu)
    variables, x = _trained_variables(shape), _input(shape)
    cotangent = _input(shape, seed=3)

    def loss(layer):
        def f(params, x):
            y, updated = _apply(layer, {**variables, "params": params}, x, relu)
            return jnp.sum(y * cotangent), (y, updated["batch_stats"])

        return jax.jit(jax.grad(f, argnums=(0, 1), has_aux=True))(variables["params"], x)

    (mine_grads, (mine_y, mine_stats)), (their_grads, (their_y, their_stats)) = loss(ours), loss(flax_layer)
    np.testing.assert_allclose(mine_y, their_y, rtol=1e-5, atol=1e-5)
    assert not relu or float(jnp.min(mine_y)) == 0.0
    for a, b in zip(jax.tree.leaves(mine_stats), jax.tree.leaves(their_stats), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(mine_grads), jax.tree.leaves(their_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(b))))


def test_the_compiled_step_runs_oneDNNs_passes_in_training_only():
    x = _input((16, 8, 8, 16))
    ours, _ = _layers(relu=True)
    variables = ours.init(jax.random.key(0, impl="rbg"), x)

    def step(params, x):
        y, _ = ours.apply({**variables, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(y**2)

    hlo = jax.jit(jax.grad(step, argnums=(0, 1))).lower(variables["params"], x).compile().as_text()
    assert "dl4cv_onednn_batch_norm_forward" in hlo and "dl4cv_onednn_batch_norm_backward" in hlo
    assert " maximum(" not in hlo and "compare(" not in hlo  # the ReLU and its mask are inside oneDNN's passes
    evaluation, _ = _layers(train=False)
    hlo = jax.jit(lambda x: evaluation.apply(variables, x)).lower(x).compile().as_text()
    assert "dl4cv_onednn_batch_norm" not in hlo


def test_bfloat16_activations_and_parameters_give_flaxs_values_and_type():
    shape = (32, 8, 8, 16)
    ours, flax_layer = _layers()
    variables = _trained_variables(shape)
    bf16 = {**variables, "params": jax.tree.map(lambda p: p.astype(jnp.bfloat16), variables["params"])}
    x = _input(shape, jnp.bfloat16)
    mine, mine_stats = ours.apply(bf16, x, mutable=["batch_stats"])
    theirs, their_stats = flax_layer.apply(bf16, x, mutable=["batch_stats"])
    assert mine.dtype == theirs.dtype == jnp.bfloat16
    # Both normalise in float32 and round once to bfloat16: they differ by at most one bfloat16 step.
    np.testing.assert_allclose(np.asarray(mine, np.float32), np.asarray(theirs, np.float32), rtol=8e-3, atol=8e-3)
    for a, b in zip(jax.tree.leaves(mine_stats), jax.tree.leaves(their_stats), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    float32_params = ours.apply(variables, x, mutable=["batch_stats"])[0]
    assert float32_params.dtype == flax_layer.apply(variables, x, mutable=["batch_stats"])[0].dtype == jnp.float32


@pytest.mark.parametrize("relu", [False, True])
def test_the_backward_pass_equals_the_plain_formula_and_flaxs_vjp(relu):
    shape = (8, 5, 5, 6)
    x, dy = _input(shape), _input(shape, seed=4)
    scale, shift = jnp.linspace(0.5, 1.5, 6), jnp.linspace(-1.0, 1.0, 6)
    y, mean, variance = onednn_batch_norm.batch_norm(x, scale, shift, EPSILON, relu)
    np.testing.assert_allclose(mean, np.mean(np.asarray(x), axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance, np.var(np.asarray(x), axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)

    def flax_style(x, scale, shift):
        centred = x - jnp.mean(x, axis=(0, 1, 2))
        y = centred * jax.lax.rsqrt(jnp.mean(centred**2, axis=(0, 1, 2)) + EPSILON) * scale + shift
        return nn.relu(y) if relu else y

    expected_y, vjp = jax.vjp(flax_style, x, scale, shift)
    np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)
    expected = vjp(dy)
    _, ours = jax.vjp(lambda *a: onednn_batch_norm.batch_norm(*a, EPSILON, relu)[0], x, scale, shift)
    reference = onednn_batch_norm.reference_backward(x, dy, mean, variance, scale, shift, EPSILON, relu)
    for got, formula, want in zip(ours(dy), reference, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(formula, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("relu", [False, True])
def test_a_gradient_penalty_second_derivative_equals_flaxs(relu):
    shape = (8, 4, 4, 3)
    ours, flax_layer = _layers(relu=relu)
    variables, x = _trained_variables(shape), _input(shape)
    cotangent = _input(shape, seed=5)

    def penalty(layer):
        def input_gradient(x):
            return jax.grad(lambda x: jnp.sum(_apply(layer, variables, x, relu)[0] * cotangent))(x)

        return jax.grad(lambda x: jnp.sum(input_gradient(x) ** 2))(x)

    np.testing.assert_allclose(penalty(ours), penalty(flax_layer), rtol=1e-3, atol=1e-4)


def test_under_vmap_each_copy_is_normalised_on_its_own():
    ours, _ = _layers()
    xs = jnp.stack([_input((8, 4, 4, 3), seed=s) for s in range(3)])
    variables = ours.init(jax.random.key(0, impl="rbg"), xs[0])
    batched, _ = jax.vmap(lambda x: ours.apply(variables, x, mutable=["batch_stats"]))(xs)
    for x, y in zip(xs, batched, strict=True):
        np.testing.assert_allclose(y, ours.apply(variables, x, mutable=["batch_stats"])[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("poisoned", ["input", "scale"])
def test_a_nan_or_infinity_comes_out_as_nan_through_the_fused_relu(poisoned, dtype):
    # max(NaN, 0) is 0 on x86: without care a fused ReLU would hide a diverged run from the loss check.
    shape = (16, 4, 4, 8)
    ours, flax_layer = _layers(relu=True)
    variables, x = _trained_variables(shape), _input(shape, dtype)
    if poisoned == "input":
        x = x.at[3, 1, 2, 5].set(jnp.inf)
    else:
        variables["params"]["scale"] = variables["params"]["scale"].at[2].set(jnp.nan)
    mine, _ = _apply(ours, variables, x, relu=True)
    theirs, _ = _apply(flax_layer, variables, x, relu=True)
    assert bool(jnp.isnan(theirs).any())
    if onednn_batch_norm.applies(x):  # oneDNN's pass: the whole output (bfloat16 needs AVX-512)
        assert bool(jnp.isnan(mine).all())
    else:  # Flax's layer: NaN where Flax's own is
        np.testing.assert_array_equal(jnp.isnan(mine), jnp.isnan(theirs))


def test_a_shape_onednn_cannot_take_runs_flaxs_layer(monkeypatch):
    # On a processor where oneDNN has no implementation (the workspace query says -1), training must not fail.
    x = _input((16, 8, 8, 16))
    monkeypatch.setattr(onednn_batch_norm, "workspace_bytes", lambda shape, dtype: -1)
    assert not onednn_batch_norm.applies(x)
    ours, flax_layer = _layers(relu=True)
    variables = ours.init(jax.random.key(0, impl="rbg"), x)
    hlo = jax.jit(lambda x: _apply(ours, variables, x, relu=True)[0]).lower(x).compile().as_text()
    assert "dl4cv_onednn_batch_norm" not in hlo
    mine, theirs = _apply(ours, variables, x, relu=True)[0], _apply(flax_layer, variables, x, relu=True)[0]
    np.testing.assert_array_equal(mine, theirs)
