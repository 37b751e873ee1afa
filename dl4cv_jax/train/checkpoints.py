"""Two Orbax checkpoint managers: `latest` (for resume) and `best` (by the monitored validation metric).

They are kept apart on purpose: an Orbax manager with `best_fn` and `max_to_keep` keeps the N best and deletes
the newest, which would break resume-from-latest (see README, "Checkpoints").
Each checkpoint holds the train state pytree and a small JSON dict of loop state (epoch, early-stopping and
best-metric trackers), which together are everything a resumed run needs.
"""

import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

LATEST = "latest"
BEST = "best"


def _restore_args(target: Any) -> ocp.args.Composite:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return ocp.args.Composite(state=ocp.args.StandardRestore(abstract), loop=ocp.args.JsonRestore())


def _manager(directory: pathlib.Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
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

    def save(self, which: str, step: int, state: Any, loop_state: dict[str, Any]) -> None:
        """Saves (asynchronously) the state and loop state under `which` (latest or best)."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop_state))
        self._managers[which].save(step, args=args, force=True)

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

    def wait(self) -> None:
        """Blocks until every asynchronous save has finished (call before reading them back or exiting)."""
        for manager in self._managers.values():
            manager.wait_until_finished()

    def close(self) -> None:
        self.wait()
        for manager in self._managers.values():
            manager.close()
