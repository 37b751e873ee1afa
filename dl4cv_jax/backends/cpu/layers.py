"""The CPU backend's `Layers`: the same variables as Flax's, computed by oneDNN or by rewritten XLA:CPU passes."""

import functools

from dl4cv_jax.backends.cpu.batch_norm import BatchNorm, BatchNormReLU
from dl4cv_jax.backends.cpu.conv_layer import Conv
from dl4cv_jax.backends.cpu.pool import max_pool_2x2
from dl4cv_jax.models.layers import Layers


@functools.cache
def cpu_layers() -> Layers:
    """One `Layers` object per process, so models built twice compare equal (it is a static module field)."""
    return Layers(conv=Conv, batch_norm=BatchNorm, batch_norm_relu=BatchNormReLU, max_pool_2x2=max_pool_2x2)
