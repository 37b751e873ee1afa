"""DenseNet-121..201: parameter counts and widths equal torchvision's; feature-map sizes of both stems, every
norm option, and dropout inside the dense layers.

Shapes come from `jax.eval_shape` (nothing computed). All but the parameter counts use DenseNet-121's builder cut
down to one narrow layer per block (`Module.clone`): the same code, a fraction of the tracing and compilation.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.models import create_model

TORCHVISION_COUNTS = {121: 7_978_856, 161: 28_681_000, 169: 14_149_480, 201: 20_013_928}


def build(name: str, num_outputs: int = 10, **overrides):
    config = get_config().model
    config.update(name=name, **overrides)
    return create_model(config, num_outputs)


def trainable_params(model, size: int) -> int:
    variables = jax.eval_shape(
        functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros((1, size, size, 3))
    )
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def shapes(model, size: int) -> tuple[dict, dict]:
    """Variables and every submodule's output, traced with eval_shape."""
    x = jnp.zeros((1, size, size, 3))
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    apply = functools.partial(model.apply, train=False, capture_intermediates=True, mutable=["intermediates"])
    _, state = jax.eval_shape(apply, variables, x)
    return variables, state["intermediates"]


def output(intermediates: dict, name: str) -> tuple[int, ...]:
    return intermediates[name]["__call__"][0].shape


@pytest.mark.parametrize("depth", sorted(TORCHVISION_COUNTS))
def test_parameter_counts_and_widths_equal_torchvision(depth):
    torch_reference = pytest.importorskip("tests.pretrained.torch_reference")
    net = getattr(torch_reference.torchvision_models(), f"densenet{depth}")(weights=None)
    assert sum(p.numel() for p in net.parameters()) == TORCHVISION_COUNTS[depth]
    ours = jax.eval_shape(
        functools.partial(build(f"densenet{depth}", 1000, stem="imagenet").init, train=False),
        jax.random.key(0),
        jnp.zeros((1, 32, 32, 3)),  # the count does not depend on the input size; tracing is faster on a small one
    )
    assert sum(leaf.size for leaf in jax.tree.leaves(ours["params"])) == TORCHVISION_COUNTS[depth]
    # Every variable has the shape of its torchvision counterpart (transposed): channel growth and halving included.
    theirs = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    params = ours["params"]
    for i in (1, 2, 3):
        kernel = params[f"transition{i}"]["conv"]["kernel"].shape
        assert theirs[f"features.transition{i}.conv.weight"] == (kernel[3], kernel[2], 1, 1)
    assert theirs["features.norm5.weight"] == params["norm5"]["scale"].shape
    conv2 = params["denseblock4"]["denselayer2"]["conv2"]["kernel"].shape
    assert theirs["features.denseblock4.denselayer2.conv2.weight"] == (conv2[3], conv2[2], 3, 3)


def tiny(**overrides):
    """DenseNet-121's builder, then one 4-channel layer per block (`clone`): the same modules, quick to trace and
    compile."""
    return build("densenet121", **overrides).clone(block_config=(1, 1, 1, 1), growth_rate=4)


@pytest.mark.parametrize("stem, size, blocks", [("imagenet", 64, (16, 8, 4, 2)), ("cifar", 32, (32, 16, 8, 4))])
def test_stems_set_the_block_resolutions(stem, size, blocks):
    variables, inter = shapes(tiny(stem=stem), size)
    assert tuple(output(inter, f"denseblock{i}")[1] for i in (1, 2, 3, 4)) == blocks
    assert output(inter, "classifier") == (1, 10)
    assert variables["params"]["conv0"]["kernel"].shape == ((7, 7, 3, 64) if stem == "imagenet" else (3, 3, 3, 64))


@pytest.mark.parametrize("norm", ["group", "instance", "layer", "none"])
def test_other_norms(norm):
    variables, inter = shapes(tiny(norm=norm, stem="cifar"), 32)
    assert "batch_stats" not in variables
    assert ("bias" in variables["params"]["denseblock2"]["denselayer1"]["conv2"]) == (norm == "none")
    assert output(inter, "classifier") == (1, 10)


def fake_variables(model, x: jax.Array) -> dict:
    """Variables shaped like `model.init`'s without compiling it: He-scaled kernels, 1 for scales and variances."""
    numbers = np.random.default_rng(0)

    def fill(path, leaf):
        if path[-1].key in ("scale", "var"):
            return np.ones(leaf.shape, leaf.dtype)
        if leaf.ndim == 1:
            return np.zeros(leaf.shape, leaf.dtype)
        return (numbers.normal(size=leaf.shape) * np.sqrt(2 / np.prod(leaf.shape[:-1]))).astype(leaf.dtype)

    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    return jax.tree_util.tree_map_with_path(fill, shapes)


def test_dropout_drops_each_dense_layers_new_features_in_training_only():
    model = tiny(dropout_rate=0.5, stem="cifar")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
    variables = fake_variables(model, x)

    @functools.partial(jax.jit, static_argnums=0)
    def new_features(train: bool, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits, state = model.apply(
            variables, x, train=train, rngs={"dropout": key}, capture_intermediates=True, mutable=True
        )
        return logits, state["intermediates"]["denseblock1"]["denselayer1"]["__call__"][0]

    logits, dropped = new_features(True, jax.random.key(1, impl="rbg"))
    assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
    assert 0.35 < np.mean(np.asarray(dropped) == 0) < 0.65
    assert not np.array_equal(dropped, new_features(True, jax.random.key(2, impl="rbg"))[1])
    assert np.mean(np.asarray(new_features(False, jax.random.key(1, impl="rbg"))[1]) == 0) < 0.01


def test_inputs_below_torchvisions_minimum_give_finite_logits():
    # 16x16 through the ImageNet stem is 4x4 at the first block: the third transition would pool 1x1 to 0x0.
    model = tiny(stem="imagenet")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
    _, inter = shapes(model, 16)
    assert tuple(output(inter, f"denseblock{i}")[1] for i in (1, 2, 3, 4)) == (4, 2, 1, 1)
    logits = jax.jit(functools.partial(model.apply, train=False))(fake_variables(model, x), x)
    assert bool(jnp.all(jnp.isfinite(logits)))
