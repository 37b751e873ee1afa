"""Data parallelism with one `jax.sharding.Mesh`: the batch is split on the `data` axis, the state replicated.

The same code runs on one CPU, on every GPU of a host, and on a multi-host pod: each process feeds its own
slice of the global batch and `jax.make_array_from_process_local_data` assembles the global array.
Because jit sees the global batch, BatchNorm normalises over all of it, so a run on N devices computes the
same numbers as a run on one device (up to float summation order).
"""

import dataclasses
import os
import re
import shlex
import sys
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dl4cv_jax.choices import ConfigError

DATA_AXIS = "data"

# Environment variables that say this process is one of several in a distributed job.
_MULTI_PROCESS_HINTS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES")
# Seconds after which a process that stopped answering counts as lost (jax's defaults: 100 s heartbeat, 300 s
# shutdown). A peer that died mid-collective leaves the others waiting that long, ignoring SIGTERM meanwhile.
DEFAULT_DISTRIBUTED_TIMEOUT = 60


@dataclasses.dataclass(frozen=True)
class Cluster:
    """An explicitly described job: where process 0 listens, how many processes, and which one this is."""

    coordinator: str
    num_processes: int
    process_id: int


def wants_distributed(environ: dict[str, str] | None = None) -> bool:
    """True when the environment describes a multi-process job (explicit coordinator, SLURM, TPU pod)."""
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in _MULTI_PROCESS_HINTS):
        return True
    return int(env.get("SLURM_NTASKS", "1")) > 1


def _integer(value: int | str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} must be an integer") from None


def explicit_cluster(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: dict[str, str] | None = None,
) -> Cluster | None:
    """The cluster given by flags or by JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID (flags win);
    None when they say nothing, or only the address variable (under srun or mpirun jax reads the rest itself).

    jax reads only the coordinator from the environment: without this, a process count and id given as variables
    would be ignored and each process would wait for a cluster it cannot find. A half-described cluster (an
    address without a count, an id outside the count) raises ConfigError, in one line, before anything starts.
    """
    env = os.environ if environ is None else environ
    flag = coordinator
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS") or None
    count = _integer(num_processes if num_processes is not None else env.get("JAX_NUM_PROCESSES"), "num_processes")
    index = _integer(process_id if process_id is not None else env.get("JAX_PROCESS_ID"), "process_id")
    if count is None and index is None and not flag:
        return None  # nothing, or JAX_COORDINATOR_ADDRESS under srun/mpirun: jax finds the count and id itself
    if coordinator is None:
        raise ConfigError(
            "a process count or id needs a coordinator: pass --coordinator=host:port (or JAX_COORDINATOR_ADDRESS), "
            "the address process 0 listens on"
        )
    if not re.fullmatch(r".+:\d+", coordinator):
        raise ConfigError(f"--coordinator={coordinator!r} must be host:port, e.g. 10.0.0.1:1234")
    if count is None or index is None:
        raise ConfigError(
            f"--coordinator={coordinator} needs --num_processes and --process_id too "
            "(or JAX_NUM_PROCESSES and JAX_PROCESS_ID)"
        )
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--process_id={index} must be in 0..{count - 1} (--num_processes={count})")
    return Cluster(coordinator, count, index)


def maybe_initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_seconds: int = DEFAULT_DISTRIBUTED_TIMEOUT,
) -> None:
    """Calls `jax.distributed.initialize` when the flags or the environment describe a job of several processes.

    The one place the project starts jax's distributed runtime. An explicit cluster (see `explicit_cluster`) is
    passed on as it is; SLURM and TPU pods are detected by jax itself. `timeout_seconds` bounds how long a process
    waits for a peer that died (heartbeat) and for the others at exit (shutdown), so a lost process stops the
    job in about that time rather than jax's 5 minutes.
    """
    cluster = explicit_cluster(coordinator, num_processes, process_id)
    if cluster is None and not wants_distributed():
        return
    if timeout_seconds < 1:
        raise ConfigError(f"--distributed_timeout={timeout_seconds} must be at least 1 second")
    explicit = dataclasses.asdict(cluster) if cluster else {}
    try:
        jax.distributed.initialize(
            coordinator_address=explicit.get("coordinator"),
            num_processes=explicit.get("num_processes"),
            process_id=explicit.get("process_id"),
            heartbeat_timeout_seconds=timeout_seconds,
            shutdown_timeout_seconds=timeout_seconds,
        )
    except ValueError as error:  # JAX_COORDINATOR_ADDRESS alone, outside SLURM/Open MPI/a TPU pod
        raise ConfigError(
            f"jax.distributed: {error} Pass --num_processes and --process_id (or JAX_NUM_PROCESSES and "
            "JAX_PROCESS_ID) beside the coordinator, or start the job with srun/mpirun"
        ) from error
    logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())


class LostProcessError(RuntimeError):
    """Another process of the job died (or stopped answering): this one cannot go on alone. The checkpoints
    complete before the loss are intact, and the same command run again on every process resumes from them."""


# What jax and orbax say when a peer is gone: gloo's collectives see the closed connection at once; the
# coordination service notices missing heartbeats after the distributed timeout; orbax's barriers time out.
_LOST_PEER_SIGNS = ("connection closed by peer", "gloo", "heartbeat", "coordination service", "barrier", "deadline")


def is_lost_process(error: BaseException) -> bool:
    """True when `error` (or what caused it) says another process of a multi-process job is gone."""
    if jax.process_count() == 1:
        return False
    seen: BaseException | None = error
    while seen is not None:
        if any(sign in str(seen).lower() for sign in _LOST_PEER_SIGNS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def lost_process_error(error: BaseException, resume_from: str) -> LostProcessError:
    """The one line a process prints when a peer is lost: what happened, where the run can resume from, how."""
    reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    reason = re.sub(r"^.*?(Gloo [^:]*failed).*?(Connection closed by peer).*$", r"\1: \2", reason)[:200]
    return LostProcessError(
        f"process {jax.process_index()} of {jax.process_count()} lost another process of the job ({reason}); "
        f"stopped. {resume_from}; to resume, run the same command again on every process: {resume_command()}"
    )


def resume_command() -> str:
    """This process's command line, as a user would type it again."""
    return "python " + shlex.join(sys.argv)


def is_writer() -> bool:
    """True on the one process that writes a run's files (process 0): the others compute the same values, and
    several processes writing one file through one temporary name would fail or interleave."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process has reached `barrier(name)`: a process that reads what process 0 has just
    written (a file, a moved checkpoint) waits here for it. Nothing happens with one process. Every process must
    pass the same names in the same order (a mismatch raises)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


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
