"""MLP and LeNet-5 shapes, LeNet on inputs below 10x10, and the He fan-out initialisation of convs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from configs.default import get_config
from dl4cv_jax.models import create_model
from dl4cv_jax.models.norm import conv_kernel_init


def build(name: str, **overrides):
    config = get_config().model
    config.update(name=name, **overrides)
    return create_model(config, 10)


def param_shapes(model, shape: tuple[int, ...]) -> dict:
    x = jnp.zeros(shape)
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    return jax.tree.map(lambda leaf: leaf.shape, variables["params"])


def test_mlp_layers_follow_hidden_sizes():
    shapes = param_shapes(build("mlp", hidden_sizes=(32, 16, 8)), (1, 8, 8, 1))
    kernels = [shapes[f"Dense_{i}"]["kernel"] for i in range(4)]
    assert kernels == [(64, 32), (32, 16), (16, 8), (8, 10)]


def test_lenet_on_8x8_switches_the_second_conv_to_same_padding():
    # 8x8 -> conv SAME 8x8 -> pool 4x4 -> conv SAME 4x4 (VALID would need 5x5) -> pool 2x2 -> 64 features.
    shapes = param_shapes(build("lenet"), (1, 8, 8, 1))
    assert shapes["conv2"]["kernel"] == (5, 5, 6, 16)
    assert shapes["fc1"]["kernel"] == (2 * 2 * 16, 120)


def test_lenet_on_32x32_is_the_paper_layout():
    assert param_shapes(build("lenet"), (1, 32, 32, 1))["fc1"]["kernel"] == (6 * 6 * 16, 120)


def test_conv_init_is_he_normal_with_fan_out():
    # A 3x3 conv from 64 to 256 channels: fan_out = 9 * 256 gives std 0.0295; fan_in would give 0.0589.
    kernel = np.asarray(conv_kernel_init(jax.random.key(0, impl="rbg"), (3, 3, 64, 256)))
    np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (9 * 256)), rtol=0.02)
    assert abs(kernel.mean()) < 1e-3
