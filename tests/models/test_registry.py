"""The registry exposes exactly the documented names, and bad config values fail with a clear ConfigError."""

import functools

import jax
import jax.numpy as jnp
import pytest

from configs.default import get_config
from dl4cv_jax.choices import ConfigError
from dl4cv_jax.models import MODELS, create_model

EXPECTED_NAMES = {
    "mlp",
    "lenet",
    "cnn",
    *(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
    *(f"resnet{d}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)),
    "alexnet",
    "googlenet",
    *(f"densenet{d}" for d in (121, 161, 169, 201)),
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "vit_b_16",
}


def model_config(**overrides):
    config = get_config().model
    config.update(overrides)
    return config


def test_registry_names():
    assert set(MODELS) == EXPECTED_NAMES


def test_default_config_builds():
    assert create_model(get_config().model, 10) is not None


def test_unknown_model_name_lists_choices():
    with pytest.raises(ConfigError, match=r"model\.name") as error:
        create_model(model_config(name="resnet9000"), 10)
    assert "resnet18" in str(error.value) and "vgg16_bn" in str(error.value)


@pytest.mark.parametrize("name", ["cnn", "resnet18", "resnet20", "vgg11_bn"])
def test_unknown_norm_fails_at_build_time(name):
    with pytest.raises(ConfigError, match=r"model\.norm") as error:
        create_model(model_config(name=name, norm="batchnorm"), 10)
    for choice in ("batch", "group", "instance", "layer", "none"):
        assert choice in str(error.value)


@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_unknown_stem(name):
    with pytest.raises(ConfigError, match=r"model\.stem.*cifar.*imagenet"):
        create_model(model_config(name=name, stem="tiny"), 10)


def test_bad_group_count():
    with pytest.raises(ConfigError, match=r"model\.group_norm_groups"):
        create_model(model_config(norm="group", group_norm_groups=0), 10)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_model_gives_logits_for_small_images(name):
    # Shapes only (eval_shape): 16x16 is below VGG's 7x7 adaptive pool after its five pools, and below
    # LeNet's VALID conv, so this also covers the small-input paths of every family.
    model = create_model(model_config(name=name, dropout_rate=0.1), 7)
    x = jnp.zeros((3, 16, 16, 1))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
    assert logits.shape == (3, 7) and logits.dtype == jnp.float32
