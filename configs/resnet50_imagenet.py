"""ResNet-50 on ImageNet (ILSVRC-2012) through tensorflow-datasets, as in Goyal et al. (2017).

The data must be prepared beforehand (`tfds build imagenet2012` with the manual download); set data.dir.
Learning rate 0.1 per 256 images, 5 warmup epochs, cosine decay, label smoothing 0.1.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.name = "resnet50"
    config.model.stem = "imagenet"
    config.data.source = "tfds"
    config.data.name = "imagenet2012"
    config.data.image_size = 224
    config.data.train_split = "train"
    config.data.val_split = "validation"
    config.data.test_split = "validation"  # ImageNet's test labels are not public
    config.data.augment = ("crop", "flip")
    config.data.crop_padding = 16
    config.data.mean = (0.485, 0.456, 0.406)
    config.data.std = (0.229, 0.224, 0.225)
    config.batch_size = 256
    config.num_epochs = 90
    config.loss = "softmax_cross_entropy"
    config.label_smoothing = 0.1
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.1 * config.batch_size / 256
    config.optimizer.weight_decay = 1e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_epochs = 5.0
    return config
