"""A function that, under `jax.vmap` over all of its arguments, runs once per copy instead of batched.

Why: `vmap_seeds` trains K models at once, each with its own weights and batches. JAX batches a convolution whose kernel
is batched into one grouped convolution (`feature_group_count=K`), and XLA:CPU runs that more slowly than K ordinary
ones (measured on a 3x3 128x32x32x16 layer's value and both gradients, K=4: experiments/README.md, where the vmap_seeds
figures live). Where only some arguments are batched (a shared kernel over several batches), JAX's own rule is kept: it
folds the copies into the convolution's batch.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import custom_batching


def unrolled_under_vmap(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn(*arrays)`, except that under `jax.vmap` with every argument batched it is called once per copy (an
    unrolled loop in the traced program) and the results are stacked. Differentiable like `fn` (JAX's
    `custom_vmap` alone is not, so a `custom_vjp` around it takes `fn`'s own gradient)."""

    @jax.custom_vjp
    @custom_batching.custom_vmap
    def call(*arrays: jax.Array) -> Any:
        return fn(*arrays)

    @call.def_vmap
    def rule(axis_size: int, in_batched: list[bool], *arrays: jax.Array) -> tuple[Any, Any]:
        if all(in_batched):
            copies = [call(*(a[i] for a in arrays)) for i in range(axis_size)]
            out = jax.tree.map(lambda *c: jnp.stack(c), *copies)
        else:
            out = jax.vmap(fn, in_axes=[0 if b else None for b in in_batched])(*arrays)
        return out, jax.tree.map(lambda _: True, out)

    def forward(*arrays: jax.Array) -> tuple[Any, tuple[jax.Array, ...]]:
        return call(*arrays), arrays

    def backward(arrays: tuple[jax.Array, ...], cotangent: Any) -> tuple[jax.Array, ...]:
        return jax.vjp(fn, *arrays)[1](cotangent)

    call.defvjp(forward, backward)
    return call
