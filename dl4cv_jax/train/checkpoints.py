"""Two Orbax checkpoint managers: `latest` (for resume) and `best` (by the monitored validation metric).

They are kept apart on purpose: an Orbax manager with `best_fn` and `max_to_keep` keeps the N best and deletes
the newest, which would break resume-from-latest (see README, "Checkpoints").
Each checkpoint holds the train state pytree and a small JSON dict of loop state (epoch, early-stopping and
best-metric trackers, history rows), which together are everything a resumed run needs.

A run may be killed at any moment, also in the middle of a save. Orbax writes each checkpoint into a temporary
directory and renames it when complete, so a killed save leaves the previous checkpoint; a checkpoint damaged
afterwards (a truncated copy, a full disk) is moved aside by `set_aside`, never deleted.
"""

import contextlib
import dataclasses
import pathlib
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from dl4cv_jax.train import sharding

LATEST = "latest"
BEST = "best"


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint on disk cannot be read back (damaged after it was written); nothing was deleted."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (full or read-only disk); the ones saved before it are untouched."""


def _reason(error: BaseException) -> str:
    """The operating system's words for a failed write (`No space left on device`), else the error's first line."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def _restore_args(target: Any) -> ocp.args.Composite:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return ocp.args.Composite(state=ocp.args.StandardRestore(abstract), loop=ocp.args.JsonRestore())


def _manager(directory: pathlib.Path) -> ocp.CheckpointManager:
    """One checkpoint kept. Its barriers (one process: none) are named after the directory (`latest`, `best`):
    orbax names them by step alone (`async_write_complete.<step>`), and with two managers saving the same step
    under one name a job of several processes fails ("Barrier ... is already ongoing")."""
    multiprocessing = ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=directory.name)
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, multiprocessing_options=multiprocessing)
    # Handlers named up front (not only through the save/restore args), so that `item_metadata` can read a
    # checkpoint's tree before restoring it.
    handlers = {"state": ocp.StandardCheckpointHandler(), "loop": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(directory.absolute(), options=options, item_handlers=handlers)


def saved_state_fields(manager: ocp.CheckpointManager, step: int) -> set[str]:
    """The top-level fields of the train state saved at `step`, read from the checkpoint's metadata."""
    return set(manager.item_metadata(step)["state"].tree)


class CheckpointStore:
    """`workdir/checkpoints/{latest,best}`, one checkpoint each, indexed by the global step."""

    def __init__(self, workdir: pathlib.Path):
        self.root = pathlib.Path(workdir) / "checkpoints"
        self._managers = {LATEST: _manager(self.root / LATEST), BEST: _manager(self.root / BEST)}
        self._pending: dict[str, int] = {}  # the step each manager is writing in the background

    def save(self, which: str, step: int, state: Any, loop_state: dict[str, Any]) -> None:
        """Saves (asynchronously) the state and loop state under `which` (latest or best).

        A step already saved is kept as it is: a run killed after saving its best checkpoint but before the
        latest one redoes that epoch on resume, and computes the same state again.
        """
        manager = self._managers[which]
        if step in manager.all_steps():
            return
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop_state))
        self._pending[which] = step
        try:
            manager.save(step, args=args, force=True)
        except Exception as error:  # the disk, through orbax and tensorstore: OSError, ValueError, ...
            raise self._write_error(which, error) from error

    def latest_step(self, which: str) -> int | None:
        """The step of the checkpoint under `which`, or None when there is none yet."""
        return self._managers[which].latest_step()

    def restore(self, which: str, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores into the structure, shapes and shardings of `target`; returns (state, loop_state)."""
        manager = self._managers[which]
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no {which} checkpoint in {self.root / which}")
        wanted = bool(getattr(target, "ema_batch_stats", ()))  # () when the run keeps no EMA
        if not wanted or "ema_batch_stats" in saved_state_fields(manager, step):
            restored = manager.restore(step, args=_restore_args(target))
            return restored["state"], dict(restored["loop"])
        # Saved before the EMA covered BatchNorm statistics (2026-11-23): start that average at the statistics.
        saved = {
            field.name: getattr(target, field.name)
            for field in dataclasses.fields(target)
            if field.metadata.get("pytree_node", True) and field.name != "ema_batch_stats"
        }
        restored = manager.restore(step, args=_restore_args(saved))
        fields = restored["state"]
        state = target.replace(**fields, ema_batch_stats=jax.tree.map(jnp.copy, fields["batch_stats"]))
        return state, dict(restored["loop"])

    def wait(self, which: str | None = None) -> None:
        """Blocks until the asynchronous saves of `which` (default: both) have finished."""
        for name, manager in self._managers.items():
            if which in (None, name):
                try:
                    manager.wait_until_finished()
                except Exception as error:  # a background write failed
                    raise self._write_error(name, error) from error

    def _write_error(self, which: str, error: BaseException) -> CheckpointWriteError:
        kept = {name: self.steps_on_disk(name) for name in self._managers}  # orbax's own list may be stale
        return CheckpointWriteError(
            f"cannot write checkpoint {self.step_directory(which, self._pending.get(which, -1))}: {_reason(error)}; "
            f"the checkpoints saved before are intact in {self.root} (steps: "
            + ", ".join(f"{name} {steps[-1] if steps else 'none'}" for name, steps in kept.items())
            + ")"
        )

    def steps_on_disk(self, which: str) -> list[int]:
        """The complete checkpoints in the `which` directory, oldest first (read from disk, not orbax's cache)."""
        directory = self.root / which
        return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []

    def step_directory(self, which: str, step: int) -> pathlib.Path:
        return self.root / which / str(step)

    def set_aside(self, which: str, step: int) -> pathlib.Path:
        """Moves an unreadable checkpoint out of its manager's directory (to checkpoints/unreadable/), so that
        the manager forgets it and later saves are not compared with it; returns where it went."""
        target = self.root / "unreadable" / f"{which}-{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        if sharding.is_writer():  # one process moves it, all wait for the move before they look again
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(self.step_directory(which, step), target)
        sharding.barrier(f"set aside {which} {step}")
        self._managers[which].reload()
        return target

    def close(self) -> None:
        """Waits for the pending saves (raising CheckpointWriteError for a failed one), then closes the managers."""
        try:
            self.wait()
        finally:
            for manager in self._managers.values():
                with contextlib.suppress(Exception):  # a failed write: wait() has just raised it, in one line
                    manager.close()
