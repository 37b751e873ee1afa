"""The layers a model builds from, handed in by whoever builds it: Flax's own by default.

Why a seam: the same architecture should run on Flax's layers everywhere, yet one kind of hardware may want its
own implementation of a conv or a norm (README, "Backends": `config.backend` picks it; models never do).
Following flax/examples/imagenet, where `ResNet.conv` is a field swapped by the builder, each model has a
`layers: Layers` field and calls `self.layers.conv(...)` where it would call `nn.Conv(...)`. A model written with
plain `nn.Conv` still works; it simply never gets another implementation.

A replacement must keep each layer's signature, variable names and initialisers, so that parameter trees and
checkpoints are the same whichever `Layers` built the model. `batch_norm_relu` is a BatchNorm followed by a ReLU,
kept as one layer (as timm's `BatchNormAct2d` is a subclass of the plain norm) so an implementation can compute
both in one pass; its variables are BatchNorm's.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

ModuleDef = Any  # a Flax module class, or a callable with its constructor's signature


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2/2 max pool of an NHWC batch (an odd last row or column is dropped, as VALID padding does); a side
    already below 2 is left as it is, so tiny inputs (8x8 digits through three pools) never shrink to 0."""
    if min(x.shape[1], x.shape[2]) < 2:
        return x
    return nn.max_pool(x, (2, 2), strides=(2, 2))


class BatchNormReLU(nn.BatchNorm):
    """`nn.BatchNorm` then a ReLU, as one layer with BatchNorm's variables (see the module docstring)."""

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, **kwargs: Any) -> jax.Array:
        return nn.relu(super().__call__(x, use_running_average, **kwargs))


@dataclasses.dataclass(frozen=True)
class Layers:
    """The conv, BatchNorm (plain and followed by a ReLU) and 2x2 max pool a model is built from.

    `conv` and the two norms are called with `nn.Conv`'s and `nn.BatchNorm`'s constructor arguments;
    `max_pool_2x2` is a function of the NHWC batch. Frozen and compared by value, so it can be a module field.
    """

    conv: ModuleDef = nn.Conv
    batch_norm: ModuleDef = nn.BatchNorm
    batch_norm_relu: ModuleDef = BatchNormReLU
    max_pool_2x2: Callable[[jax.Array], jax.Array] = max_pool_2x2


FLAX_LAYERS = Layers()
