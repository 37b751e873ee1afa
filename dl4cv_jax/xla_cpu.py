"""main.py's XLA:CPU default flag, in one place for main.py and the benchmarks.

XLA:CPU routes each convolution through its YNN fusion by default; turning that off doubled the ResNet-20 train
step on a 2-core CPU (0.52 -> 0.94-1.21 steps/s; README "Reproducibility and speed notes", benchmarks/RESULTS.md).
It is applied only where no accelerator plugin is installed (the flag is CPU-specific), only if the user has not
set it, and DL4CV_XLA_CPU_DEFAULTS=0 turns it off.
"""

import importlib.util
import os

XLA_CPU_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
_ACCELERATOR_PLUGINS = ("jax_plugins", "jax_cuda12_plugin", "jax_cuda13_plugin", "libtpu")


def cpu_only() -> bool:
    """True where no jax accelerator plugin is installed, read without starting any backend."""
    return not any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)


def apply_xla_cpu_defaults(enabled: bool | None = None) -> str:
    """Adds `XLA_CPU_FLAG` to XLA_FLAGS (CPU-only machines, flag not set yet); returns XLA_FLAGS.

    `enabled` None reads DL4CV_XLA_CPU_DEFAULTS (default on). XLA reads XLA_FLAGS once, when the first backend
    is created, so this must run before any computation (importing jax is fine).
    """
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise RuntimeError("apply_xla_cpu_defaults must run before any jax computation (XLA reads XLA_FLAGS once)")
    if enabled is None:
        enabled = os.environ.get("DL4CV_XLA_CPU_DEFAULTS", "1") != "0"
    flags = os.environ.get("XLA_FLAGS", "")
    if enabled and cpu_only() and "xla_cpu_experimental_ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_CPU_FLAG}".strip()
    return os.environ.get("XLA_FLAGS", "")
