"""MobileNetV2 and V3-Small/Large: parameter counts equal torchvision's, its channel rounding, depthwise and
squeeze-excitation shapes, both stems, every norm option, V3's BatchNorm settings, and classifier dropout.

Shapes come from `jax.eval_shape` (nothing computed); the tests that compute use MobileNetV3-Small at 32x32.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.models import create_model
from dl4cv_jax.models.mobilenet import ARCHITECTURES, make_divisible

TORCHVISION_COUNTS = {"mobilenet_v2": 3_504_872, "mobilenet_v3_small": 2_542_856, "mobilenet_v3_large": 5_483_032}


def build(name: str, num_outputs: int = 10, **overrides):
    config = get_config().model
    config.update(name=name, **overrides)
    return create_model(config, num_outputs)


def shapes(model, size: int) -> tuple[dict, dict]:
    """Variables and every submodule's output, traced with eval_shape."""
    x = jnp.zeros((1, size, size, 3))
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    apply = functools.partial(model.apply, train=False, capture_intermediates=True, mutable=["intermediates"])
    _, state = jax.eval_shape(apply, variables, x)
    return variables, state["intermediates"]


def output(intermediates: dict, name: str) -> tuple[int, ...]:
    return intermediates[name]["__call__"][0].shape


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_parameter_counts_equal_torchvision(name):
    torch_reference = pytest.importorskip("tests.pretrained.torch_reference")
    net = getattr(torch_reference.torchvision_models(), name)(weights=None)
    assert sum(p.numel() for p in net.parameters()) == TORCHVISION_COUNTS[name]
    variables, _ = shapes(build(name, 1000, stem="imagenet"), 32)
    assert sum(leaf.size for leaf in jax.tree.leaves(variables["params"])) == TORCHVISION_COUNTS[name]


def test_make_divisible_is_torchvisions():
    torch_reference = pytest.importorskip("tests.pretrained.torch_reference")
    torch_reference.torchvision_models()
    from torchvision.models._utils import _make_divisible

    for value in [*range(1, 300), 0.75 * 1280, 1.4 * 24, 0.35 * 32, 11.9, 12.5]:
        assert make_divisible(value, 8) == _make_divisible(value, 8), value


def test_depthwise_and_squeeze_excitation_shapes():
    params = shapes(build("mobilenet_v3_large"), 32)[0]["params"]
    # features.4: 24 -> 72 (expand), 5x5/2 depthwise, squeeze to _make_divisible(72 // 4) = 24, project to 40.
    block = params["block4"]
    assert block["depthwise_conv"]["kernel"].shape == (5, 5, 1, 72)
    assert block["se"]["fc1"]["kernel"].shape == (72, 24)
    assert block["se"]["fc2"]["kernel"].shape == (24, 72)
    assert block["project_conv"]["kernel"].shape == (1, 1, 72, 40)
    # The first block does not widen (16 -> 16): no expansion, as in torchvision.
    assert "expand_conv" not in params["block1"] and "expand_conv" in params["block2"]
    assert params["hidden"]["kernel"].shape == (960, 1280)
    v2 = shapes(build("mobilenet_v2"), 32)[0]["params"]
    assert "expand_conv" not in v2["block1"] and v2["block2"]["expand_conv"]["kernel"].shape == (1, 1, 16, 96)
    assert "se" not in v2["block5"] and v2["last_conv"]["kernel"].shape == (1, 1, 320, 1280)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("stem, size, after_stem", [("imagenet", 64, 32), ("cifar", 32, 32)])
def test_stems(name, stem, size, after_stem):
    _, inter = shapes(build(name, stem=stem), size)
    assert output(inter, "stem_conv")[1] == after_stem
    last_block = f"block{len(ARCHITECTURES[name][0])}"
    assert output(inter, last_block)[1:3] == (2, 2)
    assert output(inter, "classifier") == (1, 10)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
@pytest.mark.parametrize("norm", ["group", "instance", "layer", "none"])
def test_other_norms(name, norm):
    variables, inter = shapes(build(name, norm=norm, stem="cifar"), 32)
    assert "batch_stats" not in variables
    params = variables["params"]
    assert ("bias" in params["block3"]["depthwise_conv"]) == (norm == "none")
    assert ("bias" in params["stem_conv"]) == (norm == "none")
    assert output(inter, "classifier") == (1, 10)


def test_v3_keeps_torchvisions_batch_norm_unless_the_config_overrides_it():
    assert (build("mobilenet_v3_small").norm.epsilon, build("mobilenet_v3_small").norm.momentum) == (1e-3, 0.99)
    assert build("mobilenet_v3_large", bn_momentum=0.95).norm.momentum == 0.95
    assert build("mobilenet_v3_large", norm="group").norm.epsilon == 1e-3
    assert (build("mobilenet_v2").norm.epsilon, build("mobilenet_v2").norm.momentum) == (1e-5, 0.9)


def fake_variables(model, x: jax.Array) -> dict:
    """Variables shaped like `model.init`'s without compiling it: He-scaled kernels, 1 for scales and variances."""
    numbers = np.random.default_rng(0)

    def fill(path, leaf):
        if path[-1].key in ("scale", "var"):
            return np.ones(leaf.shape, leaf.dtype)
        if leaf.ndim == 1:
            return np.zeros(leaf.shape, leaf.dtype)
        return (numbers.normal(size=leaf.shape) * np.sqrt(2 / np.prod(leaf.shape[:-1]))).astype(leaf.dtype)

    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    return jax.tree_util.tree_map_with_path(fill, variables)


def test_training_mode_dropout_and_batch_norm_momentum():
    model = build("mobilenet_v3_small", dropout_rate=0.5, stem="cifar")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
    variables = fake_variables(model, x)

    @functools.partial(jax.jit, static_argnums=0)
    def run(train: bool, seed: int) -> tuple[jax.Array, dict]:
        rngs = {"dropout": jax.random.key(seed, impl="rbg")}
        return model.apply(variables, x, train=train, rngs=rngs, capture_intermediates=True, mutable=True)

    logits, state = run(True, 1)
    assert logits.shape == (4, 10) and bool(jnp.all(jnp.isfinite(logits)))
    assert not np.allclose(logits, run(True, 2)[0])
    np.testing.assert_array_equal(run(False, 1)[0], run(False, 2)[0])
    # Running means start at 0 and move by torchvision's momentum 0.01 towards the batch mean.
    batch_mean = np.asarray(state["intermediates"]["stem_conv"]["__call__"][0]).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(state["batch_stats"]["stem_norm"]["mean"], 0.01 * batch_mean, rtol=1e-4, atol=1e-7)
