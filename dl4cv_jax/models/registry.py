"""Model names → builders; `create_model` is the one entry point the training loop uses."""

from collections.abc import Callable

import flax.linen as nn
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.models import alexnet, densenet, googlenet, mobilenet, vit
from dl4cv_jax.models.cifar_resnet import cifar_resnet_builder
from dl4cv_jax.models.cnn import build_cnn
from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.lenet import build_lenet
from dl4cv_jax.models.mlp import build_mlp
from dl4cv_jax.models.resnet import resnet_builder
from dl4cv_jax.models.vgg import vgg_builder

# (config.model, number of outputs, layers) -> module; see models/layers.py for `layers`.
ModelBuilder = Callable[[ml_collections.ConfigDict, int, Layers], nn.Module]

MODELS: dict[str, ModelBuilder] = {
    "mlp": build_mlp,
    "lenet": build_lenet,
    "cnn": build_cnn,
    **{f"vgg{depth}": vgg_builder(depth, batch_norm=False) for depth in (11, 13, 16, 19)},
    **{f"vgg{depth}_bn": vgg_builder(depth, batch_norm=True) for depth in (11, 13, 16, 19)},
    **{f"resnet{depth}": resnet_builder(depth) for depth in (18, 34, 50, 101, 152)},
    **{f"resnet{depth}": cifar_resnet_builder(depth) for depth in (20, 32, 44, 56, 110)},
    **alexnet.BUILDERS,
    **googlenet.BUILDERS,
    **densenet.BUILDERS,
    **mobilenet.BUILDERS,
    **vit.BUILDERS,
}


def create_model(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
    """Builds `config.model.name` for `num_outputs` classes; bad names or options raise ConfigError.

    Input size and channels are not configured: Flax infers them from the batch passed to `init`. Apply with
    `mutable=['batch_stats']` when training a model with BatchNorm, and give a 'dropout' rng when
    `dropout_rate` > 0. `layers` are Flax's unless the caller (the trainer, from `config.backend`) hands in
    another implementation with the same variables (models/layers.py).
    """
    builder = choose(MODELS, "model.name", model_config.name)
    return builder(model_config, num_outputs, layers)
