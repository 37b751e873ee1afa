"""Run by test_multidevice.py in a subprocess (the device count is fixed when jax starts).

Trains a few steps of a BatchNorm + dropout CNN on digits (`config.backend` from the command line) and saves
parameters, batch statistics and losses, so the test can compare a 1-device run with an 8-device run. Also
records the error for a batch size that does not divide by the device count.
"""

import json
import sys

import jax
import numpy as np

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data, train_batches
from dl4cv_jax.train.loop import build_trainer
from tests.conftest import tiny_digits_config

STEPS = 6


def main(out_prefix: str, backend: str) -> None:
    config = tiny_digits_config(model__dropout_rate=0.2, backend=backend)
    config.data.augment = ("crop", "flip")
    config.data.crop_padding = 1
    data = load_data(config)
    trainer, state = build_trainer(config, data)
    losses = []
    for i, batch in enumerate(train_batches(data, config, epoch=0)):
        if i == STEPS:
            break
        state, metrics = trainer.train_step(state, trainer.put_batch(batch))
        losses.append(float(metrics["loss"]))
    tree = {"params": state.params, "batch_stats": state.batch_stats}
    leaves = {jax.tree_util.keystr(path): np.asarray(x) for path, x in jax.tree_util.tree_leaves_with_path(tree)}
    np.savez(out_prefix + ".npz", losses=np.asarray(losses), **leaves)

    error = None
    try:
        build_trainer(tiny_digits_config(batch_size=12), data)
    except ConfigError as e:
        error = str(e)
    with open(out_prefix + ".json", "w") as f:
        json.dump({"device_count": jax.device_count(), "batch_error": error}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
