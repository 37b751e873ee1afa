"""AlexNet: torchvision's parameter count and shapes, the CIFAR variant, and what `config.model.norm` does (nothing)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.choices import ConfigError
from dl4cv_jax.models import create_model
from tests.models.test_forward import fake_variables
from tests.models.test_param_counts import trainable_params

TORCHVISION_ALEXNET = 61_100_840  # torchvision 0.28, 1000 classes (STACK_NOTES.md)


def build(num_outputs: int = 10, **overrides):
    config = get_config().model
    config.update(name="alexnet", **overrides)
    return create_model(config, num_outputs)


def shapes(model, image_shape):
    return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros(image_shape))


def test_parameter_count_is_torchvisions():
    assert trainable_params("alexnet", (1, 224, 224, 3), 1000, stem="imagenet") == TORCHVISION_ALEXNET


def test_parameter_count_equals_torchvision_computed():
    pytest.importorskip("torch")
    from tests.pretrained.torch_reference import torch, torchvision_models

    with torch.device("meta"):  # shapes only: nothing allocated or initialised
        theirs = sum(p.numel() for p in torchvision_models().alexnet(weights=None, num_classes=7).parameters())
    assert trainable_params("alexnet", (1, 224, 224, 3), 7, stem="imagenet") == theirs


@pytest.mark.parametrize("side", [63, 224, 300])
def test_imagenet_head_reads_a_6x6_map_at_any_size_from_63(side):
    # torchvision's minimum is 63x63 (one pixel left after the third pool); the adaptive pool makes fc1's input
    # 256*6*6 whatever the size, as torch's.
    model = build(1000, stem="imagenet")
    variables = shapes(model, (1, side, side, 3))
    assert variables["params"]["fc1"]["kernel"].shape == (256 * 6 * 6, 4096)
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, jnp.zeros((2, side, side, 3)))
    assert logits.shape == (2, 1000)


def test_cifar_variant_is_a_3x3_first_conv_and_one_dense():
    model = build(10, stem="cifar")
    params = shapes(model, (1, 32, 32, 3))["params"]
    assert sorted(params) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc"]
    assert params["conv1"]["kernel"].shape == (3, 3, 3, 64)
    assert params["fc"]["kernel"].shape == (256, 10)
    # Only conv1 and the head differ from torchvision's net.
    convs = sum(leaf.size for name in ("conv2", "conv3", "conv4", "conv5") for leaf in jax.tree.leaves(params[name]))
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 3 * 3 * 3 * 64 + 64 + convs + 256 * 10 + 10


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_norm_is_ignored(norm):
    # torchvision's AlexNet has no norm layer; like plain VGG, the config's norm changes nothing.
    variables = shapes(build(10, stem="cifar", norm=norm), (1, 32, 32, 3))
    assert "batch_stats" not in variables
    assert jax.tree.map(lambda v: v.shape, variables) == jax.tree.map(
        lambda v: v.shape, shapes(build(10, stem="cifar", norm="batch"), (1, 32, 32, 3))
    )


def test_dropout_is_random_in_train_and_off_in_eval():
    model = build(5, stem="cifar", dropout_rate=0.5)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
    variables = fake_variables(model, x)
    train = lambda seed: model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(seed)})  # noqa: E731
    assert not np.allclose(train(1), train(2))
    np.testing.assert_array_equal(model.apply(variables, x, train=False), model.apply(variables, x, train=False))


def test_unknown_stem_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model\.stem='tiny'.*cifar, imagenet"):
        build(10, stem="tiny")
