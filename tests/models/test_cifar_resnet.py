"""He et al.'s CIFAR ResNets: option-A shortcuts carry no parameters; depth = 6n + 2."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.models import create_model
from dl4cv_jax.models.cifar_resnet import option_a_shortcut


def test_option_a_subsamples_and_zero_pads_channels_evenly():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 16)), jnp.float32)
    y = np.asarray(option_a_shortcut(x, 32, 2))
    assert y.shape == (2, 4, 4, 32)
    np.testing.assert_array_equal(y[..., 8:24], np.asarray(x)[:, ::2, ::2, :])
    assert not y[..., :8].any() and not y[..., 24:].any()


def test_option_a_is_identity_when_shapes_match():
    x = jnp.ones((1, 4, 4, 16))
    assert option_a_shortcut(x, 16, 1) is x


@pytest.mark.parametrize("name, blocks", [("resnet20", 3), ("resnet56", 9), ("resnet110", 18)])
def test_blocks_widths_and_no_shortcut_parameters(name, blocks):
    config = get_config().model
    config.name = name
    model = create_model(config, 10)
    x = jnp.zeros((1, 32, 32, 3))
    params = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)["params"]
    block_names = [k for k in params if k.startswith("layer")]
    assert len(block_names) == 3 * blocks
    assert all(set(params[k]) == {"conv1", "norm1", "conv2", "norm2"} for k in block_names)
    widths = [params[f"layer{stage}_0"]["conv2"]["kernel"].shape[-1] for stage in (1, 2, 3)]
    assert widths == [16, 32, 64]
    assert params["fc"]["kernel"].shape == (64, 10)
