"""Preemption as clusters deliver it: SIGTERM (SLURM's notice before the kill, a cloud VM's preemption) ends a
training run at the next step boundary with a checkpoint, one line, and `PREEMPTED_EXIT_STATUS`.

Why a flag and not work in the handler: a signal arrives between any two Python bytecodes, possibly in the middle
of a step or a save; the handler only records it, and the loop acts at the next step boundary, where the state
is whole. The handler is installed around the epochs of `train_and_evaluate` only (`PreemptionWatch` is a context
manager that puts the previous handler back): importing the package changes no global state, and a notebook or
another program that calls the loop keeps its own SIGTERM behaviour outside it.

Several processes must stop at the same step, or one would wait forever in the next step's collective. jax's
preemption service (started by `jax.distributed.initialize`) already catches SIGTERM in every process and agrees
on a step through the coordinator, without touching the devices: `reached_preemption_sync_point(step)` turns true
on all processes at the same step. With one process there is nothing to agree on and no collective runs.
"""

import os
import signal
import threading
from types import FrameType
from typing import Any

import jax
from jax.experimental import multihost_utils

from dl4cv_jax.train import epoch_end
from dl4cv_jax.train.checkpoints import LATEST, CheckpointStore

# os.EX_TEMPFAIL (sysexits.h: "temporary failure, retry later"): a job script requeues on 75 and treats any other
# non-zero status as a failure. Not 143 (128 + SIGTERM), which a process killed by SIGTERM without saving returns.
PREEMPTED_EXIT_STATUS = 75


class PreemptedError(Exception):
    """Training stopped at a step boundary after SIGTERM; the state of that step is in the latest checkpoint.

    Not an error of the run: main.py prints its message and exits with PREEMPTED_EXIT_STATUS.
    """


def preempted_message(step: int, epoch: int, steps_per_epoch: int, checkpoint: os.PathLike | str) -> str:
    """The one line a preempted run prints; `epoch` counts from 1 and is the epoch the step belongs to."""
    within = step - (epoch - 1) * steps_per_epoch
    where = f"at the end of epoch {epoch}" if within == steps_per_epoch else f"at step {step} of epoch {epoch}"
    return f"preempted (SIGTERM) {where}: saved {checkpoint}; run the same command again to resume"


def _preemption_service() -> bool:
    """True when jax's preemption sync manager runs (several processes, jax.distributed initialised)."""
    from jax._src import distributed  # the public check, multihost_utils, raises instead of answering

    return getattr(distributed.global_state, "preemption_sync_manager", None) is not None


class PreemptionWatch:
    """`with PreemptionWatch() as watch:` ... `if watch.reached(step):` save and stop.

    One process: a Python SIGTERM handler sets a flag, restored to the previous handler on exit (installed from
    the main thread only: Python allows no other). Several processes: jax's preemption service, whose own handler
    (installed by `jax.distributed.initialize`) must not be replaced; without the service (disabled by
    `jax_enable_preemption_service=False`) the flag is all-gathered every step instead, which costs a collective.
    """

    def __init__(self) -> None:
        self.received = False
        self._installed = False
        self._previous: signal.Handlers | object = signal.SIG_DFL
        self._last: tuple[int, bool] | None = None

    def __enter__(self) -> "PreemptionWatch":
        self._service = jax.process_count() > 1 and _preemption_service()
        if not self._service and threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)
            self._previous = signal.SIG_DFL if previous is None else previous  # None: set outside Python
            signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.received = True  # nothing else here: the loop acts at the next step boundary, where the state is whole

    def reached(self, step: int) -> bool:
        """Whether training stops after global `step` (every process gets the same answer for the same step).

        Every process must call it after every step, with increasing steps; asking again for the same step
        returns the first answer without a second collective.
        """
        if self._last is not None and self._last[0] == step:
            return self._last[1]
        if self._service:
            stop = bool(multihost_utils.reached_preemption_sync_point(step))
        elif jax.process_count() > 1:
            stop = bool(multihost_utils.process_allgather(self.received).any())
        else:
            stop = self.received
        self._last = (step, stop)
        return stop


def step_boundary(
    store: CheckpointStore,
    loop: dict[str, Any],
    watch: PreemptionWatch,
    steps_per_epoch: int,
    every_steps: int,
    step: int,
    state: Any,
    history: list,
) -> None:
    """After each train step of epoch `loop["epoch"]`: a mid-epoch checkpoint into latest when SIGTERM came (then
    PreemptedError) or every `every_steps` steps (0: never). An epoch's last step is left to the epoch's own
    checkpoint, taken after validation; `history` holds the epoch's step metrics so far."""
    preempted = watch.reached(step)  # every process asks at every step: they agree on the step to stop at
    if step % steps_per_epoch == 0 or not (preempted or (every_steps and step % every_steps == 0)):
        return
    store.save(LATEST, step, state, epoch_end.mid_epoch_loop_state(loop, history))
    if preempted:
        raise stopped(store, step, loop["epoch"] + 1, steps_per_epoch)


def stopped(store: CheckpointStore, step: int, epoch: int, steps_per_epoch: int) -> PreemptedError:
    """Waits until the checkpoint of `step` (in epoch `epoch`, from 1) is on disk; returns the error to raise."""
    store.wait()
    return PreemptedError(preempted_message(step, epoch, steps_per_epoch, store.step_directory(LATEST, step)))
