"""The CIFAR ResNets of He et al. 2016, section 4.2: ResNet-20/32/44/56/110 with 16-32-64 widths.

Shortcuts are the paper's parameter-free "option A": where a stage halves the map and doubles the width,
the shortcut takes every other pixel and zero-pads the new channels, so only convs, norms and the final
Dense hold parameters (ResNet-20: 269,722 on 10 classes).
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.norm import NormSpec, conv_bias, conv_kernel_init, norm_layer, norm_spec_from_config

WIDTHS = (16, 32, 64)


def option_a_shortcut(x: jax.Array, out: int, stride: int) -> jax.Array:
    """Subsamples by `stride` and zero-pads channels evenly on both sides up to `out` (no parameters)."""
    if stride > 1:
        x = x[:, ::stride, ::stride, :]
    extra = out - x.shape[-1]
    if extra > 0:
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return x


def _conv3x3(layers: Layers, norm: NormSpec, features: int, stride: int, name: str) -> nn.Module:
    padding = ((1, 1), (1, 1))
    return layers.conv(
        features, (3, 3), (stride, stride), padding, use_bias=conv_bias(norm), kernel_init=conv_kernel_init, name=name
    )


class CifarBlock(nn.Module):
    """conv3x3-norm-relu-conv3x3-norm, plus the option-A shortcut, then relu."""

    features: int
    stride: int
    norm: NormSpec
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        y = make_norm(self.features, "norm1", relu=True)(
            _conv3x3(self.layers, self.norm, self.features, self.stride, "conv1")(x)
        )
        y = make_norm(self.features, "norm2")(_conv3x3(self.layers, self.norm, self.features, 1, "conv2")(y))
        return nn.relu(y + option_a_shortcut(x, self.features, self.stride))


class CifarResNet(nn.Module):
    """conv3x3(16)-norm-relu, three stages of `blocks_per_stage` blocks, global avg pool, dropout, Dense."""

    num_outputs: int
    blocks_per_stage: int = 3
    norm: NormSpec = NormSpec()
    dropout_rate: float = 0.0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        x = make_norm(WIDTHS[0], "norm1", relu=True)(_conv3x3(self.layers, self.norm, WIDTHS[0], 1, "conv1")(x))
        for stage, width in enumerate(WIDTHS):
            for index in range(self.blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                x = CifarBlock(width, stride, self.norm, self.layers, name=f"layer{stage + 1}_{index}")(x, train)
        x = x.mean(axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, name="fc")(x)


def cifar_resnet_builder(depth: int) -> Callable[..., nn.Module]:
    """Builder for ResNet-`depth` (depth = 6n + 2), reading `config.model.norm` and `dropout_rate`.

    `config.model.stem` is ignored: these nets always use the paper's 3x3/1 stem.
    """
    if (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")

    def build(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
        return CifarResNet(
            num_outputs=num_outputs,
            blocks_per_stage=(depth - 2) // 6,
            norm=norm_spec_from_config(model_config),
            dropout_rate=float(model_config.dropout_rate),
            layers=layers,
        )

    return build
