"""debug.overfit_batches=N trains every epoch on the same N batches: a working model drives their loss to ~0."""

import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data
from dl4cv_jax.train.loop import build_trainer, train_and_evaluate
from tests.conftest import tiny_digits_config


def test_two_batches_are_memorised():
    # The loop's own pieces (trainer, batches, jitted step) without its per-epoch validation and checkpoints.
    config = tiny_digits_config(
        debug__overfit_batches=2, num_epochs=40, model__width=16, optimizer__name="adam", optimizer__learning_rate=1e-2
    )
    trainer, state = build_trainer(config, load_data(config))
    assert trainer.steps_per_epoch == 2
    first = [np.asarray(b["label"]) for b in trainer.train_batches(0)]
    later = [np.asarray(b["label"]) for b in trainer.train_batches(7)]
    assert len(first) == 2 and all(np.array_equal(a, b) for a, b in zip(first, later, strict=True))

    losses = []
    for epoch in range(config.num_epochs):
        for batch in trainer.train_batches(epoch):
            state, metrics = trainer.train_step(state, batch)
            losses.append(float(metrics["loss"]))
    assert losses[0] > 1.0  # it starts near chance (ln 10 = 2.3)
    assert max(losses[-2:]) < 0.05, losses[-6:]


def test_more_batches_than_an_epoch_holds_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="debug.overfit_batches"):
        train_and_evaluate(tiny_digits_config(debug__overfit_batches=1000), tmp_path, show_progress=False)
