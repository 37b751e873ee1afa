"""Trainable parameter counts equal the published figures (torchvision; He et al. 2016; LeNet-5).

`jax.eval_shape` traces `init` without computing anything, so even VGG-19 and ResNet-152 cost well under a
second each on CPU.
"""

import jax
import jax.numpy as jnp
import pytest

from configs.default import get_config
from dl4cv_jax.models import create_model


def trainable_params(name: str, shape: tuple[int, ...], num_outputs: int, **overrides) -> int:
    config = get_config().model
    config.name = name
    config.update(overrides)
    model = create_model(config, num_outputs)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("vgg11", 132_863_336),
        ("vgg11_bn", 132_868_840),
        ("vgg13", 133_047_848),
        ("vgg13_bn", 133_053_736),
        ("vgg16", 138_357_544),
        ("vgg16_bn", 138_365_992),
        ("vgg19", 143_667_240),
        ("vgg19_bn", 143_678_248),
        # torchvision 0.28 (STACK_NOTES.md); tests/models/test_<family>.py also count torchvision's own modules.
        ("alexnet", 61_100_840),
        ("googlenet", 6_624_904),
        ("densenet121", 7_978_856),
        ("densenet161", 28_681_000),
        ("densenet169", 14_149_480),
        ("densenet201", 20_013_928),
        ("mobilenet_v2", 3_504_872),
        ("mobilenet_v3_small", 2_542_856),
        ("mobilenet_v3_large", 5_483_032),
        ("vit_b_16", 86_567_656),
    ],
)
def test_imagenet_models_match_torchvision(name, expected):
    assert trainable_params(name, (1, 224, 224, 3), 1000, norm="batch", stem="imagenet") == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet20", 269_722),
        ("resnet32", 464_154),
        ("resnet44", 658_586),
        ("resnet56", 853_018),
        ("resnet110", 1_727_962),
    ],
)
def test_cifar_resnets_match_he_et_al(name, expected):
    assert trainable_params(name, (1, 32, 32, 3), 10, norm="batch") == expected


def test_lenet5_on_28x28():
    assert trainable_params("lenet", (1, 28, 28, 1), 10) == 61_706


def test_group_norm_has_as_many_parameters_as_batch_norm():
    # Both hold one scale and one bias per channel; only the statistics differ.
    batch = trainable_params("resnet18", (1, 224, 224, 3), 1000, norm="batch")
    assert trainable_params("resnet18", (1, 224, 224, 3), 1000, norm="group") == batch
