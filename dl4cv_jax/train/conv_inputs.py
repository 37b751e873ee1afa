"""Conv inputs kept as computed buffers in the train step, so XLA:CPU does not recompute them (`config.
materialize_conv_inputs`).

Why: the kernel gradient of a convolution reads the layer's input with batch and channels swapped, so XLA:CPU
transposes it first. Its fusion pass pulls the cheap elementwise ops that produced the input (BatchNorm, ReLU,
the residual add) into that transpose instead of reading the buffer the forward pass already wrote, and along a
ResNet's identity shortcuts this chains back through every block of a stage. A transpose that recomputes three
BatchNorm+ReLU+add layers with strided reads took 81.8 ms per step on this project's 2-core CPU, against 1.9 ms for a
plain one (benchmarks/RESULTS.md).

Each conv input therefore goes through `fusion_barrier.kept_as_buffer`, with `state.step >= 0` as the predicate
XLA cannot fold. Values and gradients are exactly those of the plain model; only the compiled program changes.
On accelerators the recomputation does not happen (and a conditional costs a host round trip), so 'auto' turns
this on for the CPU backend only.

Convs on oneDNN (`models/conv.py`'s `UNFUSED_PATHS`) are left alone: their passes are XLA custom calls, which
read buffers and never have producers fused into them, so the conditional there bought nothing and cost a copy
and a dispatch per conv and per gradient. ResNet-20's float32 step on the 2-core CPU (one trace of 5 steps each):
77 copies taking 3.83 ms and 8.77 ms with no operation running, against no copies and 1.67 ms idle without the
conditionals on oneDNN's convs.
"""

import contextlib
from collections.abc import Iterator

import jax
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.models.conv import inputs_kept_as_buffers

MODES = {"auto": None, "on": True, "off": False}


def enabled(config: ml_collections.ConfigDict, backend: str | None = None) -> bool:
    """Whether the train step materialises conv inputs: `config.materialize_conv_inputs` ('auto' = on for
    the CPU backend; `backend` defaults to jax's default backend, the one the mesh is built on)."""
    mode = choose(MODES, "materialize_conv_inputs", config.materialize_conv_inputs)
    if mode is None:
        return (backend or jax.default_backend()) == "cpu"
    return mode


@contextlib.contextmanager
def materialized_conv_inputs(always_true: jax.Array, active: bool = True) -> Iterator[None]:
    """Within this context, every conv XLA could fuse into (at any depth of any model built on
    `conv_layer.Conv`) gets its input through `kept_as_buffer` on `always_true` (a replicated scalar, true at run
    time: the train step passes `state.step >= 0`); with `active=False` it does nothing, so callers need no branch
    of their own."""
    if not active:
        yield
        return
    with inputs_kept_as_buffers(always_true):
        yield
