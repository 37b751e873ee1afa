"""ResNet-20 of He et al. (2016) on CIFAR-10: 0.27 M parameters, option-A shortcuts.

The paper trains 164 epochs (91.25% on the original data); `--config.num_epochs` trades accuracy for time.
"""

import ml_collections

from configs import cifar_common, default


def get_config() -> ml_collections.ConfigDict:
    config = cifar_common.use_cifar10(default.get_config())
    config.model.name = "resnet20"
    config.batch_size = 128
    config.num_epochs = 60
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 1e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_epochs = 1.0
    return config
