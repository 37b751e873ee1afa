"""contract_models.py: every registered model is run by the backend contract, or makes no backend-layer call
that the model run in its place does not make (up to channel counts, for `SAME_KINDS_AS`)."""

import functools

import pytest

from dl4cv_jax.models import MODELS
from tests.backends import contract_models
from tests.backends.contract_models import CHECKED, COVERED_BY, REDUCED, SAME_KINDS_AS

layer_calls = functools.cache(contract_models.layer_calls)  # each representative is traced once per worker


def _kinds(name: str) -> frozenset:
    return frozenset(call.without_channels() for call in layer_calls(name))


def _first(calls: frozenset) -> list[str]:
    return sorted(map(str, calls))[:2]


def test_every_registered_model_is_checked_or_mapped_to_one_that_is():
    mapped = {**COVERED_BY, **SAME_KINDS_AS}
    unlisted = sorted(name for name in MODELS if name not in CHECKED and name not in mapped)
    assert not unlisted, (
        f"{unlisted} are in MODELS but in none of tests/backends/contract_models.py's CHECKED (the backend "
        "contract runs them), COVERED_BY or SAME_KINDS_AS (mapped to a model in CHECKED): add each to one"
    )
    assert set(mapped.values()) <= set(CHECKED)
    assert set(mapped) <= set(MODELS), "COVERED_BY or SAME_KINDS_AS names a model that is no longer registered"
    assert not set(COVERED_BY) & set(SAME_KINDS_AS) and not set(mapped) & set(CHECKED)
    assert all(name in MODELS or name in REDUCED for name in CHECKED)
    assert all(registered in MODELS and name not in MODELS for name, (registered, _) in REDUCED.items())


@pytest.mark.parametrize("name", sorted(COVERED_BY))
def test_a_covered_model_makes_only_layer_calls_its_representative_makes(name):
    missing = layer_calls(name) - layer_calls(COVERED_BY[name])
    assert not missing, f"{name} makes layer calls {COVERED_BY[name]} does not, e.g. {_first(missing)}"


@pytest.mark.parametrize("name", sorted(SAME_KINDS_AS))
def test_a_model_of_the_same_kinds_makes_its_representatives_calls_up_to_channel_counts(name):
    missing = _kinds(name) - _kinds(SAME_KINDS_AS[name])
    assert not missing, f"{name} makes layer calls {SAME_KINDS_AS[name]} does not, e.g. {_first(missing)}"


def test_layer_calls_tell_a_model_from_one_with_fewer_layer_kinds():
    assert layer_calls("vgg11") < layer_calls("vgg13")  # VGG-11 has no second conv of 64 or 128 channels
    assert not layer_calls("resnet18") <= layer_calls("resnet20")  # other widths
    assert not layer_calls("resnet50") <= layer_calls("resnet18")  # Bottlenecks
    assert not layer_calls("vgg13_bn") <= layer_calls("vgg13")  # BatchNorms
    # Up to channel counts: still other kernels (Bottlenecks' 1x1), other sides of the backend's thresholds (VGG-11
    # reads 3 channels at 32x32, VGG-13 also 64).
    assert not _kinds("resnet50") <= _kinds("resnet18")
    assert not _kinds("vgg13") <= _kinds("vgg11")
