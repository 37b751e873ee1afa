"""DenseNet-BC 121/161/169/201 (Huang et al. 2017) as torchvision builds them.

Each dense layer is BN-ReLU-1x1 conv (to `bn_size` x growth rate) then BN-ReLU-3x3 conv (to the growth rate), and
its output is concatenated to everything before it in the block, in torchvision's channel order (oldest first).
Transitions are BN-ReLU-1x1 conv (halving the channels)-2x2/2 average pool; after the last block a final norm and
ReLU, a global average pool and the classifier. Module names mirror torchvision's (`conv0`, `norm0`,
`denseblock{i}/denselayer{j}/{norm1,conv1,norm2,conv2}`, `transition{i}/{norm,conv}`, `norm5`, `classifier`), so
its state_dict maps onto ours by name (pretrained/torch_layouts/densenet.py).

`dropout_rate` is torchvision's `drop_rate`, i.e. the paper's: dropout on each dense layer's new features before
they join the concatenation (the paper used 0.2 on its CIFAR runs without augmentation), not before the classifier.
`config.model.norm` replaces every BatchNorm; with norm='none' the convs get a bias.

`stem='cifar'` is for 32x32 inputs: the first conv is 3x3/1 (still `num_init_features` wide) and the stem's max
pool is dropped, so the four blocks run at 32, 16, 8 and 4 pixels instead of 8, 4, 2 and 1. Every other shape is
torchvision's, so ImageNet weights load into it except the stem conv. (The paper's own CIFAR DenseNets have three
blocks; this keeps torchvision's four, so one architecture serves both input sizes.)

Initialisers are torchvision's: He normal with fan_in for convs, norms at scale 1 and shift 0, the classifier's
weight PyTorch's default uniform(+-1/sqrt(fan_in)) and its bias 0.
"""

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.norm import NormSpec, norm_layer, norm_spec_from_config, padded_conv

STEMS = ("imagenet", "cifar")
BN_SIZE = 4  # the bottleneck's width is BN_SIZE x the growth rate

# torchvision's nn.init.kaiming_normal_ (fan_in, gain sqrt(2), untruncated) and nn.Linear's default weight init.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
linear_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
_conv = functools.partial(padded_conv, kernel_init=conv_kernel_init)

# depth -> (growth rate, layers per block, channels of the stem conv), as torchvision's densenet121..201.
CONFIGS: dict[int, tuple[int, tuple[int, int, int, int], int]] = {
    121: (32, (6, 12, 24, 16), 64),
    161: (48, (6, 12, 36, 24), 96),
    169: (32, (6, 12, 32, 32), 64),
    201: (32, (6, 12, 48, 32), 64),
}


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv-BN-ReLU-3x3 conv; returns only the `growth_rate` new channels (the block concatenates)."""

    growth_rate: int
    norm: NormSpec
    dropout_rate: float = 0.0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        width = BN_SIZE * self.growth_rate
        y = _conv(self.layers, self.norm, width, 1, 1, "conv1")(make_norm(x.shape[-1], "norm1", relu=True)(x))
        y = _conv(self.layers, self.norm, self.growth_rate, 3, 1, "conv2")(make_norm(width, "norm2", relu=True)(y))
        return nn.Dropout(self.dropout_rate, deterministic=not train)(y)


class DenseBlock(nn.Module):
    """`num_layers` dense layers, each reading the concatenation of the block's input and all earlier outputs."""

    num_layers: int
    growth_rate: int
    norm: NormSpec
    dropout_rate: float = 0.0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        features = [x]
        for index in range(self.num_layers):
            layer = DenseLayer(
                self.growth_rate, self.norm, self.dropout_rate, self.layers, name=f"denselayer{index + 1}"
            )
            features.append(layer(jnp.concatenate(features, axis=-1), train))
        return jnp.concatenate(features, axis=-1)


def avg_pool_2x2(x: jax.Array) -> jax.Array:
    """torch's AvgPool2d(2, 2) (an odd last row or column dropped); a side already below 2 is left as it is, as
    `layers.max_pool_2x2` does, so inputs under torchvision's minimum (29 pixels) give logits, not NaN from an empty
    map. torchvision refuses those inputs, so this never changes a comparison with it."""
    if min(x.shape[1], x.shape[2]) < 2:
        return x
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class Transition(nn.Module):
    """BN-ReLU-1x1 conv to `features` channels, then a 2x2/2 average pool (`avg_pool_2x2`)."""

    features: int
    norm: NormSpec
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        x = _conv(self.layers, self.norm, self.features, 1, 1, "conv")(make_norm(x.shape[-1], "norm", relu=True)(x))
        return avg_pool_2x2(x)


class DenseNet(nn.Module):
    """Stem, dense blocks with transitions between them (each halving channels and resolution), final norm + ReLU,
    global average pool, classifier."""

    num_outputs: int
    growth_rate: int = 32
    block_config: Sequence[int] = (6, 12, 24, 16)
    num_init_features: int = 64
    norm: NormSpec = NormSpec()
    stem: str = "imagenet"
    dropout_rate: float = 0.0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        if self.stem == "imagenet":
            x = _conv(self.layers, self.norm, self.num_init_features, 7, 2, "conv0")(x)
            x = make_norm(self.num_init_features, "norm0", relu=True)(x)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = _conv(self.layers, self.norm, self.num_init_features, 3, 1, "conv0")(x)
            x = make_norm(self.num_init_features, "norm0", relu=True)(x)
        channels = self.num_init_features
        for index, num_layers in enumerate(self.block_config):
            block = DenseBlock(
                num_layers, self.growth_rate, self.norm, self.dropout_rate, self.layers, name=f"denseblock{index + 1}"
            )
            x = block(x, train)
            channels += num_layers * self.growth_rate
            if index != len(self.block_config) - 1:
                channels //= 2
                x = Transition(channels, self.norm, self.layers, name=f"transition{index + 1}")(x, train)
        x = make_norm(channels, "norm5", relu=True)(x)
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_outputs, kernel_init=linear_kernel_init, name="classifier")(x)


def densenet_builder(depth: int) -> Callable[..., nn.Module]:
    """Builder for DenseNet-`depth` reading `config.model.norm` (and its options), `stem` and `dropout_rate`."""
    growth_rate, block_config, num_init_features = CONFIGS[depth]

    def build(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
        return DenseNet(
            num_outputs=num_outputs,
            growth_rate=growth_rate,
            block_config=block_config,
            num_init_features=num_init_features,
            norm=norm_spec_from_config(model_config),
            stem=choose({s: s for s in STEMS}, "model.stem", model_config.stem),
            dropout_rate=float(model_config.dropout_rate),
            layers=layers,
        )

    return build


BUILDERS: dict[str, Callable[..., nn.Module]] = {f"densenet{depth}": densenet_builder(depth) for depth in CONFIGS}
