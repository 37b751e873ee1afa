"""`backends.cpu.conv.conv_general_dilated`: its XLA:CPU paths equal XLA's convolution in values and gradients.

These are the paths where oneDNN is not available (no compiler, no kernel for the type) and in bfloat16, so every test
here runs with `conv.USE_ONEDNN` off; tests/models/test_onednn_conv.py covers the oneDNN paths."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dl4cv_jax.backends.cpu import conv
from dl4cv_jax.backends.cpu.layers import cpu_layers
from dl4cv_jax.models import create_model
from tests.conftest import tiny_digits_config

# Inputs and parameters are drawn with "rbg" keys: XLA:CPU compiles the default threefry generator for about a
# second per shape drawn, rbg in a fraction of that, and which values these are is beside the point.


@pytest.fixture(autouse=True)
def _xla_paths(monkeypatch):
    monkeypatch.setattr(conv, "USE_ONEDNN", False)


def _layers(features, kernel, padding, strides=(1, 1)):
    fast = nn.Conv(features, kernel, strides, padding=padding, conv_general_dilated=conv.conv_general_dilated)
    return fast, nn.Conv(features, kernel, strides, padding=padding)  # the second: Flax's own lax.conv_general_dilated


@pytest.mark.parametrize(
    ("shape", "kernel", "padding", "strides", "path"),
    [
        ((4, 11, 9, 1), (5, 5), "SAME", (1, 1), "tap_sum"),
        ((3, 8, 8, 1), (3, 3), "VALID", (1, 1), "tap_sum"),
        ((2, 7, 7, 1), (3, 2), ((2, 0), (1, 3)), (1, 1), "tap_sum"),
        ((4, 14, 14, 6), (5, 5), "VALID", (1, 1), "col2im"),  # LeNet's conv2
        ((3, 9, 8, 3), (3, 3), "SAME", (1, 1), "col2im"),
        ((2, 7, 7, 8), (3, 2), ((2, 0), (1, 3)), (1, 1), "col2im"),
        ((3, 8, 8, 5), (3, 3), ((1, 1), (1, 1)), (2, 2), "phase"),  # ResNets' downsampling 3x3
        ((2, 8, 8, 4), (1, 1), "VALID", (2, 2), "phase"),  # projection shortcut: most input rows get no gradient
        ((2, 15, 13, 3), (7, 7), ((3, 3), (3, 3)), (2, 2), "phase"),  # ResNet-50's stem, odd sizes
        ((2, 9, 10, 4), (3, 2), "SAME", (2, 1), "phase"),  # a different stride per axis
        ((2, 11, 11, 2), (2, 2), ((0, 2), (1, 0)), (3, 3), "phase"),  # kernel smaller than the stride
        ((2, 8, 8, 9), (3, 3), "SAME", (1, 1), "canonical"),
        ((2, 10, 9, 36), (3, 2), ((1, 2), (0, 1)), (2, 3), "canonical"),  # wide and strided: rows left unread
        ((2, 9, 9, 40), (3, 3), ((-1, 1), (1, 0)), (1, 2), "canonical"),  # a cropping pad
    ],
)
def test_cpu_paths_equal_xla_convolution_in_value_and_gradient(shape, kernel, padding, strides, path):
    x = jax.random.normal(jax.random.key(1, impl="rbg"), shape)
    fast, plain = _layers(6, kernel, padding, strides)
    params = plain.init(jax.random.key(0, impl="rbg"), x)
    assert conv.cpu_path(x, params["params"]["kernel"], strides, conv._FLAX_2D) == path

    def loss(p, x, layer):  # a nonlinear loss, so the gradient flows through non-trivial cotangents
        return jnp.sum(jnp.sin(layer.apply(p, x)))

    y_fast, y_plain = fast.apply(params, x), plain.apply(params, x)
    np.testing.assert_allclose(y_fast, y_plain, rtol=1e-5, atol=1e-5)
    g_fast = jax.grad(loss, argnums=(0, 1))(params, x, fast)
    g_plain = jax.grad(loss, argnums=(0, 1))(params, x, plain)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("channels", "strides", "expected"),
    [(1, (1, 1), "tap_sum"), (6, (1, 1), "canonical"), (6, (2, 2), "phase")],  # col2im is float32 only
)
def test_bfloat16_inputs_keep_their_dtype_and_stay_close(channels, strides, expected):
    x = jax.random.normal(jax.random.key(1, impl="rbg"), (4, 10, 10, channels)).astype(jnp.bfloat16)
    fast, plain = _layers(4, (3, 3), "SAME", strides)
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), plain.init(jax.random.key(0, impl="rbg"), x))
    assert conv.cpu_path(x, params["params"]["kernel"], strides, conv._FLAX_2D) == expected
    y_fast, y_plain = fast.apply(params, x), plain.apply(params, x)
    assert y_fast.dtype == y_plain.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y_fast, np.float32), np.asarray(y_plain, np.float32), atol=0.05)
    dx_fast = jax.grad(lambda x: jnp.sum(fast.apply(params, x).astype(jnp.float32)))(x)
    dx_plain = jax.grad(lambda x: jnp.sum(plain.apply(params, x).astype(jnp.float32)))(x)
    assert dx_fast.dtype == dx_plain.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(dx_fast, np.float32), np.asarray(dx_plain, np.float32), atol=0.05)
    dw_fast = jax.grad(lambda p: jnp.sum(fast.apply(p, x).astype(jnp.float32)))(params)["params"]["kernel"]
    dw_plain = jax.grad(lambda p: jnp.sum(plain.apply(p, x).astype(jnp.float32)))(params)["params"]["kernel"]
    assert dw_fast.dtype == dw_plain.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(dw_fast, np.float32), np.asarray(dw_plain, np.float32), rtol=0.02)


def test_each_layer_takes_its_path():
    x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    assert conv.cpu_path(x, w, (1, 1), conv._FLAX_2D) == "col2im"  # three input channels
    assert conv.cpu_path(jnp.ones((2, 8, 8, 9)), jnp.ones((3, 3, 9, 4)), (1, 1), conv._FLAX_2D) == "canonical"
    x1, w1 = jnp.ones((2, 8, 8, 1)), jnp.ones((3, 3, 1, 4))
    assert conv.cpu_path(x1, w1, (2, 2), conv._FLAX_2D) == "phase"  # stride 2
    assert conv.cpu_path(x1, w1, (1, 1), conv._FLAX_2D, rhs_dilation=(2, 2)) == "xla"
    assert "xla" == conv.cpu_path(
        x1, w1, (1, 1), lax.conv_dimension_numbers(x1.shape, w1.shape, ("NCHW", "OIHW", "NCHW"))
    )
    assert conv.cpu_path(x1, w1, (2, 2), conv._FLAX_2D, lhs_dilation=(2, 2)) == "xla"
    wide = jnp.ones((2, 8, 8, 64))  # strided and wide: XLA's input gradient is faster, unless the kernel is 1x1
    assert conv.cpu_path(wide, jnp.ones((3, 3, 64, 4)), (2, 2), conv._FLAX_2D) == "canonical"
    assert conv.cpu_path(wide, jnp.ones((1, 1, 64, 4)), (2, 2), conv._FLAX_2D) == "phase"
    # A strided conv's forward pass is XLA's own, so the drop-in gives exactly its answer.
    y = conv.conv_general_dilated(x1, w1, (2, 2), "SAME", dimension_numbers=conv._FLAX_2D)
    ref = lax.conv_general_dilated(x1, w1, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_array_equal(y, ref)


def test_lenet_on_grey_images_runs_its_first_layer_as_a_tap_sum(monkeypatch):
    # The compiled step keeps the tap sum as a buffer: a conditional reading the kernel, which XLA must not fold.
    monkeypatch.setattr(conv, "KEEP_CONV_INPUTS", False)  # the conv inputs' conditionals: test_conv_inputs.py
    model = create_model(tiny_digits_config(model__name="lenet").model, 10, cpu_layers())
    x = jnp.ones((2, 28, 28, 1))
    params = model.init(jax.random.key(0, impl="rbg"), x, train=False)
    hlo = jax.jit(lambda p: model.apply(p, x, train=False)).lower(params).compile().as_text()
    assert hlo.count(" conditional(") == 1
    monkeypatch.setattr(conv, "MAX_TAP_SUM_CHANNELS", 0)  # read while tracing: a new function traces anew
    plain_hlo = jax.jit(lambda p: model.apply(p, x, train=False)).lower(params).compile().as_text()
    assert plain_hlo.count(" conditional(") == 0


def test_phase_input_gradient_can_be_turned_off_and_skips_cropping_pads(monkeypatch):
    x, w = (
        jax.random.normal(jax.random.key(1, impl="rbg"), (2, 9, 9, 4)),
        jax.random.normal(jax.random.key(2, impl="rbg"), (3, 3, 4, 5)),
    )
    default = conv.MAX_PHASE_CHANNELS
    monkeypatch.setattr(conv, "MAX_PHASE_CHANNELS", 0)
    assert conv.cpu_path(x, w, (2, 2), conv._FLAX_2D) == "canonical"
    monkeypatch.setattr(conv, "MAX_PHASE_CHANNELS", default)
    # A negative (cropping) pad has no phase grid: the drop-in falls back to XLA's input gradient, written out.
    pads = ((-1, 1), (1, 0))
    assert conv.cpu_path(x, w, (2, 2), conv._FLAX_2D, pads) == "canonical"
    assert conv.cpu_path(x, w, (2, 2), conv._FLAX_2D, ((1, 1), (1, 0))) == "phase"

    def loss(conv_fn, x, w):
        return jnp.sum(jnp.sin(conv_fn(x, w, (2, 2), pads, dimension_numbers=conv._FLAX_2D)))

    got = jax.grad(loss, argnums=(1, 2))(conv.conv_general_dilated, x, w)
    expected = jax.grad(loss, argnums=(1, 2))(lax.conv_general_dilated, x, w)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _convolutions(hlo: str) -> list[str]:
    return [line.split("dim_labels=")[1].split(",")[0] for line in hlo.splitlines() if " convolution(" in line]


def test_gradients_inside_a_scan_reach_xla_cpu_in_its_standard_layout():
    # Inside a while loop XLA:CPU leaves a convolution in the dimension order it gets; autodiff's kernel gradient
    # (f01b_i01o->01bf) then runs as a generic loop, 50-80x slower here. The drop-in's gradients are all NHWC/HWIO.
    x = jax.random.normal(jax.random.key(1, impl="rbg"), (3, 4, 10, 10, 12))  # 3 steps of 4 images
    fast, plain = _layers(5, (3, 3), "SAME", (1, 1))
    params = plain.init(jax.random.key(0, impl="rbg"), x[0])

    def epoch(layer):
        def step(carry, batch):  # the input gradient too, as a layer below this one would need it
            p, input_grads = carry
            grads, dx = jax.grad(lambda p, x: jnp.sum(jnp.sin(layer.apply(p, x))), argnums=(0, 1))(p, batch)
            return (jax.tree.map(lambda a, b: a - 0.01 * b, p, grads), input_grads + dx), None

        return jax.jit(lambda p, x: lax.scan(step, (p, jnp.zeros_like(x[0])), x)[0])

    fast_hlo = epoch(fast).lower(params, x).compile().as_text()
    assert conv.cpu_path(x[0], params["params"]["kernel"], (1, 1), conv._FLAX_2D) == "canonical"
    assert _convolutions(fast_hlo) == ["b01f_01io->b01f"] * 3  # forward, input and kernel gradients
    assert "f01b_i01o->01bf" in _convolutions(epoch(plain).lower(params, x).compile().as_text())  # the premise
    for a, b in zip(jax.tree.leaves(epoch(fast)(params, x)), jax.tree.leaves(epoch(plain)(params, x)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # the generic loop sums in another order


def test_tap_sum_keeps_its_float32_total_as_the_buffer_in_bfloat16():
    # The barrier holds the float32 sum and the cast to bfloat16 comes after it: a fused loop that ends in that
    # cast ran 4.5x slower on XLA:CPU (LeNet's conv1: 2.11 against 0.47 ms).
    x = jnp.ones((2, 9, 9, 1), jnp.bfloat16)
    w = jnp.ones((3, 3, 1, 4), jnp.bfloat16)
    jaxpr = jax.make_jaxpr(lambda x, w: conv._tap_sum_forward(x, w, (1, 1), ((1, 1), (1, 1))))(x, w).jaxpr
    (cond,) = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "cond"]
    assert cond.outvars[0].aval.dtype == jnp.float32
    assert jaxpr.outvars[0].aval.dtype == jnp.bfloat16
