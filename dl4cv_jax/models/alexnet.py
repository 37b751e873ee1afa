"""AlexNet (Krizhevsky 2014, "One weird trick": 64-192-384-256-256 filters) in torchvision's layout.

torchvision's AlexNet has no normalisation layer (the paper's local response norm is gone), so `config.model.norm`
is ignored, as for plain VGG: every conv has a bias and is followed by a ReLU only. Initialisation is PyTorch's
default for the weights of convs and Linears (uniform with variance 1/(3 fan_in)), the one torchvision's recipe
trained with; biases start at 0, Flax's default (PyTorch draws them from the same uniform range as the weights).

`stem='imagenet'` is torchvision's net: 11x11/4 conv, three 3x3/2 max pools (floor mode), a 6x6 adaptive average
pool and the 4096-4096 classifier with dropout before its first two Linears; it needs inputs of 63x63 or more.
`stem='cifar'` is for 32x32 inputs, where the 11x11/4 conv would leave a 7x7 map and the last pool nothing: the
first conv is 3x3/1 (same 64 filters, padding 1), the pools are unchanged (32 -> 15 -> 7 -> 3), and the head is a
global average pool, dropout and one Dense, as VGG's CIFAR head (the 9216-4096-4096 classifier would hold 58 M of
the net's parameters to read a 3x3 map).
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.vgg import adaptive_avg_pool

STEMS = ("imagenet", "cifar")
# (filters, kernel, stride, padding, max pool after it) per conv, as torchvision's `features`.
FEATURES: tuple[tuple[int, int, int, int, bool], ...] = (
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, True),
)
CIFAR_CONV1 = (64, 3, 1, 1, True)
POOLED_SIZE = (6, 6)  # torchvision's AdaptiveAvgPool2d before the classifier
HIDDEN = 4096

# PyTorch's default for Conv2d and Linear weights: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class AlexNet(nn.Module):
    """Five convs with ReLU and three 3x3/2 max pools, then torchvision's classifier (`head`, see the module
    docstring for the CIFAR variant). `dropout_rate` is torchvision's `dropout` (0.5 there)."""

    num_outputs: int
    stem: str = "imagenet"
    dropout_rate: float = 0.5
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        features = ((CIFAR_CONV1,) + FEATURES[1:]) if self.stem == "cifar" else FEATURES
        for index, (filters, kernel, stride, pad, pool) in enumerate(features, start=1):
            x = self.layers.conv(
                filters,
                (kernel, kernel),
                (stride, stride),
                padding=((pad, pad), (pad, pad)),
                kernel_init=torch_default_kernel_init,
                name=f"conv{index}",
            )(x)
            x = nn.relu(x)
            if pool:
                x = nn.max_pool(x, (3, 3), strides=(2, 2))
        if self.stem == "cifar":
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x.mean(axis=(1, 2)))
            return nn.Dense(self.num_outputs, kernel_init=torch_default_kernel_init, name="fc")(x)
        # NHWC flatten; the weight import reorders fc1's rows from torch's NCHW flatten (torch_layouts/alexnet.py).
        x = adaptive_avg_pool(x, POOLED_SIZE).reshape((x.shape[0], -1))
        for index in (1, 2):
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            x = nn.relu(nn.Dense(HIDDEN, kernel_init=torch_default_kernel_init, name=f"fc{index}")(x))
        return nn.Dense(self.num_outputs, kernel_init=torch_default_kernel_init, name="fc3")(x)


def build_alexnet(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
    """AlexNet reading `config.model.stem` and `dropout_rate`; `config.model.norm` is ignored (no norm layers)."""
    return AlexNet(
        num_outputs=num_outputs,
        stem=choose({s: s for s in STEMS}, "model.stem", model_config.stem),
        dropout_rate=float(model_config.dropout_rate),
        layers=layers,
    )


BUILDERS: dict[str, Callable[..., nn.Module]] = {"alexnet": build_alexnet}
