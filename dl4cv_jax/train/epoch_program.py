"""The whole training epoch as one compiled program (`config.data.scan_epoch=True`, with `data.pipeline='device'`).

With the data on the devices, a step needs nothing from the host, so the epoch's steps can run as one `lax.scan`:
making each batch (gather, crop, flip, ...) and the train step, with the state's buffers donated. Python then
dispatches one call per epoch instead of one or two per step, which is what bounds small models on fast
accelerators. The steps, batches and random numbers are exactly those of the step-by-step loop (tested), so the
choice changes speed only. What it changes for callbacks: per-batch callbacks (`on_batch_end`, the progress bar)
are called after the epoch's program has run, once per step with that step's metrics.
"""

from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh

from dl4cv_jax.data import device
from dl4cv_jax.train import sharding
from dl4cv_jax.train.state import TrainState

StepFn = Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]
EpochFn = Callable[[TrainState, "device.EpochInputs"], tuple[TrainState, dict[str, jax.Array]]]


def make_epoch_program(train_step: StepFn, mesh: Mesh) -> EpochFn:
    """`run(state, inputs) -> (state, metrics)`: every step of `inputs.order` in one jit-compiled `lax.scan`.

    `train_step` is the pure (not jitted) step; the returned metrics are stacked, one entry per step.
    Compiled once per augmentation list and input shapes (`inputs.spec` is static).
    """
    batch_spec = device.batch_sharding(mesh)
    compiled: dict[tuple, Any] = {}

    def program(spec: tuple, num_classes: int):
        make_batch = device.batch_maker(spec, num_classes)

        def run(state: TrainState, images, labels, order, tables):
            def one_step(state: TrainState, index: jax.Array):
                batch = make_batch(images, labels, index, tables)
                batch = jax.lax.with_sharding_constraint(batch, batch_spec)
                return train_step(state, batch)

            return jax.lax.scan(one_step, state, order)

        repl = sharding.replicated(mesh)
        return jax.jit(run, out_shardings=(repl, repl), donate_argnums=(0,))

    def run_epoch(state: TrainState, inputs: device.EpochInputs) -> tuple[TrainState, dict[str, jax.Array]]:
        key = (inputs.spec, inputs.num_classes)
        if key not in compiled:
            compiled[key] = program(*key)
        return compiled[key](state, inputs.images, inputs.labels, inputs.order, inputs.tables)

    return run_epoch


def per_step(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Stacked metrics {name: [steps]} (on the host) as one {name: value} per step, for per-batch callbacks."""
    steps = len(next(iter(metrics.values())))
    return [{name: values[i] for name, values in metrics.items()} for i in range(steps)]
