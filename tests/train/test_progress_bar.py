"""The progress bar draws on a terminal and stays out of redirected output (log files, CI)."""

import io

import numpy as np

from dl4cv_jax.train.callbacks import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_one_epoch(stream: io.StringIO) -> str:
    bar = ProgressBar(batch_size=64, update_every=1, stream=stream)
    bar.on_train_begin(0, 2, 5)
    bar.on_epoch_begin(1)
    for step in range(1, 6):
        bar.on_batch_end(step, {"loss": np.float32(0.5), "accuracy": np.float32(0.75)})
    if stream.isatty():
        assert bar.bar.n == 5  # every step counted by the end of the epoch
    bar.on_epoch_end(1, {})
    return stream.getvalue()


def test_bar_draws_on_a_terminal_only():
    assert "epoch 1/2" in run_one_epoch(Terminal())
    assert run_one_epoch(io.StringIO()) == ""
