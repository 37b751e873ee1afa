"""Learning-rate schedules (config.schedule) as optax schedules, plus reduce-on-plateau.

Every schedule starts from the peak rate config.optimizer.learning_rate. Durations in the config are in
epochs and are converted to optimizer steps with the number of steps per epoch. With `warmup_epochs > 0`
a linear warmup from 0 to the peak runs first (optax.join_schedules) and the chosen schedule spans the
remaining steps; a warmup not shorter than the run (a recipe's 1 epoch in a 1-epoch quick run) becomes half
the run, with a warning.

reduce_on_plateau cannot be a function of the step alone: it depends on the validation metric. Its base
schedule is constant and the training loop scales the optimizer's updates by `plateau_scale(state)`, a
multiplier that `step_plateau` lowers once per epoch when the monitored metric stalls
(optax.contrib.reduce_on_plateau).
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from absl import logging
from ml_collections import ConfigDict

from dl4cv_jax.choices import choose, require

# (peak learning rate, schedule section, steps the schedule spans, steps per epoch, total run steps)
_Builder = Callable[[float, ConfigDict, int, int, int], optax.Schedule]


def _epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """At least one step, so a short decay period cannot become a division by zero."""
    return max(1, round(epochs * steps_per_epoch))


def check_learning_rate(config: ConfigDict) -> float:
    """Returns config.optimizer.learning_rate after checking it is a positive finite number (an inf or nan
    rate would pass `> 0` or fail it only as nonsense, and turn the first update into nan weights)."""
    lr = config.optimizer.learning_rate
    require(math.isfinite(lr) and lr > 0, "optimizer.learning_rate", lr, "must be > 0 and finite")
    return float(lr)


def _end_fraction(sched: ConfigDict) -> float:
    require(0.0 <= sched.end_fraction <= 1.0, "schedule.end_fraction", sched.end_fraction, "must be in [0, 1]")
    return sched.end_fraction


def _decay_factor(sched: ConfigDict) -> float:
    require(0.0 < sched.decay_rate <= 1.0, "schedule.decay_rate", sched.decay_rate, "must be in (0, 1]")
    return sched.decay_rate


def _decay_steps(sched: ConfigDict, steps_per_epoch: int) -> int:
    require(sched.decay_epochs > 0, "schedule.decay_epochs", sched.decay_epochs, "must be > 0")
    return _epochs_to_steps(sched.decay_epochs, steps_per_epoch)


def _constant(peak, sched, span, steps_per_epoch, total):
    return optax.constant_schedule(peak)


def _exponential(peak, sched, span, steps_per_epoch, total):
    """peak * decay_rate ** (step / decay_steps); staircase floors the exponent."""
    return optax.exponential_decay(
        peak, _decay_steps(sched, steps_per_epoch), _decay_factor(sched), staircase=sched.staircase
    )


def _polynomial(peak, sched, span, steps_per_epoch, total):
    require(sched.power > 0, "schedule.power", sched.power, "must be > 0")
    return optax.polynomial_schedule(peak, peak * _end_fraction(sched), sched.power, span)


def _step(peak, sched, span, steps_per_epoch, total):
    """Multiply by decay_rate at each boundary; boundaries are fractions of the WHOLE run (warmup included).

    The schedule after a warmup counts from the end of the warmup, hence the shift by `total - span`.
    """
    fractions = tuple(sched.boundaries_epochs)
    key = "schedule.boundaries_epochs"
    require(all(0.0 < f < 1.0 for f in fractions), key, fractions, "must be fractions of the run in (0, 1)")
    require(list(fractions) == sorted(set(fractions)), key, fractions, "must be strictly increasing")
    warmup = total - span
    boundaries = [round(f * total) - warmup for f in fractions]
    require(all(b > 0 for b in boundaries), key, fractions, "must all lie after the warmup")
    factor = _decay_factor(sched)
    return optax.piecewise_constant_schedule(peak, {b: factor for b in boundaries})


def _inverse_time(peak, sched, span, steps_per_epoch, total):
    """peak / (1 + decay_rate * step / decay_steps), as Keras' InverseTimeDecay; optax has none."""
    require(sched.decay_rate >= 0, "schedule.decay_rate", sched.decay_rate, "must be >= 0")
    decay_steps, rate, staircase = _decay_steps(sched, steps_per_epoch), sched.decay_rate, sched.staircase

    def schedule(step):
        progress = jnp.asarray(step, jnp.float32) / decay_steps
        if staircase:
            progress = jnp.floor(progress)
        return peak / (1.0 + rate * progress)

    return schedule


def _cosine(peak, sched, span, steps_per_epoch, total):
    return optax.cosine_decay_schedule(peak, span, alpha=_end_fraction(sched))


def _linear(peak, sched, span, steps_per_epoch, total):
    return optax.linear_schedule(peak, peak * _end_fraction(sched), span)


def _one_cycle(peak, sched, span, steps_per_epoch, total):
    """Smith's 1cycle: cosine rise from peak/25 to peak over pct_start of the run, then down to peak/25e4."""
    require(0.0 < sched.pct_start < 1.0, "schedule.pct_start", sched.pct_start, "must be in (0, 1)")
    return optax.cosine_onecycle_schedule(span, peak, pct_start=sched.pct_start)


SCHEDULES: dict[str, _Builder] = {
    "constant": _constant,
    "exponential": _exponential,
    "polynomial": _polynomial,
    "step": _step,
    "inverse_time": _inverse_time,
    "cosine": _cosine,
    "linear": _linear,
    "one_cycle": _one_cycle,
    "reduce_on_plateau": _constant,  # the reduction is driven by the loop: see make_plateau
}


def warmup_epochs(warmup: float, num_epochs: int) -> float:
    """The warmup to use: `warmup` (config.schedule.warmup_epochs), or half the run when it is not shorter.

    A recipe's warmup of 1 or 5 epochs would otherwise stop a quick `--config.num_epochs=1` run; shortening it
    with a warning keeps the schedule's shape (rise, then the schedule) at the run's length. Negative is refused.
    """
    require(warmup >= 0, "schedule.warmup_epochs", warmup, "must be >= 0")
    if warmup < num_epochs:
        return warmup
    shortened = num_epochs / 2
    logging.warning(
        "config.schedule.warmup_epochs=%s is not below num_epochs=%s: using %s", warmup, num_epochs, shortened
    )
    return shortened


def make_schedule(config: ConfigDict, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
    """Returns step -> learning rate for config.schedule, with the optional linear warmup joined in front."""
    sched = config.schedule
    builder = choose(SCHEDULES, "schedule.name", sched.name)
    peak = check_learning_rate(config)
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch} must be >= 1 (is the training set smaller than a batch?)")
    require(num_epochs >= 1, "num_epochs", num_epochs, "must be >= 1")
    total = steps_per_epoch * num_epochs
    # At least one step is left to the schedule after the warmup (optax refuses a cosine over 0 steps).
    warmup = min(round(warmup_epochs(sched.warmup_epochs, num_epochs) * steps_per_epoch), math.ceil(total) - 1)
    main = builder(peak, sched, total - warmup, steps_per_epoch, total)
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def make_plateau(config: ConfigDict) -> optax.GradientTransformationExtraArgs | None:
    """The reduce-on-plateau transformation when schedule.name is reduce_on_plateau, else None.

    Initialise its state with `plateau.init(params)`. Only `atol` (plateau_min_delta) decides what counts
    as an improvement (rtol=0), as in Keras' ReduceLROnPlateau(min_delta=...).
    """
    sched = config.schedule
    if sched.name != "reduce_on_plateau":
        return None
    require(0.0 < sched.plateau_factor < 1.0, "schedule.plateau_factor", sched.plateau_factor, "must be in (0, 1)")
    require(sched.plateau_patience >= 1, "schedule.plateau_patience", sched.plateau_patience, "must be >= 1")
    require(sched.plateau_min_delta > 0, "schedule.plateau_min_delta", sched.plateau_min_delta, "must be > 0")
    require(sched.plateau_cooldown >= 0, "schedule.plateau_cooldown", sched.plateau_cooldown, "must be >= 0")
    plateau = optax.contrib.reduce_on_plateau(
        factor=sched.plateau_factor,
        patience=sched.plateau_patience,
        rtol=0.0,
        atol=sched.plateau_min_delta,
        cooldown=sched.plateau_cooldown,
        accumulation_size=1,
    )
    # Compiled once: run eagerly, its lax.cond costs noticeable time every epoch on a CPU (benchmarks/RESULTS.md).
    return optax.GradientTransformationExtraArgs(plateau.init, jax.jit(plateau.update))


def step_plateau(
    plateau: optax.GradientTransformationExtraArgs,
    plateau_state: optax.OptState,
    monitored_value: float,
    higher_is_better: bool,
) -> optax.OptState:
    """Feeds one epoch's validation metric to reduce-on-plateau and returns the new state.

    optax minimises the value it is given, so a metric where higher is better (accuracy) is negated.
    """
    value = -monitored_value if higher_is_better else monitored_value
    _, new_state = plateau.update({}, plateau_state, value=jnp.asarray(value, jnp.float32))
    return new_state


def plateau_scale(plateau_state: optax.OptState) -> float:
    """The current multiplier of the learning rate (1.0 until the first reduction)."""
    return float(plateau_state.scale)
