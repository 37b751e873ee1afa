"""Which models the backend contract (contract.py) runs, and the layer calls that show the others need not run.

The contract compares the CPU backend's layers with Flax's inside a whole training pass. Only the `Layers` a model
is built from differ between the two builds (models/layers.py: conv, BatchNorm, BatchNorm + ReLU, 2x2 max pool);
the rest is the same Flax code in both. What such a layer computes, and which path the CPU backend takes for it
(oneDNN with how many threads, a rewrite, or Flax's own layer), depends in one process only on the layer's options
and its input's shape and type (docs/cpu_backend.md). So a model whose every backend-layer call (`layer_calls`: the
layer, its options, its input's shape and type, in a training pass) is also made by a model the contract runs
leaves nothing for the contract to find. Such models are in `COVERED_BY`, and test_contract_models.py checks each
against its representative, so a change to a family that adds a call fails there, not silently. ResNet-101/152
repeat ResNet-50's Bottlenecks (ResNet-152's 36 third-stage ones are ResNet-50's six again), ResNet-34 ResNet-18's
blocks, ResNet-32..110 ResNet-20's, VGG-16/19 VGG-13's convs, and VGG-11 has none VGG-13 lacks; the deep ResNets had
cost the contract one to two and a half minutes each on a 2-core CI machine.

Some checked models are registered ones with fewer repeated blocks (`REDUCED`: the family's own builder, then
`Module.clone`; they are not in `MODELS`), checked against the registered ones the same way: ResNet-50 with two
Bottlenecks per stage (the first projects, the second is the identity block the deep ones repeat); ViT-B/16 with
one encoder block (its only backend layer is the patch projection); the MobileNets without the blocks that repeat
the block before them; DenseNet-121 with two dense layers per block (the first reads the block's input, the second
a concatenation); GoogLeNet with one Inception block at 32 and 16 pixels and both at 8 (`GOOGLENET_INCEPTIONS`).

What a representative does not run is the same layers many more times in a row: float32 rounding accumulated over
150 layers rather than 26. The contract's tolerance is relative to Flax's own float32 error, which grows with depth
too; the CPU backend's grew somewhat faster in the ResNets, well within the 3x allowed (benchmarks/RESULTS.md,
"Backend contract: precision", where the whole DenseNet-121 and GoogLeNet are measured too). That is the one thing
the deep nets checked that their representatives do not; DenseNet-121 and GoogLeNet run whole had cost the
contract 70-105 s each on a 2-core CI machine. `check_contract('densenet121')` (any name in `MODELS`) still runs a
whole one by hand. Each family keeps one model with and one without BatchNorm where it has both, although the
calls alone would let VGG-13_bn cover VGG-13: what a conv's output flows into changes the numbers the comparison
sees.

`SAME_KINDS_AS` is a weaker mapping, for a family whose depth changes channel counts rather than repeating shapes:
the DenseNets make their reduced representative's calls up to the number of channels (each dense layer reads all
earlier ones, so each of their 1x1 convs and BatchNorms reads a channel count no other model reads), and GoogLeNet
its reduced one's (each Inception block has its own widths). Which side of the CPU backend's path thresholds each
count is on (`conv.MAX_*_CHANNELS`, all 32 or fewer) is compared as well; what is not is oneDNN's own choice of
kernel and of thread count at those widths, which tests/backends/cpu/ checks on single layers (a few widths, one
thread and all).
"""

import dataclasses
import functools
import types
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from configs.default import get_config
from dl4cv_jax.backends import model_layers
from dl4cv_jax.backends.cpu import conv
from dl4cv_jax.models import create_model
from dl4cv_jax.models.layers import Layers

# The contract's input, 4 images of 32x32: the smallest batch whose last BatchNorms still average over 16+ values
# per channel. With fewer (2 images of 16x16: 2 values in VGG's last block), the normalisation divides by a
# near-zero spread and amplifies float32 rounding far past any tolerance, whichever layers compute it.
BATCH = (4, 32, 32, 3)
MOBILENETS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
# GoogLeNet's Inception blocks at each of its three sizes (32, 16 and 8 pixels with the CIFAR stem), 5a and 5b both:
# at 8 pixels only 5b's "5x5" branch reads more than `conv.MAX_PHASE_CHANNELS` channels (48), 5a's 32.
GOOGLENET_INCEPTIONS = ("inception3a", "inception4a", "inception5a", "inception5b")


def _two_blocks_per_stage(model: nn.Module) -> dict[str, Any]:
    """ResNet: the first block of each stage (it projects) and one identity block, the kind the deep ones repeat."""
    return {"stage_sizes": tuple(min(size, 2) for size in model.stage_sizes)}


def _no_repeated_block(model: nn.Module) -> dict[str, Any]:
    """MobileNet: a block that repeats the one before it (stride 1, as wide as its input) reads what that one
    read, so the blocks without repeats make every call."""
    blocks = model.blocks
    kept = [block for before, block in zip(blocks[:-1], blocks[1:], strict=True) if block != before]
    return {"blocks": (blocks[0], *kept)}


# A registered model with fewer blocks: name -> (registered model, the fields `Module.clone` replaces).
REDUCED: dict[str, tuple[str, Callable[[nn.Module], dict[str, Any]]]] = {
    "resnet50_2_blocks_per_stage": ("resnet50", _two_blocks_per_stage),
    "vit_b_16_1_layer": ("vit_b_16", lambda model: {"num_layers": 1}),
    **{f"{name}_no_repeats": (name, _no_repeated_block) for name in MOBILENETS},
    "densenet121_2_layers_per_block": ("densenet121", lambda model: {"block_config": (2, 2, 2, 2)}),
    "googlenet_4_inceptions": ("googlenet", lambda model: {"inceptions": GOOGLENET_INCEPTIONS}),
}

# The models the contract runs, costliest first (test_contract*.py share them out alternately). Not in `MODELS`:
# `REDUCED`'s.
CHECKED: tuple[str, ...] = (
    "mobilenet_v3_large_no_repeats",
    "googlenet_4_inceptions",
    "mobilenet_v3_small_no_repeats",
    "mobilenet_v2_no_repeats",
    "resnet50_2_blocks_per_stage",
    "resnet18",
    "densenet121_2_layers_per_block",
    "vgg13_bn",
    "vit_b_16_1_layer",
    "resnet20",
    "vgg13",
    "alexnet",
    "cnn",
    "lenet",
    "mlp",
)

# Registered models the contract does not run, each with the model in `CHECKED` that makes all its layer calls.
COVERED_BY: dict[str, str] = {
    **{f"resnet{depth}": "resnet50_2_blocks_per_stage" for depth in (50, 101, 152)},
    "resnet34": "resnet18",
    **{f"resnet{depth}": "resnet20" for depth in (32, 44, 56, 110)},
    **{f"vgg{depth}": "vgg13" for depth in (11, 16, 19)},
    **{f"vgg{depth}_bn": "vgg13_bn" for depth in (11, 16, 19)},
    "vit_b_16": "vit_b_16_1_layer",
    **{name: f"{name}_no_repeats" for name in MOBILENETS},
}

# Registered models whose layer calls are a checked model's up to channel counts (see the module docstring).
SAME_KINDS_AS: dict[str, str] = {
    **{f"densenet{depth}": "densenet121_2_layers_per_block" for depth in (121, 161, 169, 201)},
    "googlenet": "googlenet_4_inceptions",
}


def build_model(name: str, layers: Layers) -> nn.Module:
    """The model named `name` in `CHECKED` or `MODELS`, on `layers`, as small as its family allows (CIFAR stem
    and head where it has them), for 10 classes."""
    registered, changes = REDUCED.get(name, (name, lambda model: {}))
    config = get_config().model
    config.name, config.stem = registered, "cifar"
    model = create_model(config, 10, layers)
    return model.clone(**changes(model))


def _describe(value: Any, depth: int = 0) -> Any:
    """A hashable, comparable description of a layer option or input: arrays by shape and type, functions by
    name and what they close over (so that two initialisers with other scales differ)."""
    if depth > 8:
        return "..."
    describe = functools.partial(_describe, depth=depth + 1)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return ("array", tuple(value.shape), jnp.dtype(value.dtype).name)
    if isinstance(value, functools.partial):
        return ("partial", describe(value.func), describe(value.args), describe(value.keywords))
    if isinstance(value, types.FunctionType):
        cells = tuple(describe(cell.cell_contents) for cell in value.__closure__ or ())
        return ("function", value.__module__, value.__qualname__, describe(value.__defaults__), cells)
    if isinstance(value, type):
        return ("class", value.__module__, value.__qualname__)
    if isinstance(value, list | tuple):
        return tuple(describe(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((repr(key), describe(item)) for key, item in value.items()))
    return repr(value)


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One call of a backend layer: which `Layers` field (or 'model': the model's class), the layer's options
    (its constructor's fields), and its inputs (arrays as ('array', shape, dtype))."""

    layer: str
    options: tuple
    inputs: tuple

    def without_channels(self) -> "LayerCall":
        """The call with every channel count left out (a conv's `features`, each input's last axis), but with
        each input's side of the CPU backend's channel thresholds (`conv.MAX_*_CHANNELS`) kept."""
        thresholds = (conv.MAX_TAP_SUM_CHANNELS, conv.MAX_COL2IM_CHANNELS, conv.MAX_PHASE_CHANNELS)

        def channel_class(described: Any) -> Any:
            if isinstance(described, tuple) and described[:1] == ("array",):
                _, shape, dtype = described
                return ("array", shape[:-1], dtype, tuple(shape[-1] <= limit for limit in thresholds))
            return described

        options = tuple(option for option in self.options if option[0] != "features")
        return LayerCall(self.layer, options, tuple(channel_class(value) for value in self.inputs))


def layer_calls(name: str) -> frozenset[LayerCall]:
    """Every distinct backend-layer call of one training-mode pass of `name` on the CPU backend's layers, and
    the model's class. Traced only (`jax.eval_shape`): nothing is compiled."""
    cpu = model_layers("cpu")
    calls: set[LayerCall] = set()

    def max_pool_2x2(x: jax.Array) -> jax.Array:
        calls.add(LayerCall("max_pool_2x2", (), (_describe(x),)))
        return cpu.max_pool_2x2(x)

    model = build_model(name, dataclasses.replace(cpu, max_pool_2x2=max_pool_2x2))
    calls.add(LayerCall("model", (("class", _describe(type(model))),), ()))
    modules = {getattr(cpu, field): field for field in ("conv", "batch_norm", "batch_norm_relu")}

    def record(call: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
        layer = modules.get(type(context.module))
        if layer is not None and context.method_name == "__call__":
            fields = dataclasses.fields(context.module)
            options = tuple(
                (field.name, _describe(getattr(context.module, field.name)))
                for field in fields
                if field.name not in ("parent", "name")
            )
            calls.add(LayerCall(layer, options, (*map(_describe, args), _describe(kwargs))))
        return call(*args, **kwargs)

    # `init` in training mode runs the training pass (and adds the variables it creates): one trace, not two.
    images = jax.ShapeDtypeStruct(BATCH, jnp.float32)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(0)}
    with nn.intercept_methods(record):
        jax.eval_shape(lambda x: model.init(rngs, x, train=True), images)
    return frozenset(calls)
