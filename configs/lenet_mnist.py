"""LeNet-5 on MNIST through tensorflow-datasets (prepare it once: `tfds build mnist`, or set data.dir)."""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.name = "lenet"
    config.data.source = "tfds"
    config.data.name = "mnist"
    config.data.val_fraction = 0.1  # carved from the 60,000 training images, stratified
    config.batch_size = 128
    config.num_epochs = 10
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.schedule.name = "cosine"
    return config
