"""The registry exposes exactly the documented names, and bad config values fail with a clear ConfigError."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
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


def cnn_parameter_count(width: int, in_channels: int, num_outputs: int, norm: bool = True) -> int:
    """By hand, from the documented layout: [conv3x3-norm-relu] x 2 at `width`, then x 2 at 2 x width, Dense.
    A normalised conv has no bias (the norm's shift replaces it); each norm has a scale and a bias per channel."""
    total, channels_in = 0, in_channels
    for channels in (width, width, 2 * width, 2 * width):
        total += 9 * channels_in * channels + (2 * channels if norm else channels)
        channels_in = channels
    return total + channels_in * num_outputs + num_outputs


def params_and_logits(model_config, num_outputs, shapes_only=False, image_shape=(8, 8, 1), batch=4):
    """Parameter count and logits of a model built from `model_config` (logits' shape only if shapes_only)."""
    run = (lambda f: functools.partial(jax.eval_shape, f)) if shapes_only else jax.jit
    model = create_model(model_config, num_outputs)
    x = jax.random.normal(jax.random.key(1, impl="rbg"), (batch, *image_shape))
    variables = run(functools.partial(model.init, train=False))(jax.random.key(0, impl="rbg"), x)
    logits = run(functools.partial(model.apply, train=False))(variables, x)
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"])), logits


def test_default_config_builds_the_documented_cnn():
    # The default config's model on its own data (8x8 grey digits, 10 classes): the CNN at width 32 with
    # BatchNorm, 65,834 parameters; another class or an ignored width/norm/num_outputs changes the count.
    config = get_config()
    assert (config.model.name, config.model.width, config.model.norm, config.data.source) == (
        "cnn",
        32,
        "batch",
        "digits",
    )
    count, logits = params_and_logits(config.model, 10)
    assert count == cnn_parameter_count(32, 1, 10) == 65_834
    assert logits.shape == (4, 10) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all() and np.ptp(np.asarray(logits), axis=0).min() > 0


@pytest.mark.parametrize("width, norm, num_outputs", [(16, "batch", 10), (8, "none", 7), (24, "group", 3)])
def test_the_cnn_follows_width_norm_and_outputs(width, norm, num_outputs):
    config = model_config(width=width, norm=norm, group_norm_groups=4)
    count, logits = params_and_logits(config, num_outputs, shapes_only=True)
    assert count == cnn_parameter_count(width, 1, num_outputs, norm=norm != "none")
    assert logits.shape == (4, num_outputs)


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
