"""ResNet-18..152 feature-map sizes: stems, where the stride sits (ResNet v1.5), projection shortcuts."""

import functools

import jax
import jax.numpy as jnp
import pytest

from configs.default import get_config
from dl4cv_jax.models import create_model


def intermediate_shapes(name: str, stem: str, size: int) -> tuple[dict, dict]:
    """Params and the output shape of every submodule, traced with eval_shape (nothing is computed)."""
    config = get_config().model
    config.update(name=name, stem=stem)
    model = create_model(config, 10)
    x = jnp.zeros((1, size, size, 3))
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    apply = functools.partial(model.apply, train=False, capture_intermediates=True, mutable=["intermediates"])
    _, state = jax.eval_shape(apply, variables, x)
    return variables["params"], state["intermediates"]


def spatial(intermediates: dict, *path: str) -> int:
    node = intermediates
    for key in path:
        node = node[key]
    return node["__call__"][0].shape[1]


@pytest.mark.parametrize("stem, size, after_stem, last", [("imagenet", 64, 16, 2), ("cifar", 32, 32, 4)])
def test_stems(stem, size, after_stem, last):
    _, inter = intermediate_shapes("resnet18", stem, size)
    assert spatial(inter, "layer1_0") == after_stem
    assert spatial(inter, "layer4_1") == last


def test_bottleneck_strides_on_the_3x3_conv():
    params, inter = intermediate_shapes("resnet50", "imagenet", 64)
    block = inter["layer2_0"]
    assert (spatial(block, "conv1"), spatial(block, "conv2"), spatial(block, "conv3")) == (16, 8, 8)
    assert params["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 128, 128)
    assert params["layer2_0"]["conv3"]["kernel"].shape == (1, 1, 128, 512)


def test_projection_shortcuts_only_where_shapes_change():
    params, _ = intermediate_shapes("resnet18", "cifar", 32)
    with_projection = sorted(name for name, block in params.items() if "shortcut_conv" in block)
    assert with_projection == ["layer2_0", "layer3_0", "layer4_0"]
    # Bottleneck stages widen 64 -> 256 in the first block, so layer1_0 projects too.
    params, _ = intermediate_shapes("resnet50", "cifar", 32)
    assert sorted(n for n, b in params.items() if "shortcut_conv" in b)[0] == "layer1_0"


@pytest.mark.parametrize("norm, has_bias", [("batch", False), ("none", True)])
def test_conv_bias_only_without_norm(norm, has_bias):
    config = get_config().model
    config.update(name="resnet18", norm=norm)
    model = create_model(config, 10)
    x = jnp.zeros((1, 32, 32, 3))
    params = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)["params"]
    assert ("bias" in params["conv1"]) == has_bias
    assert ("bias" in params["layer1_0"]["conv1"]) == has_bias
