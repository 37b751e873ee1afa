"""A value XLA:CPU must compute once, into a buffer, instead of recomputing it inside each consumer.

XLA's fusion pass duplicates cheap elementwise producers into their consumers. That is usually right, but on CPU it
turned a transpose into a loop that recomputed three BatchNorm/ReLU/add layers per element, many times slower than the
plain transpose, and a 25-tap sum into a loop per consumer (benchmarks/RESULTS.md). `jax.lax.optimization_barrier` would
stop it, but XLA:CPU removes barriers before fusion. A conditional is never fused and its result is a buffer, so the
value goes through a `lax.cond` whose predicate is true at run time but not a compile-time constant; the other branch,
never taken, gives NaNs, so a wrong predicate could not pass unnoticed. XLA folds a conditional whose branches are
identical, hence the NaN branch rather than a second identity.
"""

import jax
import jax.numpy as jnp


def always_true(x: jax.Array) -> jax.Array:
    """A boolean scalar that is true for every value of `x` (v == v or v != v, for its first element, NaN
    included) but that XLA cannot fold. Pass a replicated array (a kernel, a step counter) so that reading it
    costs no cross-device traffic."""
    first = x.reshape(-1)[0]
    return (first == first) | (first != first)


def kept_as_buffer(x: jax.Array, predicate: jax.Array) -> jax.Array:
    """`x` as the result of a conditional on `predicate` (true at run time): XLA can neither fuse it into its
    consumers nor fold it away."""
    return jax.lax.cond(predicate, lambda v: v, lambda v: jnp.full_like(v, jnp.nan), x)
