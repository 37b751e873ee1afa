"""ResNet-18..152 as torchvision builds them (He et al. 2016; Bottleneck with the stride on the 3x3 conv,
i.e. "ResNet v1.5"), with an ImageNet stem or a CIFAR stem for 32x32 inputs.

Convs followed by a norm have no bias (a norm's shift cancels it); with norm='none' every conv gets a bias.
The last norm of each block starts at scale 1, as torchvision's default (zero_init_residual=False).
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.norm import NormSpec, norm_layer, norm_spec_from_config, padded_conv

STEMS = ("imagenet", "cifar")
BOTTLENECK_EXPANSION = 4  # a Bottleneck outputs 4x its inner width


class BasicBlock(nn.Module):
    """Two 3x3 convs; 1x1 projection shortcut when the stride or width changes. Output width = `features`."""

    features: int
    stride: int
    norm: NormSpec
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        y = make_norm(self.features, "norm1", relu=True)(
            padded_conv(self.layers, self.norm, self.features, 3, self.stride, "conv1")(x)
        )
        y = make_norm(self.features, "norm2")(padded_conv(self.layers, self.norm, self.features, 3, 1, "conv2")(y))
        return nn.relu(y + _shortcut(x, self.features, self.stride, self.norm, self.layers, make_norm))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand to 4 x `features`; projection shortcut when shapes change."""

    features: int
    stride: int
    norm: NormSpec
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        out = self.features * BOTTLENECK_EXPANSION
        y = make_norm(self.features, "norm1", relu=True)(
            padded_conv(self.layers, self.norm, self.features, 1, 1, "conv1")(x)
        )
        y = make_norm(self.features, "norm2", relu=True)(
            padded_conv(self.layers, self.norm, self.features, 3, self.stride, "conv2")(y)
        )
        y = make_norm(out, "norm3")(padded_conv(self.layers, self.norm, out, 1, 1, "conv3")(y))
        return nn.relu(y + _shortcut(x, out, self.stride, self.norm, self.layers, make_norm))


def _shortcut(x: jax.Array, out: int, stride: int, norm: NormSpec, layers: Layers, make_norm: Callable) -> jax.Array:
    """Identity when shapes match, else torchvision's downsample: 1x1 conv (strided) + norm."""
    if stride == 1 and x.shape[-1] == out:
        return x
    return make_norm(out, "shortcut_norm")(padded_conv(layers, norm, out, 1, stride, "shortcut_conv")(x))


class ResNet(nn.Module):
    """Stem, four stages of blocks (64, 128, 256, 512 base widths; stride 2 from the second), global average
    pool, dropout, Dense."""

    num_outputs: int
    block: type[nn.Module] = BasicBlock
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    norm: NormSpec = NormSpec()
    stem: str = "imagenet"
    dropout_rate: float = 0.0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        if self.stem == "imagenet":
            x = make_norm(64, "norm1", relu=True)(padded_conv(self.layers, self.norm, 64, 7, 2, "conv1")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = make_norm(64, "norm1", relu=True)(padded_conv(self.layers, self.norm, 64, 3, 1, "conv1")(x))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                block = self.block(64 * 2**stage, stride, self.norm, self.layers, name=f"layer{stage + 1}_{index}")
                x = block(x, train)
        x = x.mean(axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, name="fc")(x)


STAGES: dict[int, tuple[type[nn.Module], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def resnet_builder(depth: int) -> Callable[..., nn.Module]:
    """Builder for ResNet-`depth` reading `config.model.norm` (and its options), `stem` and `dropout_rate`."""
    block, stage_sizes = STAGES[depth]

    def build(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
        return ResNet(
            num_outputs=num_outputs,
            block=block,
            stage_sizes=stage_sizes,
            norm=norm_spec_from_config(model_config),
            stem=choose({s: s for s in STEMS}, "model.stem", model_config.stem),
            dropout_rate=float(model_config.dropout_rate),
            layers=layers,
        )

    return build
