"""Fine-tune the CIFAR-10 ResNet-20 of ../shared/models on a small new task (docs/pretrained.md).

The task is a folder of class folders (`--config.data.dir`); `experiments/transfer_demo.py` builds a 2-class
animal-vs-vehicle task with 200 training images from the CIFAR-10 JPEGs and runs the three usual variants:
  full fine-tune   this config (the new 2-class head is initialised fresh; the backbone starts pretrained)
  linear probe     --config.finetune.freeze='^(?!fc/)'  (every parameter but the head is frozen, BN included)
  from scratch     --config.model.pretrained=''
"""

import ml_collections

from configs import default

# The weights' own preprocessing (../shared/models/README.md): RGB in [0, 1], ImageNet statistics, 32x32.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.name = "resnet20"
    config.model.pretrained = "../shared/models/resnet20-12fca82f.th"
    config.data.source = "folder"
    config.data.dir = "runs/transfer_demo/task"
    config.data.name = "animal_vs_vehicle"
    config.data.mean = IMAGENET_MEAN
    config.data.std = IMAGENET_STD
    config.data.augment = ("crop", "flip")
    config.batch_size = 32
    config.num_epochs = 30
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.01
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "cosine"
    return config
