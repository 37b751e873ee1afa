"""The XLA:CPU flag `process.configure_process` sets on CPU-only machines.

XLA:CPU routes each convolution through its YNN fusion by default; turning that off made the ResNet-20 train step
on XLA's convolutions much faster (benchmarks/RESULTS.md). It is applied only where no accelerator plugin is
installed (the flag is CPU-specific), only if the user has not set it, and only before jax has created its
backends (XLA reads XLA_FLAGS once).
"""

import importlib.util
import os

XLA_CPU_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
_ACCELERATOR_PLUGINS = ("jax_plugins", "jax_cuda12_plugin", "jax_cuda13_plugin", "libtpu")


def cpu_only() -> bool:
    """True where no jax accelerator plugin is installed, read without starting any backend."""
    return not any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)


def apply_xla_cpu_defaults(enabled: bool = True) -> bool:
    """Adds `XLA_CPU_FLAG` to XLA_FLAGS (CPU-only machines, flag not set yet, backends not started yet).

    Returns whether XLA will run with the flag. Importing jax is fine; a jax computation before this call (in a
    notebook, say) means XLA has read XLA_FLAGS already, and the flag is then left out.
    """
    from jax._src import xla_bridge

    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" in flags:
        return XLA_CPU_FLAG in flags
    if not enabled or not cpu_only() or xla_bridge.backends_are_initialized():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {XLA_CPU_FLAG}".strip()
    return True
