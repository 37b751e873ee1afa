"""oneDNN's batch normalization (training mode) inside jitted JAX programs on the CPU, with its gradient.

Why: XLA:CPU 0.10 gives a BatchNorm's per-channel sums to YNN's reductions, which do not fuse the cast of a
bfloat16 input to float32, so each sum first writes the whole input again in float32; the normalised value and
the backward pass's terms are float32 buffers too. A bfloat16 BatchNorm + ReLU, forward and backward, took as long
as in float32. oneDNN's primitives (`onednn_batch_norm.cc`, built into the library `onednn_conv.py` compiles)
read and write activations in their own type and keep float32 inside, so they beat Flax's BatchNorm + ReLU in
both types and by most in bfloat16 (per-shape times in benchmarks/RESULTS.md, "BatchNorm on oneDNN").

`batch_norm(x, scale, shift, epsilon)` returns the normalised `x` (NHWC or NC, float32 or bfloat16) and the batch
mean and biased variance (float32, as Flax's BatchNorm computes them). Its gradient is oneDNN's backward pass; the
gradient of that (a second derivative, rarely wanted) is the plain JAX formula's, so every order works. The
statistics are for running averages: they are returned without a gradient (`lax.stop_gradient`).
"""

import ctypes
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dl4cv_jax.backends.cpu import onednn_conv

TYPES = (jnp.float32, jnp.bfloat16)
# One OpenMP thread per this many activations (`onednn_conv.openmp_threads`). Smaller BatchNorms run on the calling
# XLA thread alone: on layers as small as the digits CNN's (32x8x8x32, 65,536 values) a second thread's fork and
# join cost far more than it gave, and made the whole train step several times slower. ResNet-20's (524,288 to
# 2,097,152) keep both; one thread was no faster there (benchmarks/RESULTS.md, "Small oneDNN passes on one
# thread").
ELEMENTS_PER_THREAD = 250_000


def applies(x: jax.Array) -> bool:
    """Whether `batch_norm` can take `x`: NHWC or NC, float32 or bfloat16, oneDNN available here (the CPU backend
    on one device: a custom call has no sharding rule, so several devices keep Flax's BatchNorm), and a oneDNN
    implementation for its shape and type on this processor."""
    if not (x.ndim in (2, 4) and x.dtype in TYPES and onednn_conv.available()):
        return False
    return workspace_bytes(tuple(x.shape), jnp.dtype(x.dtype).name) >= 0


def _channels(x: jax.Array) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((x.shape[-1],), jnp.float32)


@functools.cache
def workspace_bytes(shape: tuple[int, ...], dtype: str) -> int:
    """The size of the ReLU mask oneDNN's fused BatchNorm + ReLU writes for an NHWC or NC input; -1 where oneDNN
    has no implementation of it for that shape and type on this processor (`applies` then says no)."""
    n, h, w, c = shape if len(shape) == 4 else (shape[0], 1, 1, shape[1])
    function = onednn_conv._library().Dl4cvOnednnBatchNormWorkspaceBytes
    function.restype = ctypes.c_int64
    return function(*(ctypes.c_int64(d) for d in (n, h, w, c)), int(dtype == "bfloat16"))


def _workspace(x: jax.Array, relu: bool) -> jax.ShapeDtypeStruct:
    size = workspace_bytes(tuple(x.shape), jnp.dtype(x.dtype).name) if relu else 1
    return jax.ShapeDtypeStruct((size,), jnp.uint8)


def _threads(x: jax.Array) -> np.int64:
    return np.int64(onednn_conv.openmp_threads(x.size, ELEMENTS_PER_THREAD))


def _forward_call(x: jax.Array, scale: jax.Array, shift: jax.Array, epsilon: float, relu: bool):
    results = (jax.ShapeDtypeStruct(x.shape, x.dtype), _channels(x), _channels(x), _workspace(x, relu))
    call = onednn_conv.custom_call("dl4cv_onednn_batch_norm_forward", results)
    return call(x, scale, shift, epsilon=np.float32(epsilon), relu=relu, threads=_threads(x))


def reference_backward(x, dy, mean, variance, scale, shift, epsilon: float, relu: bool = False):
    """BatchNorm's (and with `relu` the fused ReLU's) input, scale and shift gradients in plain JAX (float32
    inside): the same formula as oneDNN's, for the second derivative and for tests."""
    axes = tuple(range(x.ndim - 1))
    count = np.prod([x.shape[a] for a in axes])
    inverse_std = lax.rsqrt(variance + epsilon)
    normalised = (x.astype(jnp.float32) - mean) * inverse_std
    dy32 = dy.astype(jnp.float32)
    if relu:
        dy32 = jnp.where(normalised * scale + shift > 0, dy32, 0.0)
    dshift = jnp.sum(dy32, axis=axes)
    dscale = jnp.sum(dy32 * normalised, axis=axes)
    dx = scale * inverse_std * (dy32 - dshift / count - normalised * dscale / count)
    return dx.astype(x.dtype), dscale, dshift


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _backward(x, dy, mean, variance, scale, shift, workspace, epsilon: float, relu: bool):
    del shift  # oneDNN reads the ReLU's mask from `workspace`; the formula behind the second derivative needs it
    results = (jax.ShapeDtypeStruct(x.shape, x.dtype), _channels(x), _channels(x))
    call = onednn_conv.custom_call("dl4cv_onednn_batch_norm_backward", results)
    return call(
        x, dy.astype(x.dtype), mean, variance, scale, workspace, epsilon=np.float32(epsilon), relu=relu,
        threads=_threads(x),
    )  # fmt: skip


def _backward_fwd(x, dy, mean, variance, scale, shift, workspace, epsilon: float, relu: bool):
    operands = (x, dy, mean, variance, scale, shift)
    return _backward(*operands, workspace, epsilon, relu), (operands, workspace)


def _backward_bwd(epsilon: float, relu: bool, residuals, cotangents):
    operands, workspace = residuals
    _, vjp = jax.vjp(lambda *args: reference_backward(*args, epsilon, relu), *operands)
    return (*vjp(cotangents), np.zeros(workspace.shape, jax.dtypes.float0))


_backward.defvjp(_backward_fwd, _backward_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _normalise(x: jax.Array, scale: jax.Array, shift: jax.Array, epsilon: float, relu: bool):
    return _forward_call(x, scale, shift, epsilon, relu)


def _normalise_fwd(x, scale, shift, epsilon: float, relu: bool):
    # Through `_normalise` itself, so that a derivative of the backward pass sees it as differentiable.
    y, mean, variance, workspace = _normalise(x.value, scale.value, shift.value, epsilon, relu)
    return (y, mean, variance, workspace), (x.value, mean, variance, scale.value, shift.value, workspace)


def _normalise_bwd(epsilon: float, relu: bool, residuals, cotangents):
    x, mean, variance, scale, shift, workspace = residuals
    dy, dmean, dvariance, _ = cotangents
    dy = _instantiated(dy, x)
    dx, dscale, dshift = _backward(x, dy, mean, variance, scale, shift, workspace, epsilon, relu)
    # The statistics leave `batch_norm` without a gradient, so their cotangents are zero unless a second
    # derivative differentiates through the backward pass, which reads them.
    if not all(isinstance(c, jax.custom_derivatives.SymbolicZero) for c in (dmean, dvariance)):
        dmean, dvariance = (_instantiated(c, mean) for c in (dmean, dvariance))
        count = np.prod(x.shape[:-1])
        statistics = (dmean + 2.0 * dvariance * (x.astype(jnp.float32) - mean)) / count
        dx = (dx.astype(jnp.float32) + statistics).astype(x.dtype)
    return dx, dscale, dshift


def _instantiated(cotangent, like: jax.Array) -> jax.Array:
    if isinstance(cotangent, jax.custom_derivatives.SymbolicZero):
        return jnp.zeros_like(like)
    return cotangent


_normalise.defvjp(_normalise_fwd, _normalise_bwd, symbolic_zeros=True)


def batch_norm(
    x: jax.Array, scale: jax.Array, shift: jax.Array, epsilon: float, relu: bool = False
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(x - mean) / sqrt(variance + epsilon) * scale + shift over all axes but the last, in `x`'s dtype (with
    `relu`, its ReLU, in the same pass), and the batch mean and biased variance (float32, no gradient). `scale`
    and `shift` are used in float32."""
    scale, shift = scale.astype(jnp.float32), shift.astype(jnp.float32)
    y, mean, variance, _ = _normalise(x, scale, shift, float(epsilon), bool(relu))
    return y, lax.stop_gradient(mean), lax.stop_gradient(variance)
