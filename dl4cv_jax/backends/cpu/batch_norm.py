"""The CPU backend's BatchNorm (`Layers.batch_norm`, and `Layers.batch_norm_relu` with its ReLU in the same pass):
Flax's `nn.BatchNorm`, computed in training by oneDNN where it can be (`onednn_batch_norm.py`).

Why: on XLA:CPU a bfloat16 BatchNorm cost as much as a float32 one, and both more than oneDNN's (ResNet-20 has
19; see `onednn_batch_norm.py` and benchmarks/RESULTS.md). Evaluation (running averages), other backends, several
devices and other dtypes run Flax's own layer.

The variables are `nn.BatchNorm`'s, under the layer's own name and created in the same order from the same
initialisers: 'mean' and 'var' in 'batch_stats', 'scale' and 'bias' in 'params', all float32. Checkpoints move
between the two paths, and the running averages are updated by the same rule (`momentum` * old + (1 -
`momentum`) * batch value, the variance the biased one).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl4cv_jax.backends.cpu import onednn_batch_norm


class BatchNorm(nn.Module):
    """`nn.BatchNorm(use_running_average, momentum=momentum, epsilon=epsilon)` over the last axis, followed by
    a ReLU where `relu` (on oneDNN in the same pass: one read and one write of the activations fewer each way)."""

    use_running_average: bool
    momentum: float = 0.99
    epsilon: float = 1e-5
    relu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.use_running_average or not onednn_batch_norm.applies(x):
            flax_norm = nn.BatchNorm(self.use_running_average, momentum=self.momentum, epsilon=self.epsilon)
            nn.share_scope(self, flax_norm)
            return nn.relu(flax_norm(x)) if self.relu else flax_norm(x)
        features = (x.shape[-1],)
        running_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), features)
        running_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
        scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
        y, mean, variance = onednn_batch_norm.batch_norm(x, scale, bias, self.epsilon, self.relu)
        if not self.is_initializing():
            running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
            running_var.value = self.momentum * running_var.value + (1 - self.momentum) * variance
        return y.astype(jnp.result_type(x, scale, bias))  # Flax's output type: bfloat16 params keep bfloat16


class BatchNormReLU(BatchNorm):
    """`BatchNorm` followed by a ReLU, computed in one pass on oneDNN (`Layers.batch_norm_relu`)."""

    relu: bool = True
