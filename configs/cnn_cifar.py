"""A small CNN on CIFAR-10: the quick baseline."""

import ml_collections

from configs import cifar_common, default


def get_config() -> ml_collections.ConfigDict:
    config = cifar_common.use_cifar10(default.get_config())
    config.model.name = "cnn"
    config.model.width = 64
    config.model.dropout_rate = 0.2
    config.batch_size = 128
    config.num_epochs = 20
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.05
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_epochs = 1.0
    return config
