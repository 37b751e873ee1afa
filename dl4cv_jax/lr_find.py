"""`--mode=lr_find`: the learning-rate range test (L. Smith 2017, "Cyclical learning rates"; fastai's lr_find).

Train from the config's initial state while the learning rate grows exponentially from `start_lr` to `end_lr`,
one step per rate, and record the loss. It stays flat while the rate is too small to matter, falls where the
rate is useful, and shoots up where training diverges (the test stops once the smoothed loss exceeds
`diverge_factor` × its minimum). The suggestion is a third of the rate at the smoothed loss's minimum
(`min_loss_lr / 3`, half a decade below it): the minimum marks where training at a rising rate turns unstable,
and the best constant rate sits just below that edge. The steepest descent (fastai's older default) and
`min_loss_lr / 10` are reported too. The steepest point moves with the test's steps per decade and, at the
default 300 steps, lies well below the best constant rate; fastai's `valley` (halfway along the longest falling
stretch) lands lower still, because the noisy plateau of tiny rates counts as part of that stretch.

It uses the library's own pieces (`build_trainer`: model, optimizer from config.optimizer, jit-compiled
`train_step`, sharding, data order and augmentation), only with this schedule in place of config.schedule.
Settings come from an optional `config.lr_find` section (fields of `LRFindSettings`), else the defaults.
"""

import dataclasses
import itertools
import math
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from dl4cv_jax import data as data_lib
from dl4cv_jax import optim
from dl4cv_jax.choices import require
from dl4cv_jax.train import sharding
from dl4cv_jax.train.finetune import finetune_optimizer
from dl4cv_jax.train.loop import build_trainer
from dl4cv_jax.train.run_files import write_json


@dataclasses.dataclass(frozen=True)
class LRFindSettings:
    """How the range test runs. `smoothing` is the EMA factor of the loss; 0 = auto (the EMA spans ~1/10 of
    the steps, capped at fastai's 0.98), so a short test is not smoothed into a lagging curve."""

    num_steps: int = 300
    start_lr: float = 1e-7
    end_lr: float = 10.0
    smoothing: float = 0.0
    diverge_factor: float = 4.0

    def beta(self) -> float:
        return self.smoothing or min(0.98, max(0.0, 1.0 - 10.0 / self.num_steps))


def settings_from_config(config: ml_collections.ConfigDict) -> LRFindSettings:
    """LRFindSettings with any field a `config.lr_find` section sets; checks the values."""
    section = dict(config.get("lr_find", None) or {})
    fields = [f.name for f in dataclasses.fields(LRFindSettings)]
    unknown = sorted(set(section) - set(fields))
    require(not unknown, "lr_find", unknown, f"has unknown fields; choose from: {', '.join(fields)}")
    settings = LRFindSettings(**section)
    require(settings.num_steps >= 5, "lr_find.num_steps", settings.num_steps, "must be >= 5")
    require(0 < settings.start_lr < settings.end_lr, "lr_find.start_lr", settings.start_lr, "must be in (0, end_lr)")
    require(0 <= settings.smoothing < 1, "lr_find.smoothing", settings.smoothing, "must be in [0, 1)")
    require(settings.diverge_factor > 1, "lr_find.diverge_factor", settings.diverge_factor, "must be > 1")
    return settings


def exponential_schedule(start_lr: float, end_lr: float, num_steps: int) -> optax.Schedule:
    """step -> start_lr * (end_lr / start_lr) ** (step / (num_steps - 1)): start_lr at step 0, end_lr at the last."""
    return optax.exponential_decay(start_lr, transition_steps=num_steps - 1, decay_rate=end_lr / start_lr)


def smooth(losses: np.ndarray, beta: float) -> np.ndarray:
    """Exponential moving average with bias correction (so the first values are not pulled towards 0)."""
    out, average = np.empty(len(losses)), 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out[i] = average / (1 - beta ** (i + 1))
    return out


def steepest_descent_lr(learning_rates: np.ndarray, smoothed: np.ndarray, lowest: int) -> float | None:
    """The rate where the smoothed loss falls fastest per decade (most negative d loss / d log10 lr), searched
    between the first 10% of the steps, which the smoothing still pulls around, and the minimum at `lowest`.
    None when there is no descent to measure (the loss fell at once). Reported, not suggested: with many steps
    per decade it picks the start of the descent, far below the best constant rate."""
    skip = max(1, len(smoothed) // 10)
    if lowest - skip < 2:
        return None
    slope = np.gradient(smoothed[: lowest + 1], np.log10(learning_rates[: lowest + 1]))
    return float(learning_rates[skip + int(np.argmin(slope[skip:]))])


def suggest(learning_rates: np.ndarray, smoothed: np.ndarray) -> dict[str, float]:
    """The picks from a smoothed range-test curve: `min_loss_lr_div3` (the suggestion), the min-loss rate itself,
    min/10 and the steepest descent.

    A third of the min-loss rate, because the minimum is where a rising rate has just turned training unstable
    (the loss lags the rate, so the edge is a little below it): half a decade lower is a rate that still trains
    fast and stays stable at a constant value. Trap: when the loss never turned up (no divergence before
    end_lr), the minimum is the last rate and the suggestion only a lower bound; rerun with a larger end_lr.
    """
    lowest = int(np.argmin(smoothed))
    min_loss_lr = float(learning_rates[lowest])
    steepest = steepest_descent_lr(learning_rates, smoothed, lowest)
    return {
        "min_loss_lr": min_loss_lr,
        "min_loss_lr_div3": min_loss_lr / 3,
        "min_loss_lr_div10": min_loss_lr / 10,
        "steepest_lr": min_loss_lr / 10 if steepest is None else steepest,
    }


def diverging(loss: float, smoothed: float, lowest: float, factor: float) -> bool:
    """The stop rule: the loss is not finite, or the smoothed loss exceeds `factor` x the lowest smoothed loss.

    Networks with BatchNorm often never reach it (their loss saturates near chance instead of exploding);
    the test then simply runs all its steps.
    """
    return not math.isfinite(loss) or smoothed > factor * lowest


def range_test(config: ml_collections.ConfigDict, settings: LRFindSettings) -> tuple[np.ndarray, np.ndarray, bool]:
    """Runs the test; returns the learning rates and raw losses of the steps taken, and whether it stopped at
    divergence."""
    trainer, state = build_trainer(config, data_lib.load_data(config))
    schedule = exponential_schedule(settings.start_lr, settings.end_lr, settings.num_steps)
    # config.optimizer, driven by the range-test schedule, with the run's frozen parameters and lr_mults.
    tx = finetune_optimizer(optim.make_optimizer(config, schedule), config.finetune)
    # One optimizer update per batch and per rate: gradient accumulation (grad_accum_steps) is not applied.
    state = state.replace(tx=tx, opt_state=tx.init(state.params), grad_accum_steps=1)
    state = sharding.replicate(state, trainer.mesh)
    losses: list[float] = []
    lowest, average, beta, diverged = math.inf, 0.0, settings.beta(), False
    batches = itertools.chain.from_iterable(trainer.train_batches(epoch) for epoch in itertools.count())
    for step, batch in zip(range(settings.num_steps), batches, strict=False):
        state, metrics = trainer.train_step(state, batch)
        loss = float(metrics["loss"])
        losses.append(loss)
        average = beta * average + (1 - beta) * loss
        smoothed = average / (1 - beta ** (step + 1))
        lowest = min(lowest, smoothed)
        if diverging(loss, smoothed, lowest, settings.diverge_factor):
            diverged = True
            break
    learning_rates = np.asarray([float(schedule(i)) for i in range(len(losses))])
    return learning_rates, np.asarray(losses), diverged


def plot(result: dict[str, Any], path: pathlib.Path) -> None:
    """lr_find.png: raw and smoothed loss against the learning rate (log scale), the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs, raw, smoothed = (np.asarray(result[k]) for k in ("learning_rates", "losses", "smoothed_losses"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    finite = np.isfinite(raw)
    ax.plot(lrs[finite], raw[finite], color="0.75", linewidth=0.8, label="loss")
    ax.plot(lrs, smoothed, color="C0", label="smoothed loss")
    ax.axvline(
        result["suggested_lr"], color="C3", linestyle="--", label=f"suggested (min/3): {result['suggested_lr']:.2g}"
    )
    ax.axvline(result["min_loss_lr"], color="0.4", linestyle=":", label=f"min loss: {result['min_loss_lr']:.2g}")
    ax.axvline(result["steepest_lr"], color="C2", linestyle=":", label=f"steepest: {result['steepest_lr']:.2g}")
    top = min(np.nanmax(smoothed), result["settings"]["diverge_factor"] * np.nanmin(smoothed))
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="learning-rate range test")
    # Both ends set: the diverged steps' huge raw losses would otherwise stretch the autoscaled bottom below 0.
    bottom = min(np.min(raw[finite]), np.nanmin(smoothed))
    ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.05 * (top - bottom))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lr_find(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path, settings: LRFindSettings | None = None
) -> dict[str, Any]:
    """Runs the range test for `config`, writes workdir/lr_find.json and lr_find.png, returns the result.

    `suggested_lr` is a third of the min-loss rate; a fine starting value for optimizer.learning_rate with a
    schedule that decays from it (cosine, one_cycle's peak).
    """
    settings = settings or settings_from_config(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    learning_rates, losses, diverged = range_test(config, settings)
    smoothed = smooth(np.where(np.isfinite(losses), losses, np.nan), settings.beta())
    valid = np.isfinite(smoothed)
    picks = suggest(learning_rates[valid], smoothed[valid])
    result = {
        "suggested_lr": picks["min_loss_lr_div3"],
        "method": "a third of the learning rate at the smoothed loss's minimum (min_loss_lr / 3)",
        **picks,
        "steps_run": len(losses),
        "diverged": diverged,
        "settings": {**dataclasses.asdict(settings), "beta": settings.beta()},
        "optimizer": config.optimizer.name,
        "learning_rates": learning_rates.tolist(),
        "losses": [x if math.isfinite(x) else None for x in losses.tolist()],
        "smoothed_losses": [x if math.isfinite(x) else None for x in smoothed.tolist()],
    }
    if jax.process_index() == 0:
        write_json(workdir / "lr_find.json", result)
        plot({**result, "losses": losses, "smoothed_losses": smoothed}, workdir / "lr_find.png")
    logging.info(
        "lr_find (%s, %d steps%s): suggested learning rate %.3g (min-loss / 3); steepest descent %.3g -> %s",
        config.optimizer.name,
        len(losses),
        ", stopped at divergence" if result["diverged"] else "",
        result["suggested_lr"],
        result["steepest_lr"],
        workdir / "lr_find.png",
    )
    return result
