"""`benchmarks/onednn_kernels.py`: the oneDNN passes it reads from a compiled step, and its timing call."""

import platform
import sys

import jax
import jax.numpy as jnp
import pytest

from benchmarks import onednn_kernels
from dl4cv_jax.backends.cpu import onednn_conv

pytestmark = pytest.mark.skipif(
    (sys.platform, platform.machine()) != ("linux", "x86_64"), reason="the oneDNN wheels are for Linux x86-64 only"
)


def test_the_passes_of_a_compiled_gradient_are_read_with_their_geometry_and_count():
    x, w = jnp.ones((2, 9, 9, 4)), jnp.ones((3, 3, 4, 6))
    strided, pads = ((2, 2), ((0, 1), (0, 1))), ((1, 1), (1, 1))  # a list of pads, and one value (dense<1>)

    def loss(x, w):
        y = onednn_conv.forward(x, w, *strided)
        z = onednn_conv.forward(jnp.tanh(x), w, (1, 1), pads)
        return jnp.sum(y**2) + jnp.sum(z**2)

    text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile().as_text()
    passes = onednn_kernels.convolution_passes(text)
    expected = {
        (direction, "float32", x.shape, w.shape, s, p)
        for direction in onednn_conv.DIRECTIONS
        for s, p in (strided, ((1, 1), pads))
    }
    assert set(passes) == expected
    assert all(count == 1 for count in passes.values())


def test_timing_runs_each_kernel_and_refuses_a_geometry_onednn_cannot_run():
    key = ("input_gradient", "float32", (2, 8, 8, 16), (3, 3, 16, 16), (1, 1), ((1, 1), (1, 1)))
    for with_rule in (True, False):
        milliseconds = onednn_kernels.time_pass(key, with_rule, 3)
        assert len(milliseconds) == 3 and all(0 < ms < 10_000 for ms in milliseconds)
    impossible = ("forward", "float32", (2, 8, 8, 16), (3, 3, 16, 16), (1, 1), ((-5, 0), (0, 0)))
    with pytest.raises(RuntimeError, match="oneDNN could not run"):
        onednn_kernels.time_pass(impossible, True, 1)
