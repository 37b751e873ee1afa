"""ViT-B/16: torchvision's parameter count and initial scales, the position embedding sized by the init input,
the CIFAR stem, dropout, and the config fields that do not apply."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.choices import ConfigError
from dl4cv_jax.models import create_model
from dl4cv_jax.models.vit import VisionTransformer
from tests.pretrained.torch_reference import torchvision_models

torch = pytest.importorskip("torch")

VIT_B_16_PARAMS = 86_567_656  # torchvision 0.28, 1000 classes


def vit_b_16(num_outputs: int = 1000, **overrides):
    config = get_config().model
    config.update(name="vit_b_16", **overrides)
    return create_model(config, num_outputs)


def shapes(model, image_shape: tuple[int, ...]):
    return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros(image_shape))


def count(variables) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def torch_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_vit_b_16_parameter_count_is_torchvisions():
    with torch.device("meta"):  # shapes only: nothing is initialised
        theirs = torch_count(torchvision_models().vit_b_16(weights=None))
    variables = shapes(vit_b_16(), (1, 224, 224, 3))
    assert count(variables) == theirs == VIT_B_16_PARAMS
    assert variables["params"]["encoder"]["pos_embedding"].shape == (1, 14 * 14 + 1, 768)
    assert "batch_stats" not in variables


def test_cifar_stem_is_vit_b_with_4x4_patches():
    with torch.device("meta"):
        theirs = torchvision_models().VisionTransformer(
            image_size=32, patch_size=4, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072, num_classes=10
        )
    model = vit_b_16(10, stem="cifar")
    variables = shapes(model, (1, 32, 32, 3))
    assert count(variables) == torch_count(theirs)
    params = variables["params"]
    assert params["conv_proj"]["kernel"].shape == (4, 4, 3, 768)
    assert params["encoder"]["pos_embedding"].shape == (1, 8 * 8 + 1, 768)
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, jnp.zeros((2, 32, 32, 3)))
    assert logits.shape == (2, 10)


def test_imagenet_stem_forward_shape():
    model = vit_b_16()
    variables = shapes(model, (1, 224, 224, 3))
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, jnp.zeros((2, 224, 224, 3)))
    assert logits.shape == (2, 1000)


def test_norm_config_does_not_change_the_model():
    # LayerNorm is part of the architecture: every config.model.norm builds the same tree.
    trees = {norm: jax.tree.structure(shapes(vit_b_16(norm=norm), (1, 32, 32, 3))) for norm in ("batch", "none")}
    assert trees["batch"] == trees["none"]


def test_bad_stem_names_the_config_key():
    with pytest.raises(ConfigError, match=r"config\.model\.stem='tiny'.*choose one of: cifar, imagenet"):
        vit_b_16(stem="tiny")


TINY = dict(num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16)


def init(model, x):
    return jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)


def test_position_embedding_is_sized_by_the_init_input():
    model = VisionTransformer(num_outputs=3, patch_size=4, **TINY)
    variables = shapes(model, (1, 8, 12, 3))
    assert variables["params"]["encoder"]["pos_embedding"].shape == (1, 2 * 3 + 1, 8)
    apply = functools.partial(model.apply, train=False)
    assert jax.eval_shape(apply, variables, jnp.ones((5, 8, 12, 3))).shape == (5, 3)
    with pytest.raises(Exception, match="pos_embedding"):
        jax.eval_shape(apply, variables, jnp.ones((1, 12, 12, 3)))
    with pytest.raises(ValueError, match="not a multiple of the patch size 4"):
        shapes(model, (1, 10, 12, 3))


def test_dropout_acts_only_in_training():
    model = VisionTransformer(num_outputs=3, patch_size=4, dropout_rate=0.5, **TINY)
    without = model.clone(dropout_rate=0.0)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    # Random values for every variable (the head starts at zero), drawn by numpy: no init to compile.
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: rng.normal(0.0, 0.5, s.shape).astype(s.dtype), shapes(model, x.shape))

    @jax.jit
    def logits(variables, x):
        def run(module, train, seed):
            # "rbg" keys compile several times faster than threefry on XLA:CPU; the masks' source is beside the point.
            return module.apply(variables, x, train=train, rngs={"dropout": jax.random.key(seed, impl="rbg")})

        return (
            run(model, False, 0),
            run(model, False, 1),
            run(model, True, 1),
            run(model, True, 2),
            run(without, True, 1),
        )

    eval_logits, eval_again, first, second, undropped = (np.asarray(y) for y in logits(variables, x))
    np.testing.assert_array_equal(eval_logits, eval_again)
    assert not np.allclose(first, second) and not np.allclose(first, eval_logits)
    np.testing.assert_allclose(undropped, eval_logits, rtol=1e-6)


def test_initial_scales_are_torchvisions():
    # One block at ViT-Ti width (the rules scale with the shapes), initialised by us and by torch: spreads match.
    model = VisionTransformer(num_outputs=10, num_layers=1, num_heads=3, hidden_dim=192, mlp_dim=768)
    params = init(model, jnp.zeros((1, 128, 128, 3)))["params"]
    torch.manual_seed(0)
    net = torchvision_models().VisionTransformer(
        image_size=128, patch_size=16, num_layers=1, num_heads=3, hidden_dim=192, mlp_dim=768
    )
    block, theirs = params["encoder"]["encoder_layer_0"], dict(net.named_parameters())
    torch_block = "encoder.layers.encoder_layer_0."
    pairs = {
        "conv_proj": (params["conv_proj"]["kernel"], theirs["conv_proj.weight"]),
        "pos_embedding": (params["encoder"]["pos_embedding"], theirs["encoder.pos_embedding"]),
        "query": (block["self_attention"]["query"]["kernel"], theirs[torch_block + "self_attention.in_proj_weight"]),
        "out": (block["self_attention"]["out"]["kernel"], theirs[torch_block + "self_attention.out_proj.weight"]),
        "mlp": (block["mlp"]["linear_1"]["kernel"], theirs[torch_block + "mlp.0.weight"]),
    }
    for name, (ours, reference) in pairs.items():
        assert float(jnp.std(ours)) == pytest.approx(float(reference.detach().std()), rel=0.03), name
    assert not np.any(params["head"]["kernel"]) and not np.any(params["class_token"])
