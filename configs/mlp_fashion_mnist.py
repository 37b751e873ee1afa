"""A multi-layer perceptron with dropout on Fashion-MNIST through tensorflow-datasets."""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.name = "mlp"
    config.model.hidden_sizes = (512, 256)
    config.model.dropout_rate = 0.2
    config.data.source = "tfds"
    config.data.name = "fashion_mnist"
    config.data.val_fraction = 0.1
    config.batch_size = 128
    config.num_epochs = 20
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 1e-4
    config.schedule.name = "cosine"
    config.early_stopping.patience = 5
    return config
