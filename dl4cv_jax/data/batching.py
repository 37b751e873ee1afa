"""Batch arithmetic shared by both input pipelines (tf.data and on-device), free of TensorFlow.

The epoch order is the single source of truth for which examples form which batch: both pipelines take it from
here, so they visit the same examples in the same order.
"""

import ml_collections
import numpy as np

from dl4cv_jax.choices import require
from dl4cv_jax.data.dataset import Data

_ORDER_STREAM = 0x0D0E  # keeps the epoch order's random stream apart from splitting and subsetting


def steps_per_epoch(data: Data, config: ml_collections.ConfigDict) -> int:
    """Training batches per epoch: every full global batch of the training split (the remainder is dropped)."""
    require(config.batch_size > 0, "batch_size", config.batch_size, "must be > 0")
    n = data.num_examples("train")
    require(config.batch_size <= n, "batch_size", config.batch_size, f"is larger than the {n} training examples")
    return n // config.batch_size


def eval_batch_size(config: ml_collections.ConfigDict) -> int:
    """Global evaluation batch: config.eval_batch_size, or config.batch_size when that is 0."""
    return config.eval_batch_size or config.batch_size


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of epoch `epoch`: a permutation of range(n), a pure function of (seed, epoch)."""
    return np.random.default_rng([_ORDER_STREAM, seed, epoch]).permutation(n)


def local_batch_size(global_size: int, key: str, process_index: int, process_count: int) -> int:
    """This process's share of a global batch; ConfigError unless it divides evenly."""
    require(global_size > 0, key, global_size, "must be > 0")
    require(
        global_size % process_count == 0,
        key,
        global_size,
        f"must divide evenly over {process_count} processes",
    )
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, {process_count})")
    return global_size // process_count
