"""LeNet-5 (LeCun et al. 1998) in its common modern form: ReLU and max pooling instead of tanh and
subsampling, 61,706 parameters on 28x28x1 with 10 classes."""

import flax.linen as nn
import jax
import ml_collections

from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.norm import conv_kernel_init

# The second conv is VALID (as in the paper: 14x14 -> 10x10) when its input allows a 5x5 window; on smaller
# maps (inputs under 10x10, e.g. 8x8 digits) it switches to SAME so the model still builds. The layer
# shapes, hence the parameter count of the conv layers, are the same either way; only fc1's input grows.
KERNEL = 5


class LeNet5(nn.Module):
    """conv 6@5x5 SAME - relu - pool - conv 16@5x5 VALID - relu - pool - 120 - 84 - dropout - out."""

    num_outputs: int
    dropout_rate: float = 0.0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv, pool = self.layers.conv, self.layers.max_pool_2x2
        x = nn.relu(conv(6, (KERNEL, KERNEL), padding="SAME", kernel_init=conv_kernel_init, name="conv1")(x))
        x = pool(x)
        padding = "VALID" if min(x.shape[1], x.shape[2]) >= KERNEL else "SAME"
        x = nn.relu(conv(16, (KERNEL, KERNEL), padding=padding, kernel_init=conv_kernel_init, name="conv2")(x))
        x = pool(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(120, name="fc1")(x))
        x = nn.relu(nn.Dense(84, name="fc2")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, name="fc3")(x)


def build_lenet(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
    """LeNet-5 with `config.model.dropout_rate` before the last layer; ignores `norm` (classic, no norm)."""
    return LeNet5(num_outputs=num_outputs, dropout_rate=float(model_config.dropout_rate), layers=layers)
