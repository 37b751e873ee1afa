"""The convolution every model's `nn.Conv` runs: `lax.conv_general_dilated`, with two rewrites for layers with
few input channels on XLA:CPU, whose convolutions are slowest there (benchmarks/RESULTS.md, 2-core CPU):

- One input channel (grey images' first layer): the forward pass as a sum over the k*k taps of shifted input
  slices times a kernel row, which XLA fuses into one loop. LeNet's conv1 (28x28x1 -> 6, 5x5, batch 128): 1.43-1.63
  ms against XLA's 8.39-10.54 ms (PyTorch 1.53-2.36 ms). The backward pass is XLA's own convolution gradient (the tap
  sum's would be k*k full-size reductions), and the sum goes through a conditional XLA cannot fold (its predicate,
  always true, reads the kernel): otherwise XLA fuses the 25-tap loop into every consumer and recomputes it there
  (conv1's forward and kernel gradient: 9.94 ms without the conditional, 4.05 ms with it, 10.97-11.13 ms for XLA's
  convolution). LeNet's train step: 4,193.0 -> 6,306.7 images/s.
- Two to `MAX_COL2IM_CHANNELS` input channels, float32 (LeNet's conv2, RGB stems): XLA's forward pass and kernel
  gradient, but the input gradient as one matmul and a sum of the k*k shifted tap planes (col2im), where XLA's
  transposed convolution is slow with few output channels. LeNet's conv2: 3.457 ms against XLA's 7.161 ms (5.777
  ms with the planes in NHWC, zero-padded and summed, as first written); train step 6,285.1 -> 7,156.6 images/s
  with the channel-major planes against the NHWC ones. A stem's input gradient is never computed (its input is
  the image), so stems keep XLA's speed.

Values equal the plain convolution up to float rounding (tested); strided, dilated or grouped layers, other
layouts, wider layers and other backends use `lax.conv_general_dilated` unchanged.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from dl4cv_jax.fusion_barrier import always_true, kept_as_buffer

# Input channels up to which a stride-1 conv on CPU takes the tap-sum forward pass (0 turns it off).
MAX_TAP_SUM_CHANNELS = 1
# Above that and up to this many input channels, its input gradient is a matmul + col2im (0 turns it off).
MAX_COL2IM_CHANNELS = 8
# The layout Flax's nn.Conv asks for with 2-D kernels: NHWC inputs and outputs, HWIO kernels.
_FLAX_2D = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))
_NHWC = ("NHWC", "HWIO", "NHWC")

Pads = tuple[tuple[int, int], tuple[int, int]]


def _xla_conv(lhs: jax.Array, rhs: jax.Array, pads: Pads) -> jax.Array:
    return lax.conv_general_dilated(lhs, rhs, (1, 1), pads, dimension_numbers=_NHWC)


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
    return kept_as_buffer(total, always_true(rhs))


def _col2im_input_gradient(g: jax.Array, rhs: jax.Array, pads: Pads, lhs: jax.Array) -> jax.Array:
    """The input gradient of a stride-1 conv as one matmul (each output pixel's gradient spread over its k*k*C
    input taps) and the k*k tap planes added in place into the padded input (col2im), cropped by the padding.

    The taps are laid out channel-major, (kh, kw, C, N, H, W), so each plane is one contiguous block that an
    in-place add writes into a (C, N, H, W) buffer: on XLA:CPU that is 3.46 ms for LeNet's conv2 against 5.78
    ms for the NHWC planes zero-padded and summed (benchmarks/RESULTS.md)."""
    batch, height, width, out_features = g.shape
    kh, kw, channels, _ = rhs.shape
    columns = jnp.dot(rhs.reshape(-1, out_features), g.reshape(-1, out_features).T)
    columns = columns.reshape(kh, kw, channels, batch, height, width)
    total = jnp.zeros((channels, batch, height + kh - 1, width + kw - 1), columns.dtype)
    for dy in range(kh):
        for dx in range(kw):
            total = total.at[:, :, dy : dy + height, dx : dx + width].add(columns[dy, dx])
    (top, _), (left, _) = pads
    return total[:, :, top : top + lhs.shape[1], left : left + lhs.shape[2]].transpose(1, 2, 3, 0)


def _xla_input_gradient(g: jax.Array, rhs: jax.Array, pads: Pads, lhs: jax.Array) -> jax.Array:
    """XLA's own input gradient (its transposed convolution), for the paths that keep it."""
    _, input_vjp = jax.vjp(lambda a: _xla_conv(a, rhs, pads), lhs)
    return input_vjp(g)[0]


# Each rewritten path: (forward pass, input gradient); the kernel gradient is always XLA's.
_PATHS = {
    "tap_sum": (_tap_sum_forward, _xla_input_gradient),
    "col2im": (_xla_conv, _col2im_input_gradient),
}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def rewritten_conv(lhs: jax.Array, rhs: jax.Array, pads: Pads, path: str) -> jax.Array:
    """A stride-1 NHWC/HWIO convolution with explicit `pads`, computed by `path` ('tap_sum' or 'col2im')."""
    return _PATHS[path][0](lhs, rhs, pads)


def _rewritten_conv_fwd(
    lhs: jax.Array, rhs: jax.Array, pads: Pads, path: str
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _PATHS[path][0](lhs, rhs, pads), (lhs, rhs)


def _rewritten_conv_bwd(
    pads: Pads, path: str, residuals: tuple[jax.Array, jax.Array], g: jax.Array
) -> tuple[jax.Array, jax.Array]:
    lhs, rhs = residuals
    g = g.astype(jnp.result_type(lhs, rhs))
    _, kernel_vjp = jax.vjp(lambda b: _xla_conv(lhs, b, pads), rhs)
    (kernel_gradient,) = kernel_vjp(g)
    return _PATHS[path][1](g, rhs, pads, lhs).astype(lhs.dtype), kernel_gradient


rewritten_conv.defvjp(_rewritten_conv_fwd, _rewritten_conv_bwd)


def _all_ones(values: Sequence[int] | None) -> bool:
    return values is None or all(v == 1 for v in values)


def cpu_path(
    lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], dimension_numbers: Any, **options: Any
) -> str:
    """Which implementation `conv_general_dilated` takes: 'tap_sum' or 'col2im' (by input channels, see the
    constants above; 'col2im' in float32 only) for a stride-1, undilated, one-group, default-precision 2-D conv
    in Flax's layout on the CPU backend; 'xla' for everything else."""
    simple = (
        jax.default_backend() == "cpu"
        and lhs.ndim == 4
        and dimension_numbers == _FLAX_2D
        and _all_ones(window_strides)
        and _all_ones(options.get("lhs_dilation"))
        and _all_ones(options.get("rhs_dilation"))
        and options.get("feature_group_count", 1) == 1
        and options.get("batch_group_count", 1) == 1
        and options.get("precision") is None
        and options.get("preferred_element_type") is None
    )
    if simple and rhs.shape[2] <= MAX_TAP_SUM_CHANNELS:
        return "tap_sum"
    if simple and rhs.shape[2] <= MAX_COL2IM_CHANNELS and lhs.dtype == rhs.dtype == jnp.float32:
        return "col2im"  # float32 only: in bfloat16 the matmul made LeNet's step slower (4,435.5 -> 3,297.0 img/s)
    return "xla"


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    dimension_numbers: Any = None,
    **options: Any,
) -> jax.Array:
    """Drop-in for `lax.conv_general_dilated`; the models pass it as `nn.Conv(..., conv_general_dilated=...)`."""
    path = cpu_path(lhs, rhs, window_strides, dimension_numbers, **options)
    if path == "xla":
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, dimension_numbers=dimension_numbers, **options
        )
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    pads = tuple((int(low), int(high)) for low, high in padding)
    return rewritten_conv(lhs, rhs, pads, path)
