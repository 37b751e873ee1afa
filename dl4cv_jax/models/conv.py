"""The convolution every model's `nn.Conv` runs: `lax.conv_general_dilated`, except a faster forward pass for
one-input-channel layers (grey images' first layer) on XLA:CPU.

Why: XLA:CPU's convolution is slow with one input channel. LeNet's first layer (28x28x1 -> 6, 5x5, batch 128)
took 8.4-10.5 ms forward against PyTorch's 1.5-2.4 ms on this project's 2-core CPU. As a sum over the k*k taps of
shifted input slices times a kernel row, XLA fuses the forward pass into one loop (1.4-1.6 ms). Two details make
it pay inside a train step (benchmarks/RESULTS.md: LeNet's step 3,929.8 -> 5,688.2 images/s):
- the backward pass is XLA's own convolution gradient (fast for these shapes); the tap sum's own gradient would be
  k*k full-size reductions;
- the sum's result goes through a conditional XLA cannot fold (its predicate, always true, reads the kernel), so
  XLA cannot fuse the 25-tap loop into every consumer and recompute it there (conv1's forward and kernel
  gradient: 9.94 ms without the conditional, 4.05 ms with it, 10.97-11.13 ms for XLA's convolution).
With three input channels (RGB stems) it gained nothing in ResNet-20's step, so only one channel takes this path.
Values equal the plain convolution up to float rounding (tested); every other layer, and other backends, use
`lax.conv_general_dilated` unchanged.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

# Input channels up to which a stride-1 conv on CPU takes the tap-sum forward pass (0 turns it off).
MAX_TAP_SUM_CHANNELS = 1
# The layout Flax's nn.Conv asks for with 2-D kernels: NHWC inputs and outputs, HWIO kernels.
_FLAX_2D = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))
_NHWC = ("NHWC", "HWIO", "NHWC")

Pads = tuple[tuple[int, int], tuple[int, int]]


def _xla_conv(lhs: jax.Array, rhs: jax.Array, pads: Pads) -> jax.Array:
    return lax.conv_general_dilated(lhs, rhs, (1, 1), pads, dimension_numbers=_NHWC)


def _kept_as_buffer(y: jax.Array, rhs: jax.Array) -> jax.Array:
    """`y` through a conditional whose predicate (x == x or x != x, for a kernel entry x) is always true but
    not foldable; the other branch, never taken, would give NaNs. Reading the replicated kernel costs no
    cross-device traffic."""
    first = rhs.reshape(-1)[0]
    return lax.cond((first == first) | (first != first), lambda v: v, lambda v: jnp.full_like(v, jnp.nan), y)


def _tap_sum_forward(lhs: jax.Array, rhs: jax.Array, pads: Pads) -> jax.Array:
    """sum over (dy, dx, c) of the input shifted by (dy, dx), channel c, times kernel row rhs[dy, dx, c, :],
    accumulated in float32 like XLA's convolution and returned in the input dtype."""
    kh, kw, channels, _ = rhs.shape
    padded = jnp.pad(lhs, ((0, 0), pads[0], pads[1], (0, 0))).astype(jnp.float32)
    height, width = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
    kernel = rhs.astype(jnp.float32)
    taps = (
        padded[:, dy : dy + height, dx : dx + width, c : c + 1] * kernel[dy, dx, c]
        for dy in range(kh)
        for dx in range(kw)
        for c in range(channels)
    )
    total = functools.reduce(jnp.add, taps).astype(jnp.result_type(lhs, rhs))
    return _kept_as_buffer(total, rhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def tap_sum_conv(lhs: jax.Array, rhs: jax.Array, pads: Pads) -> jax.Array:
    """A stride-1 NHWC/HWIO convolution with explicit `pads`: tap-sum forward, XLA's convolution gradient."""
    return _tap_sum_forward(lhs, rhs, pads)


def _tap_sum_conv_fwd(lhs: jax.Array, rhs: jax.Array, pads: Pads) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _tap_sum_forward(lhs, rhs, pads), (lhs, rhs)


def _tap_sum_conv_bwd(pads: Pads, residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, ...]:
    lhs, rhs = residuals
    _, vjp = jax.vjp(lambda a, b: _xla_conv(a, b, pads), lhs, rhs)
    return vjp(g.astype(jnp.result_type(lhs, rhs)))


tap_sum_conv.defvjp(_tap_sum_conv_fwd, _tap_sum_conv_bwd)


def _all_ones(values: Sequence[int] | None) -> bool:
    return values is None or all(v == 1 for v in values)


def uses_tap_sum(
    lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], dimension_numbers: Any, **options: Any
) -> bool:
    """Whether `conv_general_dilated` takes the tap-sum path: CPU backend, 2-D, Flax's layout, at most
    `MAX_TAP_SUM_CHANNELS` input channels, stride 1, no dilation, one group, default precision."""
    return (
        jax.default_backend() == "cpu"
        and lhs.ndim == 4
        and dimension_numbers == _FLAX_2D
        and rhs.shape[2] <= MAX_TAP_SUM_CHANNELS
        and _all_ones(window_strides)
        and _all_ones(options.get("lhs_dilation"))
        and _all_ones(options.get("rhs_dilation"))
        and options.get("feature_group_count", 1) == 1
        and options.get("batch_group_count", 1) == 1
        and options.get("precision") is None
        and options.get("preferred_element_type") is None
    )


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    dimension_numbers: Any = None,
    **options: Any,
) -> jax.Array:
    """Drop-in for `lax.conv_general_dilated`; the models pass it as `nn.Conv(..., conv_general_dilated=...)`."""
    if not uses_tap_sum(lhs, rhs, window_strides, dimension_numbers, **options):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, dimension_numbers=dimension_numbers, **options
        )
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    pads = tuple((int(low), int(high)) for low, high in padding)
    return tap_sum_conv(lhs, rhs, pads)
