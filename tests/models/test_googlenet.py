"""GoogLeNet: torchvision's parameter counts (with and without auxiliary heads), ceil-mode pools as torch's, the
CIFAR stem's map sizes, the norm options, and auxiliary heads that only run in training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.choices import ConfigError
from dl4cv_jax.models import create_model
from dl4cv_jax.models.googlenet import max_pool_ceil
from tests.models.test_param_counts import trainable_params

TORCHVISION_GOOGLENET = 6_624_904  # torchvision 0.28, 1000 classes, no auxiliary heads (STACK_NOTES.md)


def build(num_outputs: int = 10, aux_logits: bool = False, **overrides):
    config = get_config().model
    config.update(name="googlenet", **overrides)
    return create_model(config, num_outputs).clone(aux_logits=aux_logits)


def shapes(model, image_shape, **kwargs):
    return jax.eval_shape(
        functools.partial(model.init, train=False, **kwargs), jax.random.key(0), jnp.zeros(image_shape)
    )


def count(tree) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


def test_parameter_count_is_torchvisions():
    assert trainable_params("googlenet", (1, 224, 224, 3), 1000, stem="imagenet") == TORCHVISION_GOOGLENET


@pytest.mark.parametrize("aux_logits", [False, True])
def test_parameter_count_equals_torchvision_computed(aux_logits):
    pytest.importorskip("torch")
    from tests.pretrained.torch_reference import torch, torchvision_models

    with torch.device("meta"):  # shapes only: nothing allocated or initialised
        net = torchvision_models().googlenet(weights=None, num_classes=7, aux_logits=aux_logits, init_weights=False)
    params = shapes(build(7, aux_logits, stem="imagenet"), (1, 224, 224, 3))["params"]
    assert count(params) == sum(p.numel() for p in net.parameters())
    assert ("aux1" in params and "aux2" in params) == aux_logits


POOLS = [
    (size, window, stride, pad)
    for size in (1, 2, 5, 7, 8, 14, 15, 28, 57)
    for window, stride, pad in ((3, 2, 0), (2, 2, 0), (3, 1, 1), (3, 2, 1))
    if window <= size + 2 * pad  # torch refuses a window larger than the padded input
]


@pytest.mark.parametrize("size, window, stride, pad", POOLS)
def test_max_pool_ceil_matches_torch(size, window, stride, pad):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(size).normal(size=(2, size, size + 1, 3)).astype(np.float32)
    pool = torch.nn.MaxPool2d(window, stride, pad, ceil_mode=True)
    theirs = pool(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(max_pool_ceil(jnp.asarray(x), window, stride, pad), theirs)


def _map_sizes(model, image_shape) -> dict[str, tuple[int, ...]]:
    variables = shapes(model, image_shape)
    _, state = jax.eval_shape(
        functools.partial(model.apply, train=False, capture_intermediates=True, mutable=["intermediates"]),
        variables,
        jnp.zeros(image_shape),
    )
    found = state["intermediates"]
    return {name: found[name]["__call__"][0].shape for name in ("conv3", "inception3b", "inception4e", "inception5b")}


def test_imagenet_stem_map_sizes_are_torchvisions():
    # 224 -> 112 -> 56 (conv2, conv3) -> 28 -> 14 -> 7, as in torchvision's comments.
    sizes = _map_sizes(build(1000, stem="imagenet"), (1, 224, 224, 3))
    assert sizes == {
        "conv3": (1, 56, 56, 192),
        "inception3b": (1, 28, 28, 480),
        "inception4e": (1, 14, 14, 832),
        "inception5b": (1, 7, 7, 1024),
    }


def test_cifar_stem_keeps_32x32_until_the_inception_pools():
    sizes = _map_sizes(build(10, stem="cifar"), (1, 32, 32, 3))
    assert sizes == {
        "conv3": (1, 32, 32, 192),
        "inception3b": (1, 32, 32, 480),
        "inception4e": (1, 16, 16, 832),
        "inception5b": (1, 8, 8, 1024),
    }
    params = shapes(build(10, stem="cifar"), (1, 32, 32, 3))["params"]
    assert params["conv1"]["conv"]["kernel"].shape == (3, 3, 3, 64)
    assert count(params) == TORCHVISION_GOOGLENET - (7 * 7 - 3 * 3) * 3 * 64 - 1024 * 990 - 990


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "none"])
def test_norm_options(norm):
    variables = shapes(build(10, stem="cifar", norm=norm), (1, 32, 32, 3))
    conv = variables["params"]["inception3a"]["branch2_1"]
    assert ("batch_stats" in variables) == (norm == "batch")
    assert ("bias" in conv["conv"]) == (norm == "none")
    assert ("norm" in conv) == (norm != "none")


def test_batch_norm_epsilon_is_torchvisions_1e_3():
    model = build(10, stem="cifar")
    assert model.norm.epsilon == 1e-3 and model.norm.name == "batch" and model.norm.momentum == 0.9


X = jnp.zeros((4, 32, 32, 3))


def test_aux_heads_run_in_training_only():
    # Shapes only (eval_shape traces without compiling); their values are checked against torch's in
    # tests/pretrained/test_googlenet_weights.py.
    model = build(5, aux_logits=True, stem="cifar", dropout_rate=0.5)
    variables = shapes(model, X.shape)
    assert {"aux1", "aux2"} <= set(variables["params"])  # created although init ran in eval mode
    train = functools.partial(
        model.apply, train=True, mutable=["batch_stats", "intermediates"], rngs={"dropout": jax.random.key(0)}
    )
    logits, state = jax.eval_shape(train, variables, X)
    aux1, aux2 = state["intermediates"]["aux_logits"][0]
    assert logits.shape == aux1.shape == aux2.shape == (4, 5)
    _, eval_state = jax.eval_shape(functools.partial(model.apply, train=False, mutable=["intermediates"]), variables, X)
    assert "intermediates" not in eval_state


def test_unknown_stem_and_norm_are_config_errors():
    with pytest.raises(ConfigError, match=r"model\.stem='tiny'"):
        build(10, stem="tiny")
    with pytest.raises(ConfigError, match=r"model\.norm='bn'"):
        build(10, norm="bn")
