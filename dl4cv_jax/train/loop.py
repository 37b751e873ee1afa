"""`train_and_evaluate`: the training loop, from a config to a workdir with checkpoints and test metrics.

Per epoch: train, validate, log (history.csv, TensorBoard, console), checkpoint latest (for resume) and best
(by `checkpoint.monitor`), early stopping, reduce-on-plateau. At the end: restore the best checkpoint and
evaluate it on the test split. Every random choice derives from `config.seed` and the epoch or step, so a
resumed run continues exactly where an uninterrupted one would be.
"""

import dataclasses
import functools
import itertools
import math
import pathlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from dl4cv_jax import backends, losses, monitor, optim, schedules
from dl4cv_jax import data as data_lib
from dl4cv_jax.choices import choose, require
from dl4cv_jax.data import device
from dl4cv_jax.evaluate.curves import CurvesPlot
from dl4cv_jax.models import MODELS, create_model
from dl4cv_jax.pretrained.preprocessing import resolve_preprocessing
from dl4cv_jax.process import configure_process
from dl4cv_jax.train import callbacks as callbacks_lib
from dl4cv_jax.train import epoch_end, epoch_program, precision, preemption, run_files, sharding, steps, tta
from dl4cv_jax.train.checkpoints import BEST, LATEST, CheckpointStore
from dl4cv_jax.train.finetune import finetune_optimizer, freeze_batch_norm, log_finetune
from dl4cv_jax.train.state import TrainState, count_parameters, create_train_state
from dl4cv_jax.train.warm_start import initial_variables


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the best checkpoint so far is kept."""


@dataclasses.dataclass
class Trainer:
    """Everything built once from the config: data, model, schedule, compiled steps, shardings."""

    config: ml_collections.ConfigDict
    data: Any
    mesh: jax.sharding.Mesh
    schedule: optax.Schedule
    plateau: Any
    steps_per_epoch: int
    train_step: Any
    eval_step: Any
    higher_is_better: bool
    epoch_program: Any = None  # data.scan_epoch: the whole epoch as one compiled program (train/epoch_program.py)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return sharding.shard_batch(batch, sharding.batch_sharding(self.mesh))

    def train_batches(self, epoch: int, first_step: int = 0) -> Iterator[dict[str, jax.Array]]:
        """The global batches of `epoch` (0-based) from batch `first_step` on, sharded over the mesh, ready for
        `train_step`.

        With `debug.overfit_batches=N`, every epoch is the first N batches of epoch 0, the same images with the
        same augmentation: a model that cannot drive their loss to ~0 has a bug.
        """
        overfit = self.config.debug.overfit_batches
        epoch = 0 if overfit else epoch
        # data.pipeline='device' (dl4cv_jax/data/device.py): batches made on the devices, already global.
        if self.config.data.pipeline == "device":
            batches = device.train_batches(self.data, self.config, epoch, self.mesh, first_step)
            return itertools.islice(batches, overfit - first_step) if overfit else batches
        index, count = jax.process_index(), jax.process_count()
        local = data_lib.train_batches(self.data, self.config, epoch, index, count, first_step)
        if overfit:
            local = itertools.islice(local, overfit - first_step)
        return map(self.put_batch, local)

    def run_epoch_program(
        self, state: TrainState, epoch: int, first_step: int = 0
    ) -> tuple[TrainState, list[dict[str, Any]]]:
        """data.scan_epoch: the epoch's steps (the same batches as `train_batches`) in one call; per-step metrics."""
        overfit = self.config.debug.overfit_batches
        inputs = device.epoch_inputs(self.data, self.config, 0 if overfit else epoch, self.mesh)
        if overfit or first_step:  # a resumed epoch's shorter scan compiles once more
            inputs = dataclasses.replace(inputs, order=inputs.order[first_step : overfit or None])
        state, stacked = self.epoch_program(state, inputs)
        return state, epoch_program.per_step(jax.device_get(stacked))

    def eval_batches(self, split: str) -> Iterator[dict[str, jax.Array]]:
        """Every example of `split` once, padded and masked, sharded over the mesh."""
        if self.config.data.pipeline == "device":
            return device.eval_batches(self.data, split, self.config, self.mesh)
        local = data_lib.eval_batches(self.data, split, self.config, jax.process_index(), jax.process_count())
        return map(self.put_batch, local)


def eval_options(config: ml_collections.ConfigDict, data: Any) -> dict[str, Any]:
    """The keyword arguments of `steps.eval_logits` for a run (loss, normalisation, compute dtype, TTA).

    Validation, test, `--mode=eval`, predict and the inference-speed measurement all take them from here, so
    they score the model exactly as training's test metrics did.
    """
    return dict(
        loss_name=config.loss,
        mean=data.mean,
        std=data.std,
        compute_dtype=precision.compute_dtype(config),
        tta=tuple(config.eval_tta),
    )


def check_config(config: ml_collections.ConfigDict) -> None:
    """Fails at once, before any data is read, on names and values no component accepts."""
    choose(MODELS, "model.name", config.model.name)
    choose(losses.LOSSES, "loss", config.loss)
    choose(optim.OPTIMIZERS, "optimizer.name", config.optimizer.name)
    choose(schedules.SCHEDULES, "schedule.name", config.schedule.name)
    choose(data_lib.SOURCES, "data.source", config.data.source)
    choose(backends.BACKENDS, "backend", config.backend)
    monitor.monitor_mode(config.checkpoint.monitor)
    schedules.check_learning_rate(config)
    require(config.num_epochs > 0, "num_epochs", config.num_epochs, "must be > 0")
    sharding.check_batch_size(config.batch_size)
    sharding.check_batch_size(config.eval_batch_size or config.batch_size, "eval_batch_size")
    precision.compute_dtype(config)
    require(0.0 <= config.ema_decay < 1.0, "ema_decay", config.ema_decay, "must be in [0, 1)")
    require(config.checkpoint.every_steps >= 0, "checkpoint.every_steps", config.checkpoint.every_steps, "must be >= 0")
    tta.check_tta(config.eval_tta)
    if config.data.scan_epoch:
        require(config.data.pipeline == "device", "data.scan_epoch", True, "needs data.pipeline='device'")
        require(not config.profile_steps, "data.scan_epoch", True, "cannot be traced per step: set profile_steps=0")
        require(not config.checkpoint.every_steps, "data.scan_epoch", True, "runs whole epochs: set every_steps=0")
    require(
        not config.eval_tta or config.loss != "sigmoid_binary_cross_entropy",
        "eval_tta",
        tuple(config.eval_tta),
        "needs a softmax loss (test-time augmentation averages class probabilities)",
    )


def build_trainer(config: ml_collections.ConfigDict, data: Any) -> tuple[Trainer, TrainState]:
    """Builds model, optimizer and compiled steps for `data`; returns them with a freshly initialised state.

    The model's layers come from `config.backend` (dl4cv_jax/backends): the one place the backend is chosen.
    """
    configure_process()
    check_config(config)
    higher_is_better = monitor.monitor_mode(config.checkpoint.monitor)
    steps_per_epoch = data_lib.steps_per_epoch(data, config)
    if config.debug.overfit_batches:
        require(
            0 < config.debug.overfit_batches <= steps_per_epoch,
            "debug.overfit_batches",
            config.debug.overfit_batches,
            f"must be in 0..{steps_per_epoch} (the batches in one epoch)",
        )
        steps_per_epoch = config.debug.overfit_batches
    accum = config.grad_accum_steps
    require(1 <= accum <= steps_per_epoch, "grad_accum_steps", accum, f"must be in 1..{steps_per_epoch} (steps/epoch)")
    # With accumulation the schedule counts optimizer updates, not batches.
    schedule = schedules.make_schedule(config, steps_per_epoch / accum, config.num_epochs)
    plateau = schedules.make_plateau(config)
    tx = finetune_optimizer(optim.make_optimizer(config, schedule), config.finetune)  # frozen params, lr_mults
    if accum > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accum).gradient_transformation()
    layers = freeze_batch_norm(backends.model_layers(config.backend), config.finetune.freeze)
    model = create_model(config.model, losses.num_outputs(config.loss, data.num_classes), layers)
    init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
    warm_start = functools.partial(initial_variables, config.model)
    state = create_train_state(model, init_key, data.image_shape, tx, plateau, config.ema_decay, accum, warm_start)
    log_finetune(config.finetune, state.params, state.batch_stats)

    mesh = sharding.make_mesh()
    state = sharding.replicate(state, mesh)
    loss_fn, evaluation = losses.make_loss(config), eval_options(config, data)
    training = {k: v for k, v in evaluation.items() if k != "tta"}  # the same loss, normalisation and dtype
    repl, batch = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    step_fn = functools.partial(steps.train_step, dropout_key=dropout_key, loss_fn=loss_fn, **training)
    train_step = jax.jit(step_fn, in_shardings=(repl, batch), out_shardings=(repl, repl), donate_argnums=(0,))
    eval_fn = functools.partial(steps.eval_step, loss_fn=loss_fn, **evaluation)
    eval_step = jax.jit(eval_fn, in_shardings=(repl, batch), out_shardings=repl)
    trainer = Trainer(config, data, mesh, schedule, plateau, steps_per_epoch, train_step, eval_step, higher_is_better)
    if config.data.scan_epoch:
        trainer.epoch_program = epoch_program.make_epoch_program(step_fn, mesh)
    return trainer, state


def evaluate(trainer: Trainer, state: TrainState, split: str) -> dict[str, float]:
    """Loss and accuracy over every example of `split` (padding masked out)."""
    # Sums stay on the device until the end (no sync per batch) and are added up in float64 on the host.
    sums = jax.device_get([trainer.eval_step(state, batch) for batch in trainer.eval_batches(split)])
    totals = {key: math.fsum(float(s[key]) for s in sums) for key in sums[0]}
    count = float(totals["count"])
    return {
        "loss": float(totals["loss_sum"]) / count,
        "accuracy": float(totals["correct"]) / count,
        "num_examples": int(round(count)),
    }


def _check_finite(loss: float, step: int, workdir: pathlib.Path) -> None:
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"loss became {loss} at step {step}; training stopped. The best checkpoint so far is kept in "
            f"{workdir / 'checkpoints' / BEST}. Try a lower optimizer.learning_rate or optimizer.grad_clip_norm."
        )


def train_epoch(
    trainer: Trainer,
    state: TrainState,
    epoch: int,
    callbacks: callbacks_lib.Callback,
    workdir: pathlib.Path,
    seen: Sequence[dict[str, Any]] = (),
    at_boundary: Callable[[int, TrainState, list], None] | None = None,
) -> tuple[TrainState, dict[str, float]]:
    """One pass over the training batches of `epoch` (0-based); returns the state and mean train metrics.

    `seen`: the per-step metrics of the batches a mid-epoch checkpoint had already trained; the pass continues
    with the next batch and averages over all of them, as the uninterrupted epoch would. `at_boundary(step,
    state, metrics so far)` runs after every step: the mid-epoch checkpoints, and PreemptedError to stop.
    """
    config = trainer.config
    step = epoch * trainer.steps_per_epoch + len(seen)
    start = time.perf_counter()
    if trainer.epoch_program is not None:  # data.scan_epoch: one call; callbacks see each step afterwards
        state, history = trainer.run_epoch_program(state, epoch, len(seen))
        for metrics in history:
            step += 1
            callbacks.on_batch_end(step, metrics)
        history = [*seen, *history]
    else:
        history = list(seen)
        for batch in trainer.train_batches(epoch, len(seen)):
            state, metrics = trainer.train_step(state, batch)
            step += 1
            history.append(metrics)
            callbacks.on_batch_end(step, metrics)
            if step % config.log_every_steps == 0:
                _check_finite(float(metrics["loss"]), step, workdir)
            if at_boundary is not None:
                at_boundary(step, state, history)
        history = jax.device_get(history)
    means = {key: float(np.mean([m[key] for m in history])) for key in history[0]}
    seconds = time.perf_counter() - start
    _check_finite(float(means["loss"]), step, workdir)
    return state, {
        "loss": float(means["loss"]),
        "accuracy": float(means["accuracy"]),
        "seconds": seconds,
        "images_per_second": (len(history) - len(seen)) * config.batch_size / seconds,
    }


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    callbacks: Sequence[callbacks_lib.Callback] = (),
    show_progress: bool = True,
) -> dict[str, Any]:
    """Trains `config` in `workdir` (resuming from its latest checkpoint if any) and returns the test metrics."""
    configure_process()  # before the data: a seed means the same numbers here as from main.py
    check_config(config)
    # The mean/std, size and resize the pretrained weights expect, written into the config (and so config.json).
    config, preprocessing = resolve_preprocessing(config)
    data = data_lib.load_data(config)
    workdir = pathlib.Path(workdir)
    trainer, state = build_trainer(config, data)
    run_files.write_run_files(workdir, config, data, preprocessing)
    logging.info("data: %s", data.describe())
    logging.info(
        "model %s: %s parameters; %d devices; %d steps/epoch",
        config.model.name,
        f"{count_parameters(state.params):,}",
        jax.device_count(),
        trainer.steps_per_epoch,
    )

    store = CheckpointStore(workdir)
    lost = False
    try:
        state, loop = epoch_end.restore_latest(store, state, config)
        all_callbacks = callbacks_lib.CallbackList(
            [*_builtin_callbacks(config, workdir, loop, show_progress), *callbacks]
        )
        with preemption.PreemptionWatch() as watch:  # SIGTERM: a checkpoint at the next step, PreemptedError
            state, loop = _fit(trainer, state, loop, store, all_callbacks, workdir, watch)
        test = _test_best(trainer, state, store, workdir)
        all_callbacks.on_train_end(test)
    except Exception as error:
        lost = sharding.is_lost_process(error)
        if lost:  # the store stays open: closing it would wait for the lost process in orbax's barriers
            raise sharding.lost_process_error(error, _resume_point(store)) from error
        raise
    finally:
        if not lost:
            store.close()
    sharding.barrier("run files complete")  # no process returns before process 0 has written the last file
    return test


def _resume_point(store: CheckpointStore) -> str:
    """Where a rerun resumes: the newest checkpoint on disk (orbax renames a checkpoint into place when complete)."""
    steps = {which: store.steps_on_disk(which) for which in (LATEST, BEST)}
    step, which = max(((s[-1], w) for w, s in steps.items() if s), default=(None, None))
    return "no checkpoint yet" if step is None else f"last complete checkpoint: {store.step_directory(which, step)}"


def _builtin_callbacks(config, workdir: pathlib.Path, loop: dict[str, Any], show_progress: bool) -> list:
    """Progress bar, history.csv (rewritten from the restored loop state), TensorBoard, curves.png, profile."""
    builtin: list[callbacks_lib.Callback] = []
    if jax.process_index() == 0:  # one process writes the files; the progress bar goes first so it is closed first
        if show_progress:
            builtin.append(callbacks_lib.ProgressBar(config.batch_size, config.log_every_steps))
        history = callbacks_lib.HistoryCSV(workdir / "history.csv", loop.get("history"))
        builtin += [history, callbacks_lib.TensorBoard(workdir)]
        builtin.append(CurvesPlot(workdir))  # curves.png, redrawn after each history.csv row
    if config.profile_steps:  # each process traces its own steps, into a folder of its own
        folder = "profile" if jax.process_index() == 0 else f"profile/process_{jax.process_index()}"
        builtin.append(callbacks_lib.ProfileTrace(workdir / folder, config.profile_steps))
    return builtin


def _fit(trainer, state, loop, store, callbacks, workdir, watch):
    """The epoch loop: train, validate, log, checkpoint, early-stop, reduce on plateau (epoch_end.py keeps the
    books, shared with vmap_seeds.py). Raises PreemptedError after the checkpoint of the step SIGTERM stopped at."""
    config = trainer.config
    callbacks.on_train_begin(loop["epoch"], config.num_epochs, trainer.steps_per_epoch)
    seen = epoch_end.seen_step_metrics(loop)  # non-empty when resuming from a mid-epoch checkpoint
    for epoch in range(loop["epoch"], config.num_epochs):
        if loop["stopped_early"]:
            break
        callbacks.on_epoch_begin(epoch + 1)
        at_boundary = functools.partial(
            preemption.step_boundary, store, loop, watch, trainer.steps_per_epoch, config.checkpoint.every_steps
        )
        state, train = train_epoch(trainer, state, epoch, callbacks, workdir, seen, at_boundary)
        seen = []
        val = evaluate(trainer, state, "val")
        step = (epoch + 1) * trainer.steps_per_epoch
        lr = epoch_end.learning_rate(trainer.schedule, state, step, config.grad_accum_steps)
        logs = epoch_end.epoch_logs(epoch + 1, step, train, val, lr)
        loop, improved = epoch_end.update_loop_state(loop, logs, config, trainer.higher_is_better, trainer.data)
        if trainer.plateau is not None:
            monitored = logs[config.checkpoint.monitor]
            plateau = schedules.step_plateau(trainer.plateau, state.plateau_state, monitored, trainer.higher_is_better)
            state = state.replace(plateau_state=plateau)
        epoch_end.save_epoch(store, step, state, loop, improved)
        callbacks.on_epoch_end(epoch + 1, logs)
        if watch.reached(step):  # the signal came in the epoch's last step or its validation (or scan_epoch)
            raise preemption.stopped(store, step, epoch + 1, trainer.steps_per_epoch)
        logging.info(
            "epoch %d/%d  train loss %.4f acc %.4f | val loss %.4f acc %.4f | lr %.3g | %.1fs %.0f img/s%s",
            epoch + 1,
            config.num_epochs,
            logs["train_loss"],
            logs["train_accuracy"],
            logs["val_loss"],
            logs["val_accuracy"],
            logs["learning_rate"],
            logs["epoch_seconds"],
            logs["images_per_second"],
            "  *best*" if improved else "",
        )
        if loop["stopped_early"]:
            logging.info(
                "early stopping: %s did not improve by %g for %d epochs",
                config.checkpoint.monitor,
                config.early_stopping.min_delta,
                config.early_stopping.patience,
            )
    return state, loop


def _test_best(trainer: Trainer, state: TrainState, store: CheckpointStore, workdir: pathlib.Path) -> dict:
    """Restores the best checkpoint, evaluates it on the test split and writes test_metrics.json."""
    state, best_step = epoch_end.best_state(store, state)
    test = epoch_end.write_test_metrics(workdir, evaluate(trainer, state, "test"), best_step)
    logging.info(
        "test (best checkpoint, step %d): loss %.4f accuracy %.4f on %d examples",
        test["checkpoint_step"],
        test["loss"],
        test["accuracy"],
        test["num_examples"],
    )
    return test
