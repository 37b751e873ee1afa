"""Forward+backward time of XLA's convolution against hand-written ones (im2col: shifted slices + one matmul).

    .venv/bin/python benchmarks/conv_impl.py                     # ResNet-20/LeNet layer shapes + whole models
    .venv/bin/python benchmarks/conv_impl.py --skip-layers --impls im2col_small_cin --windows 7

Implementations (all drop-ins for `lax.conv_general_dilated` on NHWC/HWIO, no dilation or groups):
- im2col: k*k strided slices of the padded input concatenated on channels, times the kernel as a matrix; its
  gradient is matmuls plus pads/slices, no backward convolution.
- matmul_grad: XLA's forward conv with a custom VJP: kernel gradient as one im2col matmul, input gradient as a
  stride-1 forward conv of the (dilated) output gradient with the flipped kernel.
- im2col_small_cin: im2col only where the input has at most 4 channels (ResNet stem, LeNet conv1).

(a) Single conv layers at batch 128: `jax.value_and_grad` of sum(conv(x, w)**2) with respect to x and w, jitted;
(b) `jax.value_and_grad` of the whole model's loss (LeNet-5, ResNet-20; train mode, BatchNorm) with the
library's model built on Flax's layers (`config.backend='xla'`), its conv layer handed in through the `Layers`
seam as `nn.Conv` on the implementation (`models/layers.py`). Each is checked against XLA's conv first (max over
leaves of ||a - b|| / ||b||), then warmed up and timed A, B, A, B ... (median of `--windows` windows). The
process is set up as main.py sets it up (`configure_process(restart=True)`: its XLA:CPU flag
`--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`, jemalloc where the machine has it;
`--xla-cpu-defaults off`, `--allocator system` leave them out).

Finding (2026-11-22, 2-core AMD EPYC, jax 0.10.2, with the flag above, load average 0.5-3.8 from other jobs):
none of these makes the whole train step faster, so the library keeps XLA's conv and has no option for it.
- Layers: im2col is 1.2-1.6x faster on the 3-channel stem and 2.0-2.4x on LeNet's 1-channel conv1 (both timed
  with the input gradient, which a first layer does not need), but 0.3-0.7x on the 16-64-channel ResNet layers
  (0.8-0.97x on the stride-2 16->8 one) and 0.7-1.0x on LeNet's 6-channel conv2.
  Why: building the patches is the cost, not the matmul. For 128x32x32x16 (3x3) the patch concatenation took
  147-165 ms (stacking on a new leading axis 118 ms), the matmul with the 144x16 kernel 20 ms, the
  kernel-gradient matmul 22.5 ms, XLA's own forward conv 18 ms, a plain copy of the input 5 ms: XLA:CPU's
  slice/concatenate fusions are slow. `lax.conv_general_dilated_patches` took 366 ms.
- Whole models, speed-up over XLA (two to three runs; figures swing +-30% between windows on this shared machine):
  LeNet im2col 0.60x / 0.93x / 0.87x, matmul_grad 0.74x / 0.68x, im2col_small_cin 0.79x / 0.69x;
  ResNet-20 im2col 1.14x / 0.90x / 0.88x, matmul_grad 0.94x / 1.01x, im2col_small_cin 1.19x / 1.07x.
- Gradients agree with XLA's to 1.6e-7-5.0e-7 per layer; ResNet-20 with im2col everywhere 5e-3 (float32
  rounding differences amplified through 19 BatchNorms), the other variants <= 8.2e-7.
"""

import argparse
import functools
import pathlib
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.train_step import (  # noqa: E402
    configure_benchmark_process,
    load_average,
    machine_description,
    process_options,
)

if __name__ == "__main__":  # as main.py does, first thing (it may restart the process under jemalloc)
    configure_benchmark_process()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402


def _pairs(padding: str | Sequence[tuple[int, int]], spatial: Sequence[int], window: Sequence[int], strides) -> list:
    if isinstance(padding, str):
        return list(lax.padtype_to_pads(tuple(spatial), tuple(window), tuple(strides), padding))
    return [tuple(p) for p in padding]


_NHWC = ("NHWC", "HWIO", "NHWC")


def _check_supported(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count) -> None:
    if lhs.ndim != 4:
        raise ValueError(f"this conv supports 2-D convolutions (NHWC inputs), got input shape {lhs.shape}")
    expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    if (
        dimension_numbers is not None
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != expected
    ):
        raise ValueError(f"this conv needs NHWC/HWIO dimension numbers, got {dimension_numbers}")
    if any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))) or feature_group_count != 1:
        raise ValueError("this conv supports neither dilation nor feature_group_count > 1")


def im2col_conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """Drop-in for `lax.conv_general_dilated` on NHWC inputs and HWIO kernels (what `nn.Conv` passes).

    Supports any 2-D kernel size, strides and padding; not input/kernel dilation or feature groups (those
    raise). The patch order (kernel row, kernel column, input channel) is the row order of
    `rhs.reshape(kh * kw * cin, cout)`, so parameters are the same as with "xla".
    """
    _check_supported(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)
    n, _, _, cin = lhs.shape
    kh, kw, _, cout = rhs.shape
    sh, sw = window_strides
    (pt, pb), (pl, pr) = _pairs(padding, lhs.shape[1:3], (kh, kw), (sh, sw))
    x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0))) if (pt, pb, pl, pr) != (0, 0, 0, 0) else lhs
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    patches = [
        lax.slice(x, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, cin), (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]
    cols = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
    y = lax.dot_general(
        cols.reshape(n * oh * ow, kh * kw * cin),
        rhs.reshape(kh * kw * cin, cout),
        (((1,), (0,)), ((), ())),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    return y.reshape(n, oh, ow, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_matmul_grads(x: jax.Array, w: jax.Array, strides: tuple, pads: tuple) -> jax.Array:
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


def _conv_matmul_grads_fwd(x, w, strides, pads):
    return _conv_matmul_grads(x, w, strides, pads), (x, w)


def _conv_matmul_grads_bwd(strides, pads, residuals, dy):
    x, w = residuals
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    (sh, sw), ((pt, pb), (pl, pr)) = strides, pads
    _, oh, ow, _ = dy.shape
    # Kernel gradient: im2col patches of the padded input (transposed) times dy, one matmul.
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    patches = [
        lax.slice(xp, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, cin), (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]
    cols = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
    dw = lax.dot_general(
        cols.reshape(n * oh * ow, kh * kw * cin), dy.reshape(n * oh * ow, cout), (((0,), (0,)), ((), ()))
    ).reshape(kh, kw, cin, cout)
    # Input gradient: a plain stride-1 VALID forward conv (XLA's fast path) of dy, dilated by the stride and
    # padded, with the flipped kernel whose in/out channels are swapped; the negative pads crop the padding.
    rem_h = xp.shape[1] - ((oh - 1) * sh + kh)
    rem_w = xp.shape[2] - ((ow - 1) * sw + kw)
    dyd = lax.pad(
        dy,
        jnp.zeros((), dy.dtype),
        ((0, 0, 0), (kh - 1 - pt, kh - 1 + rem_h - pb, sh - 1), (kw - 1 - pl, kw - 1 + rem_w - pr, sw - 1), (0, 0, 0)),
    )
    w_t = jnp.transpose(w[::-1, ::-1], (0, 1, 3, 2))
    dx = lax.conv_general_dilated(dyd, w_t, (1, 1), "VALID", dimension_numbers=_NHWC)
    return dx, dw


_conv_matmul_grads.defvjp(_conv_matmul_grads_fwd, _conv_matmul_grads_bwd)


def matmul_grad_conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """XLA's forward conv, with a hand-written backward: the kernel gradient as one im2col matmul, the input
    gradient as a stride-1 forward conv of the (dilated) output gradient with the flipped kernel."""
    _check_supported(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)
    kh, kw = rhs.shape[:2]
    pads = _pairs(padding, lhs.shape[1:3], (kh, kw), window_strides)
    return _conv_matmul_grads(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in pads))


def small_cin_im2col_conv_general_dilated(lhs: jax.Array, rhs: jax.Array, *args, **kwargs) -> jax.Array:
    """im2col where the input has at most 4 channels (stem, LeNet conv1), XLA's conv elsewhere."""
    conv = im2col_conv_general_dilated if rhs.shape[2] <= 4 else lax.conv_general_dilated
    return conv(lhs, rhs, *args, **kwargs)


CONV_IMPLS = {
    "im2col": im2col_conv_general_dilated,
    "matmul_grad": matmul_grad_conv_general_dilated,
    "im2col_small_cin": small_cin_im2col_conv_general_dilated,
}


def layers_with(impl: str) -> Any:
    """The `Layers` a model is built from (`models/layers.py`): Flax's, with `nn.Conv` computing its convolution
    by `impl` ('xla': Flax's own layers).

    A benchmark-only device: the library has no option for this because none of these won (see the docstring).
    """
    import dataclasses

    import flax.linen as nn

    from dl4cv_jax.models.layers import FLAX_LAYERS

    if impl == "xla":
        return FLAX_LAYERS
    return dataclasses.replace(FLAX_LAYERS, conv=functools.partial(nn.Conv, conv_general_dilated=CONV_IMPLS[impl]))


LAYERS = (  # (name, H=W, Cin, Cout, kernel, stride, padding)
    ("stem 32x32 3->16", 32, 3, 16, 3, 1, ((1, 1), (1, 1))),
    ("stage1 32x32 16->16", 32, 16, 16, 3, 1, ((1, 1), (1, 1))),
    ("stage2 down 32->16 16->32 s2", 32, 16, 32, 3, 2, ((1, 1), (1, 1))),
    ("stage2 16x16 32->32", 16, 32, 32, 3, 1, ((1, 1), (1, 1))),
    ("stage3 down 16->8 32->64 s2", 16, 32, 64, 3, 2, ((1, 1), (1, 1))),
    ("stage3 8x8 64->64", 8, 64, 64, 3, 1, ((1, 1), (1, 1))),
    ("lenet conv1 28x28 1->6 5x5 SAME", 28, 1, 6, 5, 1, "SAME"),
    ("lenet conv2 14x14 6->16 5x5 VALID", 14, 6, 16, 5, 1, "VALID"),
)


def time_pair(fns, args, windows: int, window_seconds: float) -> list[float]:
    """Median seconds per call of each jitted fn in `fns` (all on `args`), timed interleaved."""

    plans = []
    for fn in fns:
        jax.block_until_ready(fn(*args))
        start, n = time.perf_counter(), 0
        while n < 2 or time.perf_counter() - start < window_seconds / 2:
            jax.block_until_ready(fn(*args))
            n += 1
        plans.append(max(1, round(window_seconds * n / (time.perf_counter() - start))))
    seconds = [[] for _ in fns]
    for _ in range(windows):
        for fn, steps, out in zip(fns, plans, seconds, strict=True):
            start = time.perf_counter()
            for _ in range(steps):
                result = fn(*args)
            jax.block_until_ready(result)
            out.append((time.perf_counter() - start) / steps)
    return [statistics.median(s) for s in seconds]


def max_rel_error(a, b) -> float:
    """The largest ||a - b|| / ||b|| over the leaves of two pytrees."""
    import numpy as np

    errors = [
        float(np.linalg.norm(np.asarray(x) - np.asarray(y)) / (np.linalg.norm(np.asarray(y)) + 1e-30))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    ]
    return max(errors)


def bench_layers(args) -> None:

    heads = " | ".join(f"{i} ms (speed-up, max rel err)" for i in args.impls)
    print(f"\n| layer (batch {args.batch}), fwd+bwd | xla ms | {heads} |")
    print("|---|---|" + "---|" * len(args.impls))
    for name, size, cin, cout, k, stride, padding in LAYERS:
        kx, kw = jax.random.split(jax.random.key(0))
        x = jax.random.normal(kx, (args.batch, size, size, cin), jnp.float32)
        w = jax.random.normal(kw, (k, k, cin, cout), jnp.float32) / (k * k * cin) ** 0.5

        def loss(conv, x, w, stride=stride, padding=padding):
            y = conv(x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return jnp.sum(y * y)

        fns = [
            jax.jit(jax.value_and_grad(lambda x, w, c=c: loss(c, x, w), argnums=(0, 1)))
            for c in [lax.conv_general_dilated] + [CONV_IMPLS[i] for i in args.impls]
        ]
        reference = fns[0](x, w)
        errors = [max_rel_error(f(x, w), reference) for f in fns[1:]]
        times = time_pair(fns, (x, w), args.windows, args.window_seconds)
        cells = " | ".join(
            f"{t * 1e3:.2f} ({times[0] / t:.2f}x, err {e:.1e})" for t, e in zip(times[1:], errors, strict=True)
        )
        print(f"| {name} | {times[0] * 1e3:.2f} | {cells} |", flush=True)


def bench_steps(args) -> None:
    import optax

    from configs.default import get_config as default_config
    from dl4cv_jax.models.registry import create_model

    heads = " | ".join(f"{i} img/s (speed-up, max rel err)" for i in args.impls)
    print(f"\n| model (batch {args.batch}), fwd+bwd, train mode | xla img/s | {heads} |")
    print("|---|---|" + "---|" * len(args.impls))
    for model_name, shape in (("lenet", (28, 28, 1)), ("resnet20", (32, 32, 3))):
        losses, variables = [], None
        x = jax.random.normal(jax.random.key(1), (args.batch, *shape), jnp.float32)
        labels = jnp.arange(args.batch) % 10
        for impl in ["xla", *args.impls]:
            config = default_config().model
            config.name, config.stem = model_name, "cifar"
            model = create_model(config, 10, layers_with(impl))
            if variables is None:
                variables = model.init(jax.random.key(0), x, train=False)

            def loss_fn(params, x, model=model, variables=variables, labels=labels):
                rest = {k: v for k, v in variables.items() if k != "params"}
                logits, _ = model.apply({"params": params, **rest}, x, train=True, mutable=["batch_stats"])
                return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

            losses.append(jax.jit(jax.value_and_grad(loss_fn)))
        params = variables["params"]
        reference = losses[0](params, x)
        errors = [max_rel_error(f(params, x), reference) for f in losses[1:]]
        times = time_pair(losses, (params, x), args.windows, args.window_seconds)
        cells = " | ".join(
            f"{args.batch / t:.1f} ({times[0] / t:.2f}x, err {e:.1e})" for t, e in zip(times[1:], errors, strict=True)
        )
        print(f"| {model_name} | {args.batch / times[0]:.1f} | {cells} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[process_options()])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-seconds", type=float, default=1.0)
    parser.add_argument("--impls", nargs="+", default=list(CONV_IMPLS), choices=list(CONV_IMPLS))
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--skip-steps", action="store_true")
    args = parser.parse_args()
    print(machine_description())
    print(f"load average at start: {load_average()}")
    if not args.skip_layers:
        bench_layers(args)
    if not args.skip_steps:
        bench_steps(args)
    print(f"\nload average at end: {load_average()}")


if __name__ == "__main__":
    main()
