"""Mixed precision by casting at the step boundary: parameters, optimizer state, BatchNorm statistics and the
loss stay float32; the model's arithmetic runs in the compute dtype.

Casting the float32 parameters to bfloat16 inside the differentiated function means the gradients come back in
float32 (the cast's transpose), so the optimizer never sees bf16. Flax's BatchNorm reduces in float32 by default
(`force_float32_reductions`), so its running statistics stay exact.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from dl4cv_jax.choices import choose

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
    """The dtype of the model's arithmetic, from `config.precision`."""
    return choose(COMPUTE_DTYPES, "precision", config.precision)


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Casts the floating-point leaves of `tree` to `dtype`; integer leaves (counters) are left alone."""

    def cast(x: jax.Array) -> jax.Array:
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)
