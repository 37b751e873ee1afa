"""ResNet-18 with the CIFAR stem (3x3 conv, no max-pool) on CIFAR-10."""

import ml_collections

from configs import cifar_common, default


def get_config() -> ml_collections.ConfigDict:
    config = cifar_common.use_cifar10(default.get_config())
    config.model.name = "resnet18"
    config.batch_size = 128
    config.num_epochs = 60
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_epochs = 2.0
    config.early_stopping.patience = 15
    return config
