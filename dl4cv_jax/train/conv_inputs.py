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
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.fusion_barrier import kept_as_buffer

MODES = {"auto": None, "on": True, "off": False}


def enabled(config: ml_collections.ConfigDict, backend: str | None = None) -> bool:
    """Whether the train step materialises conv inputs: `config.materialize_conv_inputs` ('auto' = on for
    the CPU backend; `backend` defaults to jax's default backend, the one the mesh is built on)."""
    mode = choose(MODES, "materialize_conv_inputs", config.materialize_conv_inputs)
    if mode is None:
        return (backend or jax.default_backend()) == "cpu"
    return mode


def _materialize_conv_input(always_true: jax.Array) -> Any:
    def interceptor(next_fun: Any, args: tuple, kwargs: dict, context: Any) -> Any:
        if isinstance(context.module, nn.Conv) and context.method_name == "__call__" and args:
            args = (kept_as_buffer(args[0], always_true), *args[1:])
        return next_fun(*args, **kwargs)

    return interceptor


@contextlib.contextmanager
def materialized_conv_inputs(always_true: jax.Array, active: bool = True) -> Iterator[None]:
    """Within this context, every `nn.Conv` applied (at any depth of any model) gets its input through
    `kept_as_buffer` on `always_true` (a replicated scalar, true at run time: the train step passes
    `state.step >= 0`); with `active=False` it does nothing, so callers need no branch of their own."""
    if not active:
        yield
        return
    with nn.intercept_methods(_materialize_conv_input(always_true)):
        yield
