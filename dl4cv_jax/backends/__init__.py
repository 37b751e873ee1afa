"""The one seam between the research code and hardware-specific speed work: `config.backend`.

- 'xla': Flax's own layers (`models.layers.FLAX_LAYERS`), compiled by XLA for whatever platform jax runs on.
- 'cpu': the same variables, computed by `backends/cpu/` (oneDNN kernels, XLA:CPU workarounds).
- 'auto' (default): 'cpu' on a single CPU device, 'xla' everywhere else (GPUs, TPUs, several CPU devices).

Only the trainer calls `model_layers`; a model receives the result as its `layers` field and never learns which
backend it runs on. Nothing here imports jax, flax or the CPU package until it is asked for (so that
`backends.cpu.allocator` can restart the process before jax is loaded).
"""

from typing import TYPE_CHECKING

from dl4cv_jax.choices import ConfigError, choose

if TYPE_CHECKING:
    from dl4cv_jax.models.layers import Layers

BACKENDS = {"auto": "auto", "xla": "xla", "cpu": "cpu"}


def resolve_backend(name: str, platform: str | None = None, device_count: int | None = None) -> str:
    """'xla' or 'cpu' for `config.backend=name` on `platform` with `device_count` devices (default: jax's)."""
    choose(BACKENDS, "backend", name)
    if platform is None or device_count is None:
        import jax

        platform, device_count = jax.default_backend(), jax.device_count()
    if name == "auto":
        return "cpu" if platform == "cpu" and device_count == 1 else "xla"
    if name == "cpu" and platform != "cpu":
        raise ConfigError(f"config.backend='cpu' needs jax's CPU platform, not {platform!r}; choose one of: auto, xla")
    return name


def model_layers(name: str) -> "Layers":
    """The layers the model builder gets for `config.backend=name` (see the module docstring)."""
    if resolve_backend(name) == "xla":
        from dl4cv_jax.models.layers import FLAX_LAYERS

        return FLAX_LAYERS
    from dl4cv_jax.backends.cpu.layers import cpu_layers

    return cpu_layers()
