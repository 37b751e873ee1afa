"""The same steps on 1 device and on 8 simulated CPU devices give the same parameters, statistics and loss."""

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO


def _run(devices: int, out_prefix: str, backend: str = "auto") -> tuple[dict, dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    subprocess.run(
        [sys.executable, "-m", "tests.train.multidevice_run", out_prefix, backend],
        cwd=REPO,
        env=env,
        check=True,
        timeout=300,
    )
    with open(out_prefix + ".json") as f:
        info = json.load(f)
    return dict(np.load(out_prefix + ".npz")), info


def test_one_device_with_the_xla_backend_equals_eight_devices(tmp_path):
    # 'auto' takes the CPU backend's oneDNN kernels on one device and Flax's layers on 8 (a custom call has no
    # sharding rule); config.backend='xla' on one device compares sharding alone. The CPU kernels against Flax's
    # layers are tests/backends/test_contract.py's job.
    single, info1 = _run(1, str(tmp_path / "one"), backend="xla")
    sharded, info8 = _run(8, str(tmp_path / "eight"))
    assert (info1["device_count"], info8["device_count"]) == (1, 8)
    assert single.keys() == sharded.keys()
    assert any("batch_stats" in k for k in single), "the model must have BatchNorm statistics"
    for name in single:
        np.testing.assert_allclose(single[name], sharded[name], atol=1e-5, rtol=1e-5, err_msg=name)
    assert len(single["losses"]) == 6 and np.all(np.diff(single["losses"]) != 0)

    # 12 does not divide over 8 devices: one line naming the key, the device count and a valid choice.
    assert info1["batch_error"] is None
    message = info8["batch_error"]
    assert "config.batch_size=12" in message and "8 devices" in message and "\n" not in message
