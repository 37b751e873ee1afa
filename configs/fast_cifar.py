"""A CIFAR-10 speed-run recipe built from the library's own parts, in the spirit of airbench.

A small VGG-like net with BatchNorm (the `cnn` model at width 64: 64-64 / 128-128 channels), label smoothing,
Nesterov SGD with a short one-cycle schedule, flip + translate augmentation, an EMA of the weights, and
flip + translate test-time augmentation. `data.pipeline=device` keeps the images and their augmentation on the
accelerator. Not yet tuned on a GPU: treat the numbers as a starting point. benchmarks/RESULTS.md has CPU-sized
runs (width 16: 0.6477 test accuracy after 4 epochs, 0.6779 after 6) and `benchmarks/gpu_session.sh fast_cifar`
runs it on a GPU machine without TensorFlow.
"""

import ml_collections

from configs import cifar_common, default


def get_config() -> ml_collections.ConfigDict:
    config = cifar_common.use_cifar10(default.get_config())
    config.model.name = "cnn"
    config.model.width = 64
    config.data.augment = ("flip", "crop(2)")
    config.data.pipeline = "device"
    config.batch_size = 512
    config.num_epochs = 10
    config.label_smoothing = 0.2
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.4
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "one_cycle"
    config.schedule.pct_start = 0.25
    config.ema_decay = 0.99
    config.eval_tta = ("flip", "translate")
    return config
