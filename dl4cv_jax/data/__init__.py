"""Data: sources (digits, synthetic, folder, tfds), stratified splits, augmentations and the tf.data pipeline.

data = load_data(config)
for batch in train_batches(data, config, epoch): ...   # {'image': uint8, 'label': int32}
for batch in eval_batches(data, 'val', config): ...    # + 'mask': float32, 0 for padding
"""

from dl4cv_jax.data.dataset import Data
from dl4cv_jax.data.pipeline import eval_batch_size, eval_batches, steps_per_epoch, train_batches
from dl4cv_jax.data.sources import SOURCES, load_data

__all__ = [
    "SOURCES",
    "Data",
    "eval_batch_size",
    "eval_batches",
    "load_data",
    "steps_per_epoch",
    "train_batches",
]
