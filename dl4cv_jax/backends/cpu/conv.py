"""The convolution of the CPU backend's conv layer (`Layers.conv` of `layers.py`: `conv_layer.Conv`, Flax's `nn.Conv`
on this module's `conv_general_dilated`): `lax.conv_general_dilated`, oneDNN's where it has a kernel for the layer,
else XLA's with its gradients written out for XLA:CPU and three rewrites for layers with few input channels, whose
convolutions are slowest there. The measurements behind each path and threshold are in benchmarks/RESULTS.md;
docs/cpu_backend.md says which path a layer takes.

- Path 'onednn', float32 and bfloat16, one device (`onednn_conv.py`): the forward pass and both gradients are
  oneDNN's, the library PyTorch's CPU convolutions run on, called as XLA custom calls. Each pass is faster than
  XLA:CPU's, the kernel gradient most of all, and so is the whole train step. A one-channel layer keeps the tap
  sum's forward pass below ('tap_sum_onednn'; `cpu_path` says why). Where oneDNN is not available (no compiler
  or wheel, float16, several devices), or has no kernel for the layer's type on this processor (bfloat16 on a
  processor without AVX-512: `onednn_conv.supports`), the layer takes the XLA paths below. (`--config.backend=xla`
  never reaches this module: it builds Flax's own layers.)
- Every plain 2-D conv on CPU (path 'canonical', and the kernel gradient of the three rewrites below): the input
  and kernel gradients are the convolutions XLA's autodiff builds, with their operands transposed here into the
  NHWC/HWIO form of XLA:CPU's fast convolution kernels. Autodiff leaves the kernel gradient in another dimension
  order; at the top level XLA:CPU transposes it itself, but inside a while loop (the whole-epoch `lax.scan`,
  `data.scan_epoch`) it did not and ran a generic loop instead, so a scanned epoch ran many times slower than the
  step-by-step loop. Written out, the gradients run the same kernels in both places, so the scanned epoch keeps
  pace with the step-by-step loop, with bit-identical float32 values and an unchanged step-by-step speed.
- One input channel (grey images' first layer, e.g. LeNet's conv1, 28x28x1 -> 6, 5x5), where XLA:CPU's own
  convolution is slow: the forward pass as a sum over the k*k taps of shifted input slices times a kernel row,
  which XLA fuses into one loop. The backward pass is the convolution gradient above (the tap sum's would be k*k
  full-size reductions), and the sum goes through a conditional XLA cannot fold (its predicate, always true, reads
  the kernel): otherwise XLA fuses the 25-tap loop into every consumer and recomputes it there, which cost more
  than the tap sum saved.
- Two to `MAX_COL2IM_CHANNELS` input channels, float32 (LeNet's conv2, RGB stems): XLA's forward pass, the
  kernel gradient above, but the input gradient as one matmul and a sum of the k*k shifted tap planes (col2im),
  where XLA's transposed convolution is slow with few output channels. The planes are laid out channel-major, not
  NHWC as first written (`_col2im_input_gradient` says why). A stem's input gradient is never computed (its input
  is the image), so stems keep XLA's speed.
- Strided layers (ResNets' downsampling convs and projection shortcuts): XLA's forward pass, the kernel gradient
  above, but the input gradient as one stride-1 convolution of the output gradient, whose s*s*C output channels are
  the input's s*s phases (pixels whose coordinates have the same remainders mod s), interleaved back by a
  reshape (depth-to-space). XLA:CPU computes a strided conv's input gradient as a convolution of the zero-dilated
  output gradient, which is slower with few channels (e.g. ResNet-20's 32x32x16 -> 32 layer, a 1x1 stride-2
  shortcut 32x32x64 -> 128). With 64 or more channels XLA's is faster, as the phase convolution computes 16/9 as
  many products for a 3x3 kernel at stride 2; hence `MAX_PHASE_CHANNELS`.

Under `jax.vmap` over both inputs and kernels (vmap_seeds), each of these convolutions and its gradients runs
once per copy rather than as one grouped convolution (`unrolled_vmap.py`). Values equal the plain convolution up
to float rounding (tested); dilated or grouped layers, other layouts and other backends use
`lax.conv_general_dilated` unchanged.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from dl4cv_jax.backends.cpu import onednn_conv
from dl4cv_jax.backends.cpu.fusion_barrier import always_true, kept_as_buffer
from dl4cv_jax.backends.cpu.onednn_conv import NHWC as _NHWC  # the names of Flax's 2-D layout
from dl4cv_jax.backends.cpu.onednn_conv import Pads, Strides
from dl4cv_jax.backends.cpu.unrolled_vmap import unrolled_under_vmap

# Input channels up to which a stride-1 conv on CPU takes the tap-sum forward pass (0 turns it off).
MAX_TAP_SUM_CHANNELS = 1
# Above that and up to this many input channels, its input gradient is a matmul + col2im (0 turns it off).
MAX_COL2IM_CHANNELS = 8
# Up to this many input channels, a strided conv's input gradient is the phase convolution (0 turns it off);
# kernels no larger than their stride (1x1 shortcuts) take it at any width.
MAX_PHASE_CHANNELS = 32
# Whether float32 and bfloat16 convs on CPU run on oneDNN where it is available (`onednn_conv.available()`).
USE_ONEDNN = True
# At every size: with small passes on one OpenMP thread (onednn_conv.MACS_PER_THREAD), oneDNN's convolutions beat
# XLA's on the smallest layers too, so no size threshold leaves layers to XLA (one under 2**23 multiply-adds did
# while every oneDNN call ran on every core; ResNet-20's batch-1 latency in benchmarks/RESULTS.md).
# The layout Flax's nn.Conv asks for with 2-D kernels: NHWC inputs and outputs, HWIO kernels.
_FLAX_2D = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))

# The paths whose convolutions (and gradients) XLA never fuses into: oneDNN custom calls, and the tap sum kept
# as a buffer by its own conditional.
UNFUSED_PATHS = ("onednn", "tap_sum_onednn")
# Whether the other paths get their input through `kept_as_buffer`. Why: the kernel gradient of a convolution
# reads the layer's input with batch and channels swapped, so XLA:CPU transposes it first, and its fusion pass
# pulls the cheap elementwise producers of that input (BatchNorm, ReLU, the residual add) into the transpose
# instead of reading the buffer the forward pass wrote; along a ResNet's identity shortcuts this chained back
# through every block of a stage (benchmarks/RESULTS.md, "conv inputs"). Values and gradients are unchanged.
# oneDNN's passes read buffers anyway, so there the conditional would only cost a copy and a dispatch.
KEEP_CONV_INPUTS = True


def _xla_conv(lhs: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads) -> jax.Array:
    return lax.conv_general_dilated(lhs, rhs, strides, pads, dimension_numbers=_NHWC)


def _tap_sum_forward(lhs: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads) -> jax.Array:
    """sum over (dy, dx, c) of the input shifted by (dy, dx), channel c, times kernel row rhs[dy, dx, c, :],
    accumulated in float32 like XLA's convolution and returned in the input dtype.

    The buffer holds the float32 sum and the cast comes after it: XLA:CPU ran the sum as one loop ending in a cast
    to bfloat16 several times slower than the same loop without the cast, which held back LeNet's whole bfloat16
    step (benchmarks/RESULTS.md, "bfloat16 on XLA:CPU")."""
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
    total = kept_as_buffer(functools.reduce(jnp.add, taps), always_true(rhs))
    return total.astype(jnp.result_type(lhs, rhs))


def _col2im_input_gradient(g: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, lhs: jax.Array) -> jax.Array:
    """The input gradient of a stride-1 conv as one matmul (each output pixel's gradient spread over its k*k*C
    input taps) and the k*k tap planes added in place into the padded input (col2im), cropped by the padding.

    The taps are laid out channel-major, (kh, kw, C, N, H, W), so each plane is one contiguous block that an
    in-place add writes into a (C, N, H, W) buffer, which XLA:CPU does faster than summing NHWC planes that were
    each zero-padded to the input's size (LeNet's conv2: benchmarks/RESULTS.md)."""
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


def _canonical_input_gradient(g: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, lhs: jax.Array) -> jax.Array:
    """The input gradient as XLA's autodiff builds it (the output gradient dilated by the strides, convolved
    with the flipped kernel, its in and out channels swapped), but with that kernel transposed here, so the
    convolution reaches XLA:CPU in the NHWC/HWIO form its fast kernels take (see `_canonical_kernel_gradient`).

    Input row y receives g[h] * rhs[i] wherever s*h + i - low = y: a correlation of g, dilated by s and padded
    by k - 1 - low below, with the flipped kernel; the padding above makes the result as tall as the input."""
    (kh, kw), (height, width) = rhs.shape[:2], lhs.shape[1:3]
    (top, _), (left, _) = pads
    (sh, sw), (rows, cols) = strides, g.shape[1:3]
    gradient_pads = (
        (kh - 1 - top, height + top - sh * (rows - 1) - 1),
        (kw - 1 - left, width + left - sw * (cols - 1) - 1),
    )
    kernel = rhs[::-1, ::-1].transpose(0, 1, 3, 2)
    return lax.conv_general_dilated(g, kernel, (1, 1), gradient_pads, lhs_dilation=strides, dimension_numbers=_NHWC)


def _canonical_kernel_gradient(g: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, lhs: jax.Array) -> jax.Array:
    """The kernel gradient as a convolution of the input, channels as its batch and images as its features,
    with the output gradient as the kernel (dilated by the strides), transposed here into NHWC/HWIO.

    XLA's autodiff leaves this convolution in another dimension order (f01b_i01o->01bf). At the top level
    XLA:CPU transposes it into the standard one itself, but not inside a while loop (`lax.scan`, the whole-epoch
    program), where it fell back to a generic loop (see the module docstring). Written out like this, it runs
    the same kernel in both places."""
    kh, kw = rhs.shape[:2]
    gradient = lax.conv_general_dilated(
        lhs.transpose(3, 1, 2, 0),  # [C, H, W, N]
        g.transpose(1, 2, 0, 3),  # [Ho, Wo, N, O]: an HWIO kernel whose input channels are the images
        (1, 1),
        pads,
        rhs_dilation=strides,
        dimension_numbers=_NHWC,
    )  # [C, >= kh, >= kw, O]: rows past the kernel exist where the strides leave input rows unread
    return gradient[:, :kh, :kw].transpose(1, 2, 0, 3)


def _phase_input_gradient(g: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, lhs: jax.Array) -> jax.Array:
    """The input gradient of a strided conv, one phase of the padded input per output channel group.

    With stride s, padded-input row s*q + r receives g[q - t] * rhs[r + s*t] for t = 0, 1, ...: for each phase
    r, a stride-1 convolution of g with the sub-kernel rhs[r::s] (flipped). One convolution computes all
    phases at once, the sub-kernels stacked on its output channels (zero where r + s*t runs past the kernel);
    phases r >= k (a kernel smaller than the stride, like a 1x1 shortcut's) read no tap and are zeros. The
    phases are then interleaved back into rows and columns and the padding cropped."""
    (sh, sw), (kh, kw, channels, out_features) = strides, rhs.shape
    batch, height, width, _ = lhs.shape
    th, tw = -(-kh // sh), -(-kw // sw)  # taps per phase
    lh, lw = min(sh, kh), min(sw, kw)  # phases with at least one tap
    kernel = jnp.pad(rhs, ((0, th * sh - kh), (0, tw * sw - kw), (0, 0), (0, 0)))
    kernel = kernel.reshape(th, sh, tw, sw, channels, out_features)[:, :lh, :, :lw].transpose(0, 2, 5, 1, 3, 4)
    kernel = kernel.reshape(th, tw, out_features, lh * lw * channels)[::-1, ::-1]
    (top, bottom), (left, right) = pads
    rows, cols = -(-(height + top + bottom) // sh), -(-(width + left + right) // sw)  # phase grid
    g = jnp.pad(g, ((0, 0), (th - 1, rows - g.shape[1]), (tw - 1, cols - g.shape[2]), (0, 0)))
    phases = lax.conv_general_dilated(g, kernel.astype(g.dtype), (1, 1), "VALID", dimension_numbers=_NHWC)
    phases = phases.reshape(batch, rows, cols, lh, lw, channels)
    phases = jnp.pad(phases, ((0, 0), (0, 0), (0, 0), (0, sh - lh), (0, sw - lw), (0, 0)))
    padded = phases.transpose(0, 1, 3, 2, 4, 5).reshape(batch, rows * sh, cols * sw, channels)
    return padded[:, top : top + height, left : left + width]


# Each path: (forward pass, input gradient, kernel gradient).
_PATHS = {
    "canonical": (_xla_conv, _canonical_input_gradient, _canonical_kernel_gradient),
    "tap_sum": (_tap_sum_forward, _canonical_input_gradient, _canonical_kernel_gradient),
    "col2im": (_xla_conv, _col2im_input_gradient, _canonical_kernel_gradient),
    "phase": (_xla_conv, _phase_input_gradient, _canonical_kernel_gradient),
    "onednn": (onednn_conv.forward, onednn_conv.input_gradient, onednn_conv.kernel_gradient),
    "tap_sum_onednn": (_tap_sum_forward, onednn_conv.input_gradient, onednn_conv.kernel_gradient),
}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def rewritten_conv(lhs: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, path: str) -> jax.Array:
    """An NHWC/HWIO convolution with explicit `strides` and `pads`, computed by `path` (a key of `_PATHS`); under
    `jax.vmap` over inputs and kernels (vmap_seeds), its value and gradients one convolution per copy."""
    return _forward(lhs, rhs, strides, pads, path)


def _forward(lhs: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, path: str) -> jax.Array:
    return unrolled_under_vmap(lambda a, b: _PATHS[path][0](a, b, strides, pads))(lhs, rhs)


def _rewritten_conv_fwd(
    lhs: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, path: str
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _forward(lhs, rhs, strides, pads, path), (lhs, rhs)


def _rewritten_conv_bwd(
    strides: Strides, pads: Pads, path: str, residuals: tuple[jax.Array, jax.Array], g: jax.Array
) -> tuple[jax.Array, jax.Array]:
    lhs, rhs = residuals

    def gradients(g: jax.Array, lhs: jax.Array, rhs: jax.Array) -> tuple[jax.Array, jax.Array]:
        g = g.astype(jnp.result_type(lhs, rhs))
        _, input_gradient, kernel_gradient = _PATHS[path]
        return (
            input_gradient(g, rhs, strides, pads, lhs).astype(lhs.dtype),
            kernel_gradient(g, rhs, strides, pads, lhs).astype(rhs.dtype),
        )

    return unrolled_under_vmap(gradients)(g, lhs, rhs)


rewritten_conv.defvjp(_rewritten_conv_fwd, _rewritten_conv_bwd)


def _all_ones(values: Sequence[int] | None) -> bool:
    return values is None or all(v == 1 for v in values)


def _explicit_pads(lhs: jax.Array, rhs: jax.Array, strides: Strides, padding: str | Sequence[tuple[int, int]]) -> Pads:
    """`padding` ('SAME', 'VALID' or pairs) as (low, high) pairs of ints for an NHWC input and HWIO kernel."""
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    return tuple((int(low), int(high)) for low, high in padding)


def _onednn_supports(lhs: jax.Array, rhs: jax.Array, strides: Sequence[int], padding: Any) -> bool:
    """oneDNN available here, with kernels for this layer's passes in its type (`onednn_conv.supports`)."""
    if not onednn_conv.available():
        return False
    strides = tuple(int(s) for s in strides)
    pads = _explicit_pads(lhs, rhs, strides, "VALID" if padding is None else padding)
    return onednn_conv.supports(tuple(lhs.shape), tuple(rhs.shape), strides, pads, jnp.dtype(lhs.dtype).name)


def cpu_path(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    dimension_numbers: Any,
    padding: str | Sequence[tuple[int, int]] | None = None,
    **options: Any,
) -> str:
    """Which implementation `conv_general_dilated` takes for an undilated, one-group, default-precision 2-D conv
    in Flax's layout on the CPU backend: 'onednn' (float32 or bfloat16 on both operands, no cropping pad, oneDNN
    available; 'tap_sum_onednn' for a stride-1 conv with up to `MAX_TAP_SUM_CHANNELS` input channels);
    otherwise, stride 1, 'tap_sum' or 'col2im' by input channels (see the constants above; 'col2im' in float32
    only); strided, 'phase' (by input channels and kernel size, see above; not with a negative, cropping pad, as
    its phase grid assumes none; `padding` None is taken as no cropping); any other such conv 'canonical'. 'xla'
    (`lax.conv_general_dilated` as it is) for everything else."""
    simple = (
        jax.default_backend() == "cpu"
        and lhs.ndim == 4
        and dimension_numbers == _FLAX_2D
        and _all_ones(options.get("lhs_dilation"))
        and _all_ones(options.get("rhs_dilation"))
        and options.get("feature_group_count", 1) == 1
        and options.get("batch_group_count", 1) == 1
        and options.get("precision") is None
        and options.get("preferred_element_type") is None
    )
    if not simple:
        return "xla"
    crops = padding is not None and min(map(min, _explicit_pads(lhs, rhs, window_strides, padding))) < 0
    float32 = lhs.dtype == rhs.dtype == jnp.float32
    onednn_types = lhs.dtype == rhs.dtype and lhs.dtype in (jnp.float32, jnp.bfloat16)
    if USE_ONEDNN and onednn_types and not crops and _onednn_supports(lhs, rhs, window_strides, padding):
        # The tap sum's forward pass stays: oneDNN's alone is faster on LeNet's conv1, but LeNet's whole step was
        # slower with it, in float32 and bfloat16, also with that pass on one thread (benchmarks/RESULTS.md).
        return "tap_sum_onednn" if _all_ones(window_strides) and rhs.shape[2] <= MAX_TAP_SUM_CHANNELS else "onednn"
    if not _all_ones(window_strides):
        kernel_within_stride = all(k <= s for k, s in zip(rhs.shape[:2], window_strides, strict=True))
        phase = 0 < MAX_PHASE_CHANNELS and (rhs.shape[2] <= MAX_PHASE_CHANNELS or kernel_within_stride)
        return "phase" if phase and not crops else "canonical"
    if rhs.shape[2] <= MAX_TAP_SUM_CHANNELS:
        return "tap_sum"
    if rhs.shape[2] <= MAX_COL2IM_CHANNELS and float32:
        return "col2im"  # float32 only: in bfloat16 the matmul made LeNet's step slower (benchmarks/RESULTS.md)
    return "canonical"


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    dimension_numbers: Any = None,
    **options: Any,
) -> jax.Array:
    """Drop-in for `lax.conv_general_dilated`; the backend's conv layer passes it to `nn.Conv`."""
    path = cpu_path(lhs, rhs, window_strides, dimension_numbers, padding, **options)
    if KEEP_CONV_INPUTS and path not in UNFUSED_PATHS and path != "xla":
        lhs = kept_as_buffer(lhs, always_true(rhs))  # the kernel: replicated, so no cross-device read
    if path == "xla":
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, dimension_numbers=dimension_numbers, **options
        )
    strides = tuple(int(s) for s in window_strides)
    return rewritten_conv(lhs, rhs, strides, _explicit_pads(lhs, rhs, strides, padding), path)
