"""The CPU backend's conv layer (`Layers.conv`): Flax's `nn.Conv` on this package's convolution
(`conv.conv_general_dilated`), with its bias added by `add_bias`, whose gradient is summed in float32.

Why: the gradient of a bias is the sum of the output gradient over batch, height and width. Flax adds the bias
in the layer's dtype, so under `precision=bfloat16` that sum is a bfloat16 reduction, which XLA:CPU 0.10 runs as
a chunked `reduce-window` loop, several times slower than the same sum of the gradient converted to float32, which
XLA hands to its fast reduction kernels; on a layer as small as LeNet's conv1 (128x28x28x6) that loop was a visible
part of the bfloat16 train step (benchmarks/RESULTS.md, "bfloat16 on XLA:CPU"). The float32 gradient is
rounded to the bias dtype afterwards, so the result is at least as accurate as Flax's; in float32 nothing changes.

The parameters are `nn.Conv`'s, under the layer's own name: the inner `nn.Conv` shares this module's scope, so
'kernel' and 'bias' sit where they always did, created in the same order from the same initialisers (checkpoints
and initial values are unchanged; tested).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl4cv_jax.backends.cpu.conv import conv_general_dilated

Padding = str | Sequence[tuple[int, int]]


@jax.custom_vjp
def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
    """`y + bias` over the last axis, in `y`'s dtype; its bias gradient is summed in float32 (see the module)."""
    return y + bias.astype(y.dtype)


def _add_bias_fwd(y: jax.Array, bias: jax.Array) -> tuple[jax.Array, jax.Array]:
    return add_bias(y, bias), bias


def _add_bias_bwd(bias: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    summed = jnp.sum(g.astype(jnp.float32), axis=tuple(range(g.ndim - 1)))
    return g, summed.astype(bias.dtype)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


class Conv(nn.Module):
    """A 2-D conv layer with `nn.Conv`'s parameters and values (`features`, `kernel_size`, `strides`, `padding`,
    `use_bias`, `kernel_init` as there; the bias zero-initialised), computed by this package's convolution."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Padding = "SAME"
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = nn.Conv(
            self.features,
            self.kernel_size,
            self.strides,
            self.padding,
            use_bias=False,
            kernel_init=self.kernel_init,
            conv_general_dilated=conv_general_dilated,
        )
        nn.share_scope(self, conv)
        y = conv(x)
        if not self.use_bias:
            return y
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return add_bias(y, bias)
