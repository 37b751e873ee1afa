"""The backend contract (tests/backends/contract.py) for the second half of the registered models."""

import pytest

from dl4cv_jax.models import MODELS
from tests.backends.contract import check_contract


@pytest.mark.parametrize("name", sorted(MODELS)[1::2])
def test_the_cpu_backend_equals_flax_layers(name):
    check_contract(name)
