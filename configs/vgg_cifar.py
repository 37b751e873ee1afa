"""VGG-16 with BatchNorm on CIFAR-10 (global-pool head for 32x32 inputs)."""

import ml_collections

from configs import cifar_common, default


def get_config() -> ml_collections.ConfigDict:
    config = cifar_common.use_cifar10(default.get_config())
    config.model.name = "vgg16_bn"
    config.model.dropout_rate = 0.0
    config.batch_size = 128
    config.num_epochs = 60
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.05
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_epochs = 2.0
    return config
