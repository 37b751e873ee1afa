"""The backend contract (tests/backends/contract.py) for the second half of contract_models.CHECKED."""

import pytest

from tests.backends.contract import check_contract
from tests.backends.contract_models import CHECKED


@pytest.mark.parametrize("name", CHECKED[1::2])
def test_the_cpu_backend_equals_flax_layers(name):
    check_contract(name)
