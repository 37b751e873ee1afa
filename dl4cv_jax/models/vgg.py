"""VGG (Simonyan & Zisserman 2015) in torchvision's layout: configurations A, B, D, E = VGG-11/13/16/19.

Convs keep their bias even when a norm follows, as torchvision's vgg*_bn do, so parameter counts match theirs.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.norm import NormSpec, conv_kernel_init, norm_layer, norm_spec_from_config

POOL = "M"
LAYOUTS: dict[int, tuple[int | str, ...]] = {
    11: (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    13: (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    16: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    19: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL) + (512, 512, 512, 512, POOL) * 2,
}
HEADS = ("imagenet", "cifar")


def adaptive_avg_pool_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
    """Averages `axis` into `size` bins with PyTorch's bounds [floor(i*n/size), ceil((i+1)*n/size)).

    Bins overlap or repeat when n < size (a 1x1 map becomes 7 copies), exactly as torch does.
    """
    n = x.shape[axis]
    if n == size:
        return x
    if n % size == 0:
        shape = x.shape[:axis] + (size, n // size) + x.shape[axis + 1 :]
        return x.reshape(shape).mean(axis=axis + 1)
    bins = []
    for i in range(size):
        start, end = (i * n) // size, -(-(i + 1) * n // size)
        bins.append(jax.lax.slice_in_dim(x, start, end, axis=axis).mean(axis=axis, keepdims=True))
    return jnp.concatenate(bins, axis=axis)


def adaptive_avg_pool(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """torch.nn.AdaptiveAvgPool2d for NHWC; separable: a box mean is a mean of column means."""
    return adaptive_avg_pool_axis(adaptive_avg_pool_axis(x, 1, size[0]), 2, size[1])


class VGG(nn.Module):
    """3x3 conv stacks with max pools; `head='imagenet'` is torchvision's 7x7 pool + 4096-4096 classifier,
    `head='cifar'` a global average pool + dropout + one Dense."""

    num_outputs: int
    layout: Sequence[int | str] = LAYOUTS[16]
    norm: NormSpec = NormSpec(name="none")
    head: str = "imagenet"
    dropout_rate: float = 0.5
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        make_norm = norm_layer(self.norm, train, self.layers)
        conv_index = 0
        for item in self.layout:
            if item == POOL:
                x = self.layers.max_pool_2x2(x)
                continue
            conv_index += 1
            x = self.layers.conv(
                item, (3, 3), padding=((1, 1), (1, 1)), kernel_init=conv_kernel_init, name=f"conv{conv_index}"
            )(x)
            x = make_norm(item, f"norm{conv_index}", relu=True)(x)
        if self.head == "cifar":
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x.mean(axis=(1, 2)))
            return nn.Dense(self.num_outputs, name="fc")(x)
        x = adaptive_avg_pool(x, (7, 7)).reshape((x.shape[0], -1))
        for index in (1, 2):
            x = nn.relu(nn.Dense(4096, name=f"fc{index}")(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, name="fc3")(x)


def vgg_builder(depth: int, batch_norm: bool) -> Callable[..., nn.Module]:
    """Builder for VGG-`depth`; without `batch_norm` the net has no norm whatever `config.model.norm` says.

    `config.model.stem` picks the head (imagenet or cifar); `dropout_rate` sets the classifier's dropout
    (torchvision uses 0.5; the default config's 0.0 turns it off).
    """

    def build(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
        norm = norm_spec_from_config(model_config) if batch_norm else NormSpec(name="none")
        head = choose({h: h for h in HEADS}, "model.stem", model_config.stem)
        return VGG(
            num_outputs=num_outputs,
            layout=LAYOUTS[depth],
            norm=norm,
            head=head,
            dropout_rate=float(model_config.dropout_rate),
            layers=layers,
        )

    return build
