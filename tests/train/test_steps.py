"""The jit-compiled train step as the loop builds it: randomness per step."""

import jax
import jax.numpy as jnp

from dl4cv_jax.data import load_data
from dl4cv_jax.train.loop import build_trainer
from tests.conftest import tiny_digits_config


def _batch_loss_at_steps(dropout_rate: float, steps: tuple[int, ...]) -> list[float]:
    """The loss of one batch under the same weights, with the state's step counter set to each of `steps`."""
    config = tiny_digits_config(model__dropout_rate=dropout_rate, schedule__name="constant")
    trainer, state = build_trainer(config, load_data(config))
    batch = next(iter(trainer.train_batches(0)))
    losses = []
    for step in steps:
        # A copy each time: the compiled step donates (consumes) its input state.
        at_step = jax.tree.map(jnp.copy, state).replace(step=jnp.asarray(step, state.step.dtype))
        _, metrics = trainer.train_step(at_step, batch)
        losses.append(float(metrics["loss"]))
    return losses


def test_consecutive_steps_draw_different_dropout_masks_and_a_step_always_the_same():
    first, second, first_again, later = _batch_loss_at_steps(0.5, (0, 1, 0, 1000))
    assert first != second and first != later and second != later, "the dropout mask did not change with the step"
    assert first_again == first, "the same step drew another mask: a resumed run would not repeat itself"


def test_without_dropout_the_step_counter_does_not_change_the_loss():
    # The control for the test above: with a constant rate, only dropout makes the loss depend on the step.
    first, second = _batch_loss_at_steps(0.0, (0, 1))
    assert first == second
