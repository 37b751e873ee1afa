"""GoogLeNet (Inception v1, Szegedy et al. 2015) as torchvision builds it.

Faithful to torchvision, including what differs from the paper: every conv is a BasicConv2d (conv without bias,
BatchNorm with epsilon 1e-3, ReLU), the "5x5" branch uses a 3x3 conv (torchvision issue #906, kept so its
weights load), and the max pools round their output size up (`ceil_mode=True`). `config.model.norm` picks the
norm of every BasicConv2d (epsilon 1e-3 whichever it is; with `none` the convs get a bias instead).

`transform_input` (default False) is torchvision's: it turns images normalised with the ImageNet mean and std into
images scaled to [-1, 1] per channel, the input torchvision's IMAGENET1K_V1 weights (ported from the paper) expect;
torchvision switches it on when it loads those weights. Feeding such images directly, i.e. mean = std = 0.5, is
the same thing.

The auxiliary classifiers (`aux_logits`, default off) exist only to add a loss in training, as in torchvision: in
eval mode they are never computed, and the model returns the main logits in both modes. In training they are
computed and sown into the `intermediates` collection as `aux_logits` = (aux1's, aux2's): a train step that wants
the paper's auxiliary losses applies with `mutable=[..., 'intermediates']` and reads them there. Our train step
does not ask (train/steps.py makes only `batch_stats` mutable), so with it the heads get no gradient and only cost
time. Their parameters are created at init in either mode, so a file with aux1/aux2 loads the same way whether
init ran in train mode or not; with the heads off, torchvision's aux1/aux2 keys are ignored on import
(torch_layouts/googlenet.py).

`stem='cifar'` is for 32x32 inputs (torchvision's net shrinks them to 2x2 before the last stage): the first conv
is 3x3/1 and the two stem max pools are dropped, so the Inception stages run at 32, 16 and 8 pixels (the layout of
the widely used CIFAR GoogLeNets, e.g. kuangliu/pytorch-cifar); everything else, and so every other parameter
shape, is torchvision's.
"""

import dataclasses
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.models.layers import FLAX_LAYERS, Layers
from dl4cv_jax.models.norm import NormSpec, conv_bias, norm_layer, norm_spec_from_config
from dl4cv_jax.models.vgg import adaptive_avg_pool

STEMS = ("imagenet", "cifar")
BATCH_NORM_EPSILON = 1e-3  # torchvision's BasicConv2d
# Inception blocks by torchvision's name: (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection).
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
AUX_POOLED_SIZE = (4, 4)  # InceptionAux's adaptive average pool
AUX_WIDTHS = (128, 1024)  # its 1x1 conv and first Linear

# torchvision's init: trunc_normal(std=0.01, a=-2, b=2) for conv and Linear weights; its bounds are absolute
# (200 std), so it is a plain normal. Biases start at 0 (PyTorch draws a Linear's uniformly).
kernel_init = nn.initializers.normal(0.01)


def max_pool_ceil(x: jax.Array, window: int, stride: int, pad: int = 0) -> jax.Array:
    """torch's MaxPool2d(window, stride, pad, ceil_mode=True) of an NHWC batch.

    Rounding up adds a last window that hangs over the bottom/right edge; extra -inf padding there gives it (max
    pools pad with -inf). As in torch, a window that would start in the right padding is not added.
    """
    padding = []
    for size in x.shape[1:3]:
        out = math.ceil((size + 2 * pad - window) / stride) + 1
        if (out - 1) * stride >= size + pad:
            out -= 1
        padding.append((pad, (out - 1) * stride + window - size - pad))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=tuple(padding))


class BasicConv2d(nn.Module):
    """Conv (no bias unless the norm is none), norm, ReLU; named `conv` and `norm` as torchvision's conv/bn."""

    features: int
    kernel: int
    norm: NormSpec
    stride: int = 1
    pad: int = 0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = self.layers.conv(
            self.features,
            (self.kernel, self.kernel),
            (self.stride, self.stride),
            padding=((self.pad, self.pad), (self.pad, self.pad)),
            use_bias=conv_bias(self.norm),
            kernel_init=kernel_init,
            name="conv",
        )(x)
        return norm_layer(self.norm, train, self.layers)(self.features, "norm", relu=True)(x)


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1; 1x1 then 3x3; 1x1 then 3x3 (the "5x5"); 3x3/1 max pool then
    1x1. Submodules are named `branch{k}_{i}` after torchvision's `branch{k}.{i}` (`branch1` alone)."""

    widths: tuple[int, int, int, int, int, int]
    norm: NormSpec
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj = self.widths
        conv = lambda features, kernel, name: BasicConv2d(  # noqa: E731
            features, kernel, self.norm, pad=kernel // 2, layers=self.layers, name=name
        )
        branch1 = conv(ch1x1, 1, "branch1")(x, train)
        branch2 = conv(ch3x3, 3, "branch2_1")(conv(ch3x3red, 1, "branch2_0")(x, train), train)
        branch3 = conv(ch5x5, 3, "branch3_1")(conv(ch5x5red, 1, "branch3_0")(x, train), train)
        branch4 = conv(pool_proj, 1, "branch4_1")(max_pool_ceil(x, 3, 1, 1), train)
        return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class InceptionAux(nn.Module):
    """4x4 adaptive average pool, 1x1 BasicConv2d to 128, Linear 2048 -> 1024 with ReLU, dropout, Linear."""

    num_outputs: int
    norm: NormSpec
    dropout_rate: float = 0.7
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = adaptive_avg_pool(x, AUX_POOLED_SIZE)
        x = BasicConv2d(AUX_WIDTHS[0], 1, self.norm, layers=self.layers, name="conv")(x, train)
        # NHWC flatten; the weight import reorders fc1's rows from torch's NCHW flatten.
        x = nn.relu(nn.Dense(AUX_WIDTHS[1], kernel_init=kernel_init, name="fc1")(x.reshape((x.shape[0], -1))))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, kernel_init=kernel_init, name="fc2")(x)


class GoogLeNet(nn.Module):
    """Stem (conv1, pool, conv2, conv3, pool), Inception 3a-3b, pool, 4a-4e, pool, 5a-5b, global average pool,
    dropout (torchvision: 0.2), Dense `fc`. Module names are torchvision's; see the module docstring for the
    auxiliary heads, `transform_input` and the CIFAR stem. `inceptions` names the Inception blocks built, in
    order (all of `INCEPTIONS`; fewer give a smaller net of the same kinds of block, e.g. for a test); the pools
    stay before 4a and 5a and the auxiliary heads after 4a and 4d, where those are built."""

    num_outputs: int
    norm: NormSpec = NormSpec(epsilon=BATCH_NORM_EPSILON)
    stem: str = "imagenet"
    dropout_rate: float = 0.2
    aux_logits: bool = False
    aux_dropout_rate: float = 0.7
    transform_input: bool = False
    layers: Layers = FLAX_LAYERS
    inceptions: tuple[str, ...] = tuple(INCEPTIONS)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.transform_input:
            # ImageNet-normalised -> (image - 0.5) / 0.5, channel by channel (torchvision's _transform_input).
            mean, std = jnp.asarray((0.485, 0.456, 0.406)), jnp.asarray((0.229, 0.224, 0.225))
            x = (x * std + mean - 0.5) / 0.5
        conv = lambda features, kernel, name, stride=1: BasicConv2d(  # noqa: E731
            features, kernel, self.norm, stride, kernel // 2, self.layers, name=name
        )
        cifar = self.stem == "cifar"
        x = conv(64, 3, "conv1")(x, train) if cifar else max_pool_ceil(conv(64, 7, "conv1", stride=2)(x, train), 3, 2)
        x = conv(192, 3, "conv3")(conv(64, 1, "conv2")(x, train), train)
        if not cifar:
            x = max_pool_ceil(x, 3, 2)
        # Aux heads run in training only; at init too, so that their parameters exist whatever mode init used.
        run_aux = self.aux_logits and (train or self.is_initializing())
        aux = []
        for name in self.inceptions:
            widths = INCEPTIONS[name]
            if name in ("inception4a", "inception5a"):
                x = max_pool_ceil(x, 3 if name == "inception4a" else 2, 2)
            x = Inception(widths, self.norm, self.layers, name=name)(x, train)
            if run_aux and name in ("inception4a", "inception4d"):
                head = InceptionAux(
                    self.num_outputs, self.norm, self.aux_dropout_rate, self.layers, name=f"aux{len(aux) + 1}"
                )
                aux.append(head(x, train))
        if aux:
            self.sow("intermediates", "aux_logits", tuple(aux))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x.mean(axis=(1, 2)))
        return nn.Dense(self.num_outputs, kernel_init=kernel_init, name="fc")(x)


def build_googlenet(
    model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS
) -> nn.Module:
    """GoogLeNet without auxiliary heads, reading `config.model.norm` (and its options; epsilon is torchvision's
    1e-3), `stem` and `dropout_rate`. `aux_logits` and `transform_input` are module fields (`model.clone(...)`)."""
    return GoogLeNet(
        num_outputs=num_outputs,
        norm=dataclasses.replace(norm_spec_from_config(model_config), epsilon=BATCH_NORM_EPSILON),
        stem=choose({s: s for s in STEMS}, "model.stem", model_config.stem),
        dropout_rate=float(model_config.dropout_rate),
        layers=layers,
    )


BUILDERS: dict[str, Callable[..., nn.Module]] = {"googlenet": build_googlenet}
