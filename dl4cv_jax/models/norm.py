"""Normalisation layers selectable by `config.model.norm`, and the conv initialiser the families share.

Models ask `norm_layer(spec, train, layers)` for a factory and call `factory(channels, name)` after each conv, so
one config value swaps BatchNorm for GroupNorm (small or per-device batches), instance or layer norm, or nothing.
`factory(channels, name, relu=True)` is the norm followed by a ReLU: for BatchNorm, the one layer
`layers.batch_norm_relu`, so that an implementation handed in by the builder may compute both in one pass.
"""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections

from dl4cv_jax.choices import choose, require
from dl4cv_jax.models.layers import FLAX_LAYERS, Layers

# PyTorch's epsilon for every norm, so results and published recipes carry over (Flax defaults to 1e-6).
EPSILON = 1e-5

# He et al. 2015 init with fan_out, as torchvision's ResNet and VGG use for their convs.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

# A factory builds the norm that follows a conv with `channels` outputs; `name` names it in the param tree;
# `relu=True` appends a ReLU (BatchNorm's is `Layers.batch_norm_relu`, one layer).
NormFactory = Callable[..., Callable[[jax.Array], jax.Array]]


@dataclasses.dataclass(frozen=True)
class NormSpec:
    """What `config.model` says about normalisation; frozen so it can be a field of a Flax module."""

    name: str = "batch"
    groups: int = 32
    momentum: float = 0.9
    epsilon: float = EPSILON  # a family may use its paper's (torchvision's MobileNetV3: 1e-3)


def norm_spec_from_config(model_config: ml_collections.ConfigDict) -> NormSpec:
    """Reads and validates the norm fields of `config.model`, so a typo fails at build time, not at init."""
    spec = NormSpec(
        name=model_config.norm,
        groups=int(model_config.group_norm_groups),
        momentum=float(model_config.bn_momentum),
    )
    choose(NORMS, "model.norm", spec.name)
    require(spec.groups >= 1, "model.group_norm_groups", spec.groups, "must be >= 1")
    require(0.0 <= spec.momentum < 1.0, "model.bn_momentum", spec.momentum, "must be in [0, 1)")
    return spec


def largest_divisor_at_most(channels: int, limit: int) -> int:
    """The largest divisor of `channels` that is <= `limit`: GroupNorm needs groups dividing the channels."""
    return max(d for d in range(1, min(channels, limit) + 1) if channels % d == 0)


def _batch(spec: NormSpec, train: bool, channels: int, name: str, layers: Layers, relu: bool = False) -> nn.Module:
    # Running statistics live in the 'batch_stats' collection; callers apply with mutable=['batch_stats'].
    layer = layers.batch_norm_relu if relu else layers.batch_norm
    return layer(use_running_average=not train, momentum=spec.momentum, epsilon=spec.epsilon, name=name)


def _group(spec: NormSpec, train: bool, channels: int, name: str) -> nn.Module:
    groups = largest_divisor_at_most(channels, spec.groups)
    return nn.GroupNorm(num_groups=groups, epsilon=spec.epsilon, name=name)


def _instance(spec: NormSpec, train: bool, channels: int, name: str) -> nn.Module:
    return nn.InstanceNorm(epsilon=spec.epsilon, name=name)


def _layer(spec: NormSpec, train: bool, channels: int, name: str) -> nn.Module:
    # Over H, W and C of each example with a per-channel scale and bias (GroupNorm with one group, as in
    # Wu & He 2018), not nn.LayerNorm's channels-only default, which would be a per-pixel norm.
    return nn.GroupNorm(num_groups=1, epsilon=spec.epsilon, name=name)


def _none(spec: NormSpec, train: bool, channels: int, name: str) -> Callable[[jax.Array], jax.Array]:
    return lambda x: x


NORMS: dict[str, Callable[..., Callable[[jax.Array], jax.Array]]] = {
    "batch": _batch,
    "group": _group,
    "instance": _instance,
    "layer": _layer,
    "none": _none,
}


def norm_layer(spec: NormSpec, train: bool, layers: Layers = FLAX_LAYERS) -> NormFactory:
    """Maps `spec.name` to a factory `(channels, name, relu=False) -> layer`; unknown names raise ConfigError.

    BatchNorm comes from `layers` (the builder's choice, see `models/layers.py`), the other norms from Flax.
    Call it inside a `@nn.compact` method: the layers it builds attach to the module being defined.
    """
    build = choose(NORMS, "model.norm", spec.name)
    if build is _batch:
        return lambda channels, name, relu=False: _batch(spec, train, channels, name, layers, relu)

    def factory(channels: int, name: str, relu: bool = False) -> Callable[[jax.Array], jax.Array]:
        layer = build(spec, train, channels, name)
        return (lambda x: nn.relu(layer(x))) if relu else layer

    return factory


def padded_conv(
    layers: Layers,
    norm: NormSpec,
    features: int,
    kernel: int,
    stride: int,
    name: str,
    kernel_init: Callable = conv_kernel_init,
) -> nn.Module:
    """The square conv the families share: padded like PyTorch ((kernel - 1) // 2 on every side of an odd kernel,
    so stride-2 outputs match torchvision's), biased only where no norm follows (`conv_bias`)."""
    pad = (kernel - 1) // 2
    return layers.conv(
        features,
        (kernel, kernel),
        (stride, stride),
        ((pad, pad), (pad, pad)),
        use_bias=conv_bias(norm),
        kernel_init=kernel_init,
        name=name,
    )


def conv_bias(spec: NormSpec) -> bool:
    """Whether a conv followed by this norm needs a bias: only without a norm, whose shift would cancel it."""
    return spec.name == "none"
