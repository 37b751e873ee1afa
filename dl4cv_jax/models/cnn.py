"""A small conv net for tiny images (8x8 digits, 28x28 MNIST, 32x32 CIFAR): the default model."""

import functools

import flax.linen as nn
import jax
import ml_collections

from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.norm import NormSpec, conv_bias, conv_kernel_init, norm_layer, norm_spec_from_config


class CNN(nn.Module):
    """Two blocks of [conv3x3-norm-relu] x 2 + max pool (width, then 2 x width channels), global average
    pool, dropout, Dense."""

    num_outputs: int
    width: int = 32
    norm: NormSpec = NormSpec()
    dropout_rate: float = 0.0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        conv = functools.partial(self.layers.conv, kernel_init=conv_kernel_init)
        for block, channels in enumerate((self.width, 2 * self.width)):
            for layer in range(2):
                name = f"{block + 1}_{layer + 1}"
                x = conv(channels, (3, 3), padding="SAME", use_bias=conv_bias(self.norm), name=f"conv{name}")(x)
                x = make_norm(channels, f"norm{name}", relu=True)(x)
            x = self.layers.max_pool_2x2(x)
        x = x.mean(axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, name="fc")(x)


def build_cnn(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
    """CNN from `config.model.width`, `norm` (and its options) and `dropout_rate`."""
    return CNN(
        num_outputs=num_outputs,
        width=int(model_config.width),
        norm=norm_spec_from_config(model_config),
        dropout_rate=float(model_config.dropout_rate),
        layers=layers,
    )
