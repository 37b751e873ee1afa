"""`--config.vmap_seeds=K`: K copies of a model (seeds seed, seed+1, ..., seed+K-1) trained side by side in one
compiled program, with `jax.vmap` over the train state and over each copy's own batches; one workdir per seed.

Why: a small model leaves a device mostly idle, and K separate runs pay K times for start-up, compilation and
per-step dispatch. Each copy is exactly the run `--config.seed=s` would do (its own split, data order,
augmentation, initialisation and dropout), so `workdir/seed=s` holds what a separate run would (its config.json
says seed=s, vmap_seeds=0), equal up to float rounding: XLA may sum a vmapped convolution in another order.
The epoch's bookkeeping (history row, loop state, best and latest checkpoints, the best checkpoint's test
metrics) is the loop's own, from train/epoch_end.py, so a seed's workdir also resumes like a separate run's.

Not supported (ConfigError): early stopping and reduce-on-plateau (they would stop or slow the copies at
different epochs while they share one program), k-fold cross-validation, and more than one process.
"""

import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from dl4cv_jax import data as data_lib
from dl4cv_jax import losses
from dl4cv_jax.choices import require
from dl4cv_jax.train import callbacks as callbacks_lib
from dl4cv_jax.train import epoch_end, precision, run_files, steps
from dl4cv_jax.train.checkpoints import CheckpointStore
from dl4cv_jax.train.loop import Trainer, TrainingDivergedError, build_trainer


def check_vmap_config(config: ml_collections.ConfigDict) -> int:
    """Returns K = config.vmap_seeds after refusing what the copies cannot share."""
    k = int(config.vmap_seeds)
    require(k >= 2, "vmap_seeds", k, "must be >= 2 to vmap (0 or 1 = one ordinary run)")
    patience = config.early_stopping.patience
    require(patience == 0, "early_stopping.patience", patience, "must be 0 with vmap_seeds (copies stop together)")
    name = config.schedule.name
    require(name != "reduce_on_plateau", "schedule.name", name, "cannot be reduce_on_plateau with vmap_seeds")
    require(jax.process_count() == 1, "vmap_seeds", k, "runs in one process only")
    folds = config.get("cv", {}).get("folds", 0)
    require(folds <= 1, "cv.folds", folds, "cannot be combined with vmap_seeds")
    return k


def seed_configs(config: ml_collections.ConfigDict, k: int) -> list[ml_collections.ConfigDict]:
    """The K ordinary configs: seed + i each, vmap_seeds=0, so each workdir reads as a separate run's."""
    configs = []
    for i in range(k):
        one = ml_collections.ConfigDict(config.to_dict())
        one.seed, one.vmap_seeds = config.seed + i, 0
        configs.append(one)
    return configs


def seed_workdir(workdir: pathlib.Path, seed: int) -> pathlib.Path:
    return pathlib.Path(workdir) / f"seed={seed}"


def stack_trees(trees: list[Any]) -> Any:
    """K pytrees of one structure -> one pytree with a leading K axis (static fields from the first)."""
    treedef = jax.tree.structure(trees[0])
    leaves = [jax.tree.leaves(tree) for tree in trees]
    return jax.tree.unflatten(treedef, [jnp.stack(group) for group in zip(*leaves, strict=True)])


def unstack_tree(tree: Any, k: int) -> list[Any]:
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(k)]


def _vmapped_steps(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """The library's train and eval steps, vmapped over (state, batch, mean, std[, dropout key]) and jitted."""
    common = dict(
        loss_fn=losses.make_loss(config), loss_name=config.loss, compute_dtype=precision.compute_dtype(config)
    )

    def train_one(state, batch, mean, std, key):
        return steps.train_step(state, batch, mean=mean, std=std, dropout_key=key, **common)

    def eval_one(state, batch, mean, std):
        return steps.eval_step(state, batch, mean=mean, std=std, tta=tuple(config.eval_tta), **common)

    return jax.jit(jax.vmap(train_one), donate_argnums=(0,)), jax.jit(jax.vmap(eval_one))


class SeedGroup:
    """The K trainers (data, schedule, batches per seed) and the vmapped steps with their per-seed constants."""

    def __init__(self, config: ml_collections.ConfigDict, k: int):
        self.configs = seed_configs(config, k)
        built = [build_trainer(c, data_lib.load_data(c)) for c in self.configs]
        self.trainers: list[Trainer] = [trainer for trainer, _ in built]
        first = self.trainers[0]
        for trainer in self.trainers[1:]:
            for split in ("val", "test"):
                same = trainer.data.num_examples(split) == first.data.num_examples(split)
                require(same, "vmap_seeds", k, f"needs the same {split} size for every seed")
            require(trainer.steps_per_epoch == first.steps_per_epoch, "vmap_seeds", k, "needs equal steps/epoch")
        self.initial = stack_trees([jax.device_get(state) for _, state in built])
        self.mean = jnp.asarray([t.data.mean for t in self.trainers], jnp.float32)
        self.std = jnp.asarray([t.data.std for t in self.trainers], jnp.float32)
        # The dropout key each separate run derives in build_trainer.
        self.keys = jnp.stack([jax.random.split(jax.random.key(c.seed))[1] for c in self.configs])
        self.train_step, self.eval_step = _vmapped_steps(config)

    def batches(self, epoch: int):
        for group in zip(*(t.train_batches(epoch) for t in self.trainers), strict=True):
            yield stack_trees(list(group))

    def evaluate(self, state: Any, split: str) -> list[dict[str, float]]:
        """Per seed: loss and accuracy over its own `split`, as loop.evaluate computes them."""
        groups = zip(*(t.eval_batches(split) for t in self.trainers), strict=True)
        sums = jax.device_get([self.eval_step(state, stack_trees(list(g)), self.mean, self.std) for g in groups])
        results = []
        for i in range(len(self.trainers)):
            totals = {key: math.fsum(float(s[key][i]) for s in sums) for key in sums[0]}
            count = totals["count"]
            results.append(
                {
                    "loss": totals["loss_sum"] / count,
                    "accuracy": totals["correct"] / count,
                    "num_examples": round(count),
                }
            )
        return results


def _resume(group: SeedGroup, stores: list[CheckpointStore]) -> tuple[Any, list[dict[str, Any]]]:
    """Fresh states and loop states, or every seed's latest checkpoint (they must be at one epoch)."""
    k = len(stores)
    targets = unstack_tree(group.initial, k)
    restored = [
        epoch_end.restore_latest(store, target, config)
        for store, target, config in zip(stores, targets, group.configs, strict=True)
    ]
    epochs = {loop["epoch"] for _, loop in restored}
    require(len(epochs) == 1, "vmap_seeds", k, f"cannot resume seeds saved at different epochs {sorted(epochs)}")
    return stack_trees([jax.device_get(s) for s, _ in restored]), [loop for _, loop in restored]


def _epoch(group: SeedGroup, state: Any, epoch: int) -> tuple[Any, list[dict[str, float]]]:
    """One epoch of all copies; per seed its mean train loss and accuracy, and the epoch's wall time."""
    start = time.perf_counter()
    history = []
    for batch in group.batches(epoch):
        state, metrics = group.train_step(state, batch, group.mean, group.std, group.keys)
        history.append(metrics)
    history = jax.device_get(history)
    seconds = time.perf_counter() - start
    images = len(history) * group.configs[0].batch_size
    train = []
    for i, config in enumerate(group.configs):
        loss = float(np.mean([m["loss"][i] for m in history]))
        if not math.isfinite(loss):
            raise TrainingDivergedError(f"seed {config.seed}: loss became {loss} in epoch {epoch + 1}")
        accuracy = float(np.mean([m["accuracy"][i] for m in history]))
        train.append({"loss": loss, "accuracy": accuracy, "seconds": seconds, "images_per_second": images / seconds})
    return state, train


def train_vmapped(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    """Trains config.vmap_seeds copies into workdir/seed=<s>; returns each seed's test metrics."""
    k = check_vmap_config(config)
    group = SeedGroup(config, k)
    workdirs = [seed_workdir(workdir, c.seed) for c in group.configs]
    for path, one, trainer in zip(workdirs, group.configs, group.trainers, strict=True):
        run_files.write_run_files(path, one, trainer.data)
    stores = [CheckpointStore(w) for w in workdirs]
    try:
        state, loops = _resume(group, stores)
        writers = [
            callbacks_lib.CallbackList(
                [callbacks_lib.HistoryCSV(w / "history.csv", loop.get("history")), callbacks_lib.TensorBoard(w)]
            )
            for w, loop in zip(workdirs, loops, strict=True)
        ]
        steps_per_epoch = group.trainers[0].steps_per_epoch
        for writer in writers:
            writer.on_train_begin(loops[0]["epoch"], config.num_epochs, steps_per_epoch)
        for epoch in range(loops[0]["epoch"], config.num_epochs):
            state, train = _epoch(group, state, epoch)
            val = group.evaluate(state, "val")
            step = (epoch + 1) * steps_per_epoch
            for i, one_state in enumerate(unstack_tree(state, k)):
                trainer = group.trainers[i]
                lr = epoch_end.learning_rate(trainer.schedule, one_state, step, config.grad_accum_steps)
                logs = epoch_end.epoch_logs(epoch + 1, step, train[i], val[i], lr)
                loops[i], improved = epoch_end.update_loop_state(
                    loops[i], logs, trainer.config, trainer.higher_is_better, trainer.data
                )
                epoch_end.save_epoch(stores[i], step, one_state, loops[i], improved)
                writers[i].on_epoch_end(epoch + 1, logs)
            logging.info(
                "epoch %d/%d  %d seeds  val acc %s | %.1fs",
                epoch + 1,
                config.num_epochs,
                k,
                " ".join(f"{v['accuracy']:.4f}" for v in val),
                train[0]["seconds"],
            )
        tests = _test_best(group, stores, workdirs, state)
        for writer, test in zip(writers, tests, strict=True):
            writer.on_train_end(test)
    finally:
        for store in stores:
            store.close()
    return tests


def _test_best(group: SeedGroup, stores, workdirs, state) -> list[dict[str, Any]]:
    """Each seed's best checkpoint on its test split, written to its test_metrics.json."""
    targets = unstack_tree(state, len(stores))
    best = [epoch_end.best_state(store, target) for store, target in zip(stores, targets, strict=True)]
    tests = group.evaluate(stack_trees([jax.device_get(s) for s, _ in best]), "test")
    tests = [
        epoch_end.write_test_metrics(path, test, step)
        for test, (_, step), path in zip(tests, best, workdirs, strict=True)
    ]
    logging.info("test accuracy per seed: %s", " ".join(f"{t['accuracy']:.4f}" for t in tests))
    return tests
