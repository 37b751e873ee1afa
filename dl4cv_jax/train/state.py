"""The train state: parameters, BatchNorm statistics, optimizer and plateau state, all in one pytree.

Everything the next step depends on lives here (or is derived from the seed and the step), so saving this
pytree and the loop's small JSON state is enough to resume bit-for-bit.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state


class TrainState(train_state.TrainState):
    """Flax's TrainState plus `batch_stats` (BatchNorm running statistics), the plateau state and the EMA.

    `plateau_state` is the optax reduce-on-plateau state, or an empty tuple when the schedule is another one.
    Its `scale` multiplies every update, so reducing the learning rate on a plateau needs no recompile.
    `ema_params` is an exponential moving average of `params` (an empty tuple when `ema_decay` is 0); it is
    updated only when the optimizer really updates (not on the inner micro-steps of gradient accumulation).
    """

    batch_stats: Any
    plateau_state: Any
    ema_params: Any = ()
    plateau: optax.GradientTransformation | None = struct.field(pytree_node=False, default=None)
    ema_decay: float = struct.field(pytree_node=False, default=0.0)
    grad_accum_steps: int = struct.field(pytree_node=False, default=1)

    def eval_params(self) -> Any:
        """The weights to evaluate and predict with: the EMA when it is kept, else the raw parameters."""
        return self.ema_params if self.ema_decay else self.params

    def lr_scale(self) -> jax.Array:
        """The reduce-on-plateau multiplier of the learning rate (1 when no plateau schedule is used)."""
        if self.plateau is None:
            return jnp.ones((), jnp.float32)
        return jnp.asarray(self.plateau_state.scale, jnp.float32)

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> "TrainState":
        """One optimizer update, scaled by the plateau multiplier (see `lr_scale`)."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        scale = self.lr_scale()
        updates = jax.tree.map(lambda u: u * scale.astype(u.dtype), updates)
        params = optax.apply_updates(self.params, updates)
        ema_params = self.ema_params
        if self.ema_decay:
            updated = opt_state.mini_step == 0 if self.grad_accum_steps > 1 else True
            moved = optax.incremental_update(params, ema_params, step_size=1.0 - self.ema_decay)
            ema_params = jax.tree.map(lambda new, old: jnp.where(updated, new, old), moved, ema_params)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state, ema_params=ema_params, **kwargs)


def create_train_state(
    model: nn.Module,
    init_key: jax.Array,
    image_shape: tuple[int, int, int],
    tx: optax.GradientTransformation,
    plateau: optax.GradientTransformation | None = None,
    ema_decay: float = 0.0,
    grad_accum_steps: int = 1,
) -> TrainState:
    """Initialises the model on a dummy batch of `image_shape` and wraps everything in a TrainState.

    The init is jit-compiled as one program: run eagerly, every parameter shape compiles its own random op,
    which costs ~30 s for a small CNN on a CPU.
    """
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    init = jax.jit(functools.partial(model.init, train=False))
    variables = init({"params": init_key, "dropout": init_key}, dummy)
    params = variables["params"]
    return TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        plateau_state=plateau.init(params) if plateau is not None else (),
        plateau=plateau,
        # Own buffers: the train step donates the state, and one buffer cannot be donated twice.
        ema_params=jax.tree.map(jnp.copy, params) if ema_decay else (),
        ema_decay=ema_decay,
        grad_accum_steps=grad_accum_steps,
    )


def count_parameters(params: Any) -> int:
    """Number of trainable scalars (BatchNorm running statistics are not parameters)."""
    return sum(int(x.size) for x in jax.tree.leaves(params))
