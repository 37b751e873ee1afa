"""VGG's adaptive average pool matches PyTorch's definition, including on maps smaller than 7x7."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.models import create_model
from dl4cv_jax.models.vgg import adaptive_avg_pool


def torch_adaptive_avg_pool(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Direct transcription of torch's AdaptiveAvgPool2d bins: [floor(i*n/out), ceil((i+1)*n/out))."""
    _, h, w, _ = x.shape
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]), x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            rows = slice(i * h // out_h, -(-(i + 1) * h // out_h))
            cols = slice(j * w // out_w, -(-(j + 1) * w // out_w))
            out[:, i, j] = x[:, rows, cols].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("h, w", [(1, 1), (2, 3), (5, 7), (7, 7), (9, 13), (14, 28), (10, 4)])
def test_adaptive_avg_pool_matches_torch(h, w):
    x = np.random.default_rng(0).normal(size=(2, h, w, 3)).astype(np.float32)
    np.testing.assert_allclose(adaptive_avg_pool(jnp.asarray(x), (7, 7)), torch_adaptive_avg_pool(x, 7, 7), atol=1e-6)


def test_imagenet_head_on_cifar_sized_input_keeps_torchvision_shapes():
    # 32x32 leaves a 1x1 map after five pools; the adaptive pool repeats it to 7x7, so fc1 still has
    # 7*7*512 inputs and the parameter count is torchvision's.
    config = get_config().model
    config.update(name="vgg16", stem="imagenet")
    model = create_model(config, 1000)
    x = jnp.zeros((2, 32, 32, 3))
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    assert variables["params"]["fc1"]["kernel"].shape == (7 * 7 * 512, 4096)
    assert sum(leaf.size for leaf in jax.tree.leaves(variables["params"])) == 138_357_544
    assert jax.eval_shape(functools.partial(model.apply, train=False), variables, x).shape == (2, 1000)


@pytest.mark.parametrize("name, convs", [("vgg11", 8), ("vgg13", 10), ("vgg16", 13), ("vgg19", 16)])
def test_cifar_head_is_global_pool_and_one_dense(name, convs):
    config = get_config().model
    config.update(name=name, stem="cifar")
    model = create_model(config, 10)
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    params = variables["params"]
    assert sorted(k for k in params if k.startswith("fc")) == ["fc"]
    assert params["fc"]["kernel"].shape == (512, 10)
    assert len([k for k in params if k.startswith("conv")]) == convs
