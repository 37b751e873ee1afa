"""Data parallelism with one `jax.sharding.Mesh`: the batch is split on the `data` axis, the state replicated.

The same code runs on one CPU, on every GPU of a host, and on a multi-host pod: each process feeds its own
slice of the global batch and `jax.make_array_from_process_local_data` assembles the global array.
Because jit sees the global batch, BatchNorm normalises over all of it, so a run on N devices computes the
same numbers as a run on one device (up to float summation order).
"""

import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dl4cv_jax.choices import ConfigError

DATA_AXIS = "data"

# Environment variables that say this process is one of several in a distributed job.
_MULTI_PROCESS_HINTS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES")


def wants_distributed(environ: dict[str, str] | None = None) -> bool:
    """True when the environment describes a multi-process job (explicit coordinator, SLURM, TPU pod)."""
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in _MULTI_PROCESS_HINTS):
        return True
    return int(env.get("SLURM_NTASKS", "1")) > 1


def maybe_initialize_distributed() -> None:
    """Calls `jax.distributed.initialize()` (which reads the cluster from the environment) when asked for."""
    if wants_distributed():
        jax.distributed.initialize()
        logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())


def make_mesh() -> Mesh:
    """A 1-D mesh over every device of every process."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the `data` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (parameters, optimizer state)."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, key: str = "batch_size") -> None:
    """The global batch must split evenly over all devices (and so over all processes)."""
    devices = jax.device_count()
    if batch_size <= 0 or batch_size % devices:
        closest = max(1, round(abs(batch_size) / devices)) * devices  # the nearest valid size, also for -8 or 0
        raise ConfigError(
            f"config.{key}={batch_size} must be a positive multiple of the device count "
            f"({devices} device{'s' if devices > 1 else ''}); e.g. {closest}"
        )


def shard_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's slice of the global batch → global arrays sharded over the mesh."""
    return {name: jax.make_array_from_process_local_data(sharding, np.asarray(value)) for name, value in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (the train state) on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))
