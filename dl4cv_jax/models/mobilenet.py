"""MobileNetV2 (Sandler et al. 2018) and MobileNetV3-Small/Large (Howard et al. 2019) as torchvision builds them,
at width multiplier 1.

Both are a stem conv, a stack of inverted residuals and a 1x1 conv before the global pool. An inverted residual
is a 1x1 expansion (left out when it would not widen), a depthwise conv (`feature_group_count` = channels),
in V3 a squeeze-excitation, and a linear 1x1 projection; it adds its input when stride and width allow. V2 uses
ReLU6 throughout and classifies with dropout + Linear; V3 uses ReLU or hardswish per block, squeeze-excitation
with torchvision's hardsigmoid gate and `_make_divisible(expanded // 4, 8)` squeeze width, and a head of Linear,
hardswish, dropout, Linear. Blocks are named `block{i}` after torchvision's `features.{i}`
(pretrained/torch_layouts/mobilenet.py maps the rest).

Choices where torchvision and this library's config differ:
- Dropout: `config.model.dropout_rate` is the classifier dropout, where torchvision puts its `dropout`. torchvision
  defaults to 0.2 and the config to 0.0: set 0.2 to train with torchvision's recipe.
- V3's BatchNorm: torchvision uses epsilon 1e-3 and momentum 0.01, i.e. Flax's 0.99. The epsilon is always 1e-3
  (it is part of the function the weights were trained for, whatever norm is chosen). The momentum is 0.99 while
  `config.model.bn_momentum` is at the library default (0.9); any other value there is used as given (0.9 itself
  then cannot be asked for: 0.90001 does the same). V2 uses the config's momentum and epsilon 1e-5, as
  torchvision's defaults.
- `config.model.norm` replaces every BatchNorm; with norm='none' the convs get a bias.
- `stem='cifar'` gives the stem conv stride 1, so 32x32 inputs reach the last blocks at 2x2 instead of 1x1; every
  parameter shape stays torchvision's, so ImageNet weights load into either stem.

The depthwise convs are Flax's `nn.Conv`, not `layers.conv`: a backend's conv (models/layers.py) need not take
`feature_group_count`, and the CPU backend would hand grouped convs to XLA anyway. Initialisers are torchvision's:
He normal with fan_out for convs (squeeze-excitation's 1x1 convs, here Dense layers, included), norms at scale 1
and shift 0, Linear weights normal(0, 0.01), biases 0.
"""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.norm import (
    NormFactory,
    NormSpec,
    conv_bias,
    conv_kernel_init,
    norm_layer,
    norm_spec_from_config,
    padded_conv,
)

STEMS = ("imagenet", "cifar")
V3_EPSILON = 1e-3  # torchvision's BatchNorm2d(eps=0.001, momentum=0.01) in MobileNetV3
V3_MOMENTUM = 0.99
LIBRARY_MOMENTUM = NormSpec().momentum  # config.model.bn_momentum's default, read as "the family's own"
linear_kernel_init = nn.initializers.normal(0.01)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "relu6": jax.nn.relu6,
    "hardswish": jax.nn.hard_swish,  # x * relu6(x + 3) / 6, as torch's Hardswish
}


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's `_make_divisible`: `value` rounded to a multiple of `divisor`, never more than 10% below."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """One inverted residual, as torchvision's InvertedResidualConfig (stride 1 or 2, no dilation)."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    activation: str  # a key of ACTIVATIONS
    stride: int


def v2_blocks() -> tuple[BlockConfig, ...]:
    """torchvision's inverted_residual_setting (t, c, n, s): n blocks of expansion t to width c, the first strided."""
    setting = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )
    blocks, channels = [], 32
    for expansion, width, count, stride in setting:
        for index in range(count):
            block = BlockConfig(channels, 3, channels * expansion, width, False, "relu6", stride if index == 0 else 1)
            blocks.append(block)
            channels = width
    return tuple(blocks)


def _v3(rows: tuple[tuple, ...]) -> tuple[BlockConfig, ...]:
    activation = {"RE": "relu", "HS": "hardswish"}
    return tuple(BlockConfig(i, k, e, o, se, activation[a], s) for i, k, e, o, se, a, s in rows)


# torchvision's _mobilenet_v3_conf: (in, kernel, expanded, out, squeeze-excitation, activation, stride).
V3_LARGE = _v3(
    (
        (16, 3, 16, 16, False, "RE", 1),
        (16, 3, 64, 24, False, "RE", 2),
        (24, 3, 72, 24, False, "RE", 1),
        (24, 5, 72, 40, True, "RE", 2),
        (40, 5, 120, 40, True, "RE", 1),
        (40, 5, 120, 40, True, "RE", 1),
        (40, 3, 240, 80, False, "HS", 2),
        (80, 3, 200, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 480, 112, True, "HS", 1),
        (112, 3, 672, 112, True, "HS", 1),
        (112, 5, 672, 160, True, "HS", 2),
        (160, 5, 960, 160, True, "HS", 1),
        (160, 5, 960, 160, True, "HS", 1),
    )
)
V3_SMALL = _v3(
    (
        (16, 3, 16, 16, True, "RE", 2),
        (16, 3, 72, 24, False, "RE", 2),
        (24, 3, 88, 24, False, "RE", 1),
        (24, 5, 96, 40, True, "HS", 2),
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 120, 48, True, "HS", 1),
        (48, 5, 144, 48, True, "HS", 1),
        (48, 5, 288, 96, True, "HS", 2),
        (96, 5, 576, 96, True, "HS", 1),
        (96, 5, 576, 96, True, "HS", 1),
    )
)


def _norm_act(make_norm: NormFactory, channels: int, name: str, activation: str | None) -> Callable:
    """The norm after a conv, then its activation (ReLU fused into the norm layer, see models/norm.py)."""
    if activation == "relu":
        return make_norm(channels, name, relu=True)
    norm = make_norm(channels, name)
    return norm if activation is None else lambda x: ACTIVATIONS[activation](norm(x))


class SqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation with a hardsigmoid gate: global mean, fc1, ReLU, fc2, hardsigmoid, scale.

    Its 1x1 convs act on a 1x1 map, so they are Dense layers here (the weight file's are reshaped on import)."""

    squeeze_channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = x.mean(axis=(1, 2), keepdims=True)
        scale = nn.relu(nn.Dense(self.squeeze_channels, kernel_init=conv_kernel_init, name="fc1")(scale))
        scale = nn.Dense(x.shape[-1], kernel_init=conv_kernel_init, name="fc2")(scale)
        return x * jax.nn.hard_sigmoid(scale)  # relu6(x + 3) / 6, as torch's Hardsigmoid


class InvertedResidual(nn.Module):
    """[1x1 expand] -> depthwise kxk (strided) -> [squeeze-excitation] -> linear 1x1 project [+ input]."""

    config: BlockConfig
    norm: NormSpec
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        block, make_norm = self.config, norm_layer(self.norm, train, self.layers)
        y = x
        if block.expanded != block.in_channels:
            y = padded_conv(self.layers, self.norm, block.expanded, 1, 1, "expand_conv")(y)
            y = _norm_act(make_norm, block.expanded, "expand_norm", block.activation)(y)
        pad = (block.kernel - 1) // 2
        y = nn.Conv(
            block.expanded,
            (block.kernel, block.kernel),
            (block.stride, block.stride),
            ((pad, pad), (pad, pad)),
            feature_group_count=block.expanded,
            use_bias=conv_bias(self.norm),
            kernel_init=conv_kernel_init,
            name="depthwise_conv",
        )(y)
        y = _norm_act(make_norm, block.expanded, "depthwise_norm", block.activation)(y)
        if block.use_se:
            y = SqueezeExcitation(make_divisible(block.expanded // 4), name="se")(y)
        y = padded_conv(self.layers, self.norm, block.out_channels, 1, 1, "project_conv")(y)
        y = make_norm(block.out_channels, "project_norm")(y)
        residual = block.stride == 1 and block.in_channels == block.out_channels
        return x + y if residual else y


class MobileNet(nn.Module):
    """Stem conv (3x3/2), inverted residuals, 1x1 conv to `last_channels`, global average pool, then V3's hidden
    Linear + hardswish (when `hidden_channels`), dropout and the classifier."""

    num_outputs: int
    blocks: tuple[BlockConfig, ...]
    activation: str  # of the stem and the last conv
    last_channels: int
    hidden_channels: int = 0  # V3's penultimate Linear; 0: none (V2)
    norm: NormSpec = NormSpec()
    stem: str = "imagenet"
    dropout_rate: float = 0.0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        stem_width = self.blocks[0].in_channels
        stride = 2 if self.stem == "imagenet" else 1
        x = padded_conv(self.layers, self.norm, stem_width, 3, stride, "stem_conv")(x)
        x = _norm_act(make_norm, stem_width, "stem_norm", self.activation)(x)
        for index, block in enumerate(self.blocks):
            x = InvertedResidual(block, self.norm, self.layers, name=f"block{index + 1}")(x, train)
        x = padded_conv(self.layers, self.norm, self.last_channels, 1, 1, "last_conv")(x)
        x = _norm_act(make_norm, self.last_channels, "last_norm", self.activation)(x)
        x = x.mean(axis=(1, 2))
        if self.hidden_channels:
            x = jax.nn.hard_swish(nn.Dense(self.hidden_channels, kernel_init=linear_kernel_init, name="hidden")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, kernel_init=linear_kernel_init, name="classifier")(x)


# name -> (blocks, activation of stem and last conv, last conv's width, hidden Linear's width).
ARCHITECTURES: dict[str, tuple[tuple[BlockConfig, ...], str, int, int]] = {
    "mobilenet_v2": (v2_blocks(), "relu6", 1280, 0),
    "mobilenet_v3_small": (V3_SMALL, "hardswish", 6 * V3_SMALL[-1].out_channels, 1024),
    "mobilenet_v3_large": (V3_LARGE, "hardswish", 6 * V3_LARGE[-1].out_channels, 1280),
}


def v3_norm(spec: NormSpec) -> NormSpec:
    """torchvision's MobileNetV3 BatchNorm (see the module docstring): epsilon 1e-3; momentum 0.99 unless the config
    asks for another than the library default."""
    momentum = V3_MOMENTUM if spec.momentum == LIBRARY_MOMENTUM else spec.momentum
    return dataclasses.replace(spec, epsilon=V3_EPSILON, momentum=momentum)


def mobilenet_builder(name: str) -> Callable[..., nn.Module]:
    """Builder for `name` reading `config.model.norm` (and its options), `stem` and `dropout_rate`."""
    blocks, activation, last_channels, hidden_channels = ARCHITECTURES[name]

    def build(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
        norm = norm_spec_from_config(model_config)
        return MobileNet(
            num_outputs=num_outputs,
            blocks=blocks,
            activation=activation,
            last_channels=last_channels,
            hidden_channels=hidden_channels,
            norm=v3_norm(norm) if name.startswith("mobilenet_v3") else norm,
            stem=choose({s: s for s in STEMS}, "model.stem", model_config.stem),
            dropout_rate=float(model_config.dropout_rate),
            layers=layers,
        )

    return build


BUILDERS: dict[str, Callable[..., nn.Module]] = {name: mobilenet_builder(name) for name in ARCHITECTURES}
