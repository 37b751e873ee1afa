"""The train state: parameters, BatchNorm statistics, optimizer and plateau state, all in one pytree.

Everything the next step depends on lives here (or is derived from the seed and the step), so saving this
pytree and the loop's small JSON state is enough to resume bit-for-bit.
"""

import functools
from collections.abc import Callable
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
    `ema_params` and `ema_batch_stats` are exponential moving averages of `params` and of the BatchNorm
    statistics (empty tuples when `ema_decay` is 0), updated only when the optimizer really updates (not on the
    inner micro-steps of gradient accumulation). The statistics are averaged with the weights (as timm's model EMA
    does) so that evaluation does not pair averaged weights with the statistics of the latest raw weights.
    """

    batch_stats: Any
    plateau_state: Any
    ema_params: Any = ()
    ema_batch_stats: Any = ()
    plateau: optax.GradientTransformation | None = struct.field(pytree_node=False, default=None)
    ema_decay: float = struct.field(pytree_node=False, default=0.0)
    grad_accum_steps: int = struct.field(pytree_node=False, default=1)

    def eval_params(self) -> Any:
        """The weights to evaluate and predict with: the EMA when it is kept, else the raw parameters."""
        return self.ema_params if self.ema_decay else self.params

    def eval_batch_stats(self) -> Any:
        """The BatchNorm statistics that go with `eval_params`."""
        return self.ema_batch_stats if self.ema_decay else self.batch_stats

    def ema_decay_now(self) -> jax.Array:
        """The EMA's decay for the coming update: min(ema_decay, (1 + n) / (10 + n)) after n updates.

        TensorFlow's ExponentialMovingAverage with `num_updates`: a fixed decay d would keep d**n of the random
        initialisation after n updates (37% after 100 updates at d = 0.99, most of a short run); the warm-up
        forgets it within a few dozen updates, and reaches d after 9 / (1 - d) - 10 of them.
        """
        updates = jnp.asarray(self.step // self.grad_accum_steps, jnp.float32)  # optimizer updates before this one
        return jnp.minimum(jnp.float32(self.ema_decay), (1.0 + updates) / (10.0 + updates))

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
        ema = (self.ema_params, self.ema_batch_stats)
        if self.ema_decay:
            updated = opt_state.mini_step == 0 if self.grad_accum_steps > 1 else True
            latest = (params, kwargs.get("batch_stats", self.batch_stats))
            moved = optax.incremental_update(latest, ema, step_size=1.0 - self.ema_decay_now())
            ema = jax.tree.map(lambda new, old: jnp.where(updated, new, old), moved, ema)
        return self.replace(
            step=self.step + 1,
            params=params,
            opt_state=opt_state,
            ema_params=ema[0],
            ema_batch_stats=ema[1],
            **kwargs,
        )


def create_train_state(
    model: nn.Module,
    init_key: jax.Array,
    image_shape: tuple[int, int, int],
    tx: optax.GradientTransformation,
    plateau: optax.GradientTransformation | None = None,
    ema_decay: float = 0.0,
    grad_accum_steps: int = 1,
    warm_start: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> TrainState:
    """Initialises the model on a dummy batch of `image_shape` and wraps everything in a TrainState.

    The init is jit-compiled as one program: run eagerly, every parameter shape compiles its own random op, which
    adds up to a long start even for a small CNN on a CPU (benchmarks/RESULTS.md). `warm_start` maps the fresh
    variables to the ones to start from (train/warm_start.py).
    """
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    init = jax.jit(functools.partial(model.init, train=False))
    variables = init({"params": init_key, "dropout": init_key}, dummy)
    if warm_start is not None:  # pretrained weights or another run's: train/warm_start.py
        variables = jax.tree.map(jnp.asarray, warm_start(variables))
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=tx,
        batch_stats=batch_stats,
        plateau_state=plateau.init(params) if plateau is not None else (),
        plateau=plateau,
        # Own buffers: the train step donates the state, and one buffer cannot be donated twice.
        ema_params=jax.tree.map(jnp.copy, params) if ema_decay else (),
        ema_batch_stats=jax.tree.map(jnp.copy, batch_stats) if ema_decay else (),
        ema_decay=ema_decay,
        grad_accum_steps=grad_accum_steps,
    )


def count_parameters(params: Any) -> int:
    """Number of trainable scalars (BatchNorm running statistics are not parameters)."""
    return sum(int(x.size) for x in jax.tree.leaves(params))
