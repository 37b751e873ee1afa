"""`backends.cpu.unrolled_vmap` and the conv drop-in under `jax.vmap`: one convolution per copy, the same values.

The compiled-HLO checks look at XLA's convolutions, so they run with `conv.USE_ONEDNN` off (oneDNN's are custom
calls, one per copy: test_onednn_conv.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dl4cv_jax.backends.cpu import conv
from dl4cv_jax.backends.cpu.unrolled_vmap import unrolled_under_vmap

# Inputs and parameters are drawn with "rbg" keys: XLA:CPU compiles the default threefry generator for about a
# second per shape drawn, rbg in a fraction of that, and which values these are is beside the point.

K = 3


def _loss(conv_fn, w, x):
    return jnp.sum(jnp.sin(conv_fn(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=conv._FLAX_2D)))


@pytest.fixture
def xla_paths(monkeypatch):
    monkeypatch.setattr(conv, "USE_ONEDNN", False)


def _grouped(hlo: str) -> list[bool]:
    return ["feature_group_count=" in line for line in hlo.splitlines() if " convolution(" in line]


def test_a_function_runs_once_per_copy_when_every_argument_is_batched():
    def matmul(a, b):
        return a @ b, a.sum()

    a, b = (
        jax.random.normal(jax.random.key(0, impl="rbg"), (K, 2, 4)),
        jax.random.normal(jax.random.key(1, impl="rbg"), (K, 4, 5)),
    )
    unrolled = jax.vmap(unrolled_under_vmap(matmul))
    assert str(jax.make_jaxpr(unrolled)(a, b)).count("dot_general") == K  # one unbatched product per copy
    for g, e in zip(unrolled(a, b), jax.vmap(matmul)(a, b), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-6)
    shared = jax.vmap(unrolled_under_vmap(matmul), in_axes=(0, None))  # JAX's own rule: one batched product
    assert str(jax.make_jaxpr(shared)(a, b[0])).count("dot_general") == 1
    np.testing.assert_allclose(shared(a, b[0])[0], jnp.einsum("kij,jl->kil", a, b[0]), rtol=1e-5)


def test_vmapped_models_run_ungrouped_convolutions_with_the_values_of_separate_ones(xla_paths):
    x = jax.random.normal(
        jax.random.key(1, impl="rbg"), (K, 4, 8, 8, 12)
    )  # K copies: own batches, own kernels (vmap_seeds)
    w = jax.random.normal(jax.random.key(2, impl="rbg"), (K, 3, 3, 12, 5))
    grads = jax.jit(jax.vmap(jax.grad(lambda w, x: _loss(conv.conv_general_dilated, w, x), argnums=(0, 1))))
    assert conv.cpu_path(x[0], w[0], (1, 1), conv._FLAX_2D) == "canonical"
    assert _grouped(grads.lower(w, x).compile().as_text()) == [False] * (3 * K)  # value, input and kernel gradient
    separate = [
        jax.grad(lambda w, x: _loss(lax.conv_general_dilated, w, x), argnums=(0, 1))(w[i], x[i]) for i in range(K)
    ]
    for got, expected in zip(grads(w, x), zip(*separate, strict=True), strict=True):
        np.testing.assert_allclose(got, jnp.stack(expected), rtol=1e-5, atol=1e-5)


def test_a_kernel_shared_by_every_copy_keeps_one_batched_convolution(xla_paths):
    x, w = (
        jax.random.normal(jax.random.key(1, impl="rbg"), (K, 4, 8, 8, 12)),
        jax.random.normal(jax.random.key(2, impl="rbg"), (3, 3, 12, 5)),
    )
    forward = jax.jit(
        jax.vmap(lambda x: conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=conv._FLAX_2D))
    )
    assert _grouped(forward.lower(x).compile().as_text()) == [False]
    expected = lax.conv_general_dilated(x.reshape(-1, 8, 8, 12), w, (1, 1), "SAME", dimension_numbers=conv._FLAX_2D)
    np.testing.assert_allclose(forward(x), expected.reshape(K, 4, 8, 8, 5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_onednn", [False, True])
def test_the_drop_in_stays_twice_differentiable(use_onednn, monkeypatch):
    # A gradient penalty differentiates the gradient; custom_vmap alone has no reverse-mode rule, nor an FFI call.
    monkeypatch.setattr(conv, "USE_ONEDNN", use_onednn)
    x, w = (
        jax.random.normal(jax.random.key(1, impl="rbg"), (2, 8, 8, 12)),
        jax.random.normal(jax.random.key(2, impl="rbg"), (3, 3, 12, 5)),
    )

    def penalty(conv_fn, w):
        return jnp.sum(jax.grad(lambda x: _loss(conv_fn, w, x))(x) ** 2)

    expected_path = "onednn" if use_onednn else "canonical"
    assert conv.cpu_path(x, w, (1, 1), conv._FLAX_2D, ((1, 1), (1, 1))) == expected_path
    got = jax.grad(penalty, argnums=1)(conv.conv_general_dilated, w)
    expected = jax.grad(penalty, argnums=1)(lax.conv_general_dilated, w)
    # Entries reach ~2,000 and cancel: float32 rounding of the sums is relative to the largest, not to each.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * float(jnp.abs(expected).max()))
