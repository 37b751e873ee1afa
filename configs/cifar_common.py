"""Shared CIFAR-10 data settings: the JPEG class folders from ../shared/data, extracted by `make cifar10`.

To read CIFAR-10 through tfds instead: --config.data.source=tfds --config.data.name=cifar10.
"""

import ml_collections

CIFAR10_DIR = "~/.cache/dl4cv/cifar10"  # `make cifar10` extracts ../shared/data/cifar10_jpeg.tar.gz here
CIFAR10_MEAN = (0.491, 0.481, 0.444)
CIFAR10_STD = (0.246, 0.244, 0.262)


def use_cifar10(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Points `config.data` at CIFAR-10 (folders) with the standard crop + flip augmentation."""
    config.data.source = "folder"
    config.data.dir = CIFAR10_DIR
    config.data.name = "cifar10"
    config.data.val_fraction = 0.1  # 5,000 of the 50,000 training images, stratified
    config.data.augment = ("crop", "flip")
    config.data.crop_padding = 4
    config.data.mean = CIFAR10_MEAN
    config.data.std = CIFAR10_STD
    config.model.stem = "cifar"
    return config
