"""The CPU backend's 2x2/2 max pool (`Layers.max_pool_2x2`: CNN, VGG, LeNet-5).

Same values and the same gradient as `nn.max_pool(x, (2, 2), (2, 2))`, ties included (the gradient goes to the
first maximum of each window in row-major order, as `reduce_window`'s does), but written so that XLA:CPU runs
both passes as elementwise loops: the forward pass is a maximum of the four strided slices, and the backward
pass compares the input with the saved output. `nn.max_pool`'s gradient is a select-and-scatter that XLA:CPU runs
as a scatter, and `jnp.max`'s is a divide by the number of ties (another reduction). On LeNet's conv1 pool
(128x28x28x6) the elementwise passes beat both a reshape max and `nn.max_pool` (benchmarks/RESULTS.md).
"""

import jax
import jax.numpy as jnp


def _window_max(x: jax.Array) -> jax.Array:
    top = jnp.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2])
    bottom = jnp.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2])
    return jnp.maximum(top, bottom)


@jax.custom_vjp
def _even_max_pool(x: jax.Array) -> jax.Array:
    return _window_max(x)


def _even_max_pool_fwd(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    pooled = _window_max(x)
    return pooled, (x, pooled)


def _even_max_pool_bwd(residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array]:
    """g to the first input equal to its window's maximum (row-major order within the window), 0 elsewhere."""
    x, pooled = residuals
    batch, height, width, channels = x.shape
    windows = x.reshape(batch, height // 2, 2, width // 2, 2, channels)
    hit = windows == pooled[:, :, None, :, None, :]
    h00, h01, h10, h11 = hit[:, :, 0, :, 0], hit[:, :, 0, :, 1], hit[:, :, 1, :, 0], hit[:, :, 1, :, 1]
    firsts = (h00, h01 & ~h00, h10 & ~(h00 | h01), h11 & ~(h00 | h01 | h10))
    zero = jnp.zeros_like(g)
    g00, g01, g10, g11 = (jnp.where(first, g, zero) for first in firsts)
    rows = jnp.stack([jnp.stack([g00, g01], axis=3), jnp.stack([g10, g11], axis=3)], axis=2)
    return (rows.reshape(x.shape),)


_even_max_pool.defvjp(_even_max_pool_fwd, _even_max_pool_bwd)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2/2 max pool of an NHWC batch. An odd last row or column is dropped (as `nn.max_pool`'s VALID padding
    does); a side already below 2 is left as it is, so tiny inputs never shrink to 0.

    A bfloat16 or float16 batch is pooled in float32 and cast back: the same values and gradients bit for bit (a
    maximum and its routed gradient copy values, they never round), but XLA:CPU, which computes low-precision
    arithmetic in float32, then no longer rounds to bfloat16 and back after every maximum and select."""
    _, height, width, _ = x.shape
    if min(height, width) < 2:
        return x
    even = x[:, : height // 2 * 2, : width // 2 * 2, :]
    if jnp.dtype(x.dtype).itemsize < 4 and jnp.issubdtype(x.dtype, jnp.floating):
        return _even_max_pool(even.astype(jnp.float32)).astype(x.dtype)
    return _even_max_pool(even)
