"""Data: sources (digits, synthetic, folder, tfds, numpy), stratified splits and k-folds, augmentations, and two
input pipelines: tf.data (`pipeline.py`) and on-device (`device.py`, config.data.pipeline='device').

data = load_data(config)
for batch in train_batches(data, config, epoch): ...   # {'image': uint8, 'label': int32 (float [B, C] with mixup)}
for batch in eval_batches(data, 'val', config): ...    # + 'mask': float32, 0 for padding

The tf.data names are imported on first use (PEP 562), so that `load_data` on digits, synthetic or numpy data and
the device pipeline work where TensorFlow is not installed (GPU images often lack it).
"""

import importlib

from dl4cv_jax.data.batching import eval_batch_size, steps_per_epoch
from dl4cv_jax.data.dataset import Data
from dl4cv_jax.data.sources import SOURCES, load_data

_PIPELINE = ("eval_batches", "train_batches")

__all__ = ["SOURCES", "Data", "eval_batch_size", "load_data", "steps_per_epoch", *_PIPELINE]  # noqa: PLE0604


def __getattr__(name: str):
    if name in _PIPELINE:
        return getattr(importlib.import_module("dl4cv_jax.data.pipeline"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
