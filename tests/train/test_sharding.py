"""Multi-process detection and the batch-size check."""

import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.train import sharding


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"SLURM_NTASKS": "1"}, False),
        ({"SLURM_NTASKS": "4"}, True),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
        ({"TPU_WORKER_HOSTNAMES": "a,b"}, True),
    ],
)
def test_wants_distributed_reads_the_environment(environ, expected):
    assert sharding.wants_distributed(environ) is expected


def test_batch_size_must_be_positive():
    with pytest.raises(ConfigError, match=r"config.batch_size=0 must be a positive multiple"):
        sharding.check_batch_size(0)
    sharding.check_batch_size(3)  # one device here: any positive size divides
