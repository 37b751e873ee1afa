"""Reads a weight file into {key: numpy array}: PyTorch checkpoints through torch, safetensors without it.

Why torch is imported only here and only for `.pth/.pt/.th`: a PyTorch checkpoint is a pickle whose tensors only
torch can rebuild (and torch is an optional extra); a `.safetensors` file is plain named arrays, read by the
`safetensors` package alone. `python -m dl4cv_jax.pretrained.to_safetensors IN OUT` converts once, where torch is.
Nothing here touches the network: a missing file is an error that says where to put it.
"""

import pathlib

import numpy as np

from dl4cv_jax.choices import ConfigError

TORCH_SUFFIXES = (".pth", ".pt", ".th", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")  # dicts some trainers save around the weights


def read_state_dict(path: str | pathlib.Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays by PyTorch key, metadata) of a weight file; `module.` prefixes (DataParallel) are removed.

    Metadata: the safetensors header's `__metadata__` (our converter stores the preprocessing there); {} for torch.
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"config.model.pretrained={str(path)!r}: no such file. Weights are never downloaded at run time: "
            "fetch the file on a machine with network access (docs/pretrained.md lists where) and copy it here"
        )
    if path.suffix == SAFETENSORS_SUFFIX:
        arrays, metadata = _read_safetensors(path)
    elif path.suffix in TORCH_SUFFIXES:
        arrays, metadata = _read_torch(path), {}
    else:
        accepted = ", ".join((*TORCH_SUFFIXES, SAFETENSORS_SUFFIX))
        raise ConfigError(f"config.model.pretrained={str(path)!r}: unknown weight file type; choose one of: {accepted}")
    return strip_prefix(arrays, "module."), metadata


def strip_prefix(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Removes `prefix` where every key carries it (a model saved inside DataParallel)."""
    if arrays and all(key.startswith(prefix) for key in arrays):
        return {key[len(prefix) :]: value for key, value in arrays.items()}
    return arrays


def _read_safetensors(path: pathlib.Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            return {key: np.asarray(handle.get_tensor(key)) for key in handle.keys()}, metadata
    except Exception as error:  # the package raises its own types for truncated or foreign files
        raise ConfigError(
            f"config.model.pretrained={str(path)!r} is not a readable safetensors file: {error}"
        ) from None


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ConfigError(
            f"config.model.pretrained={str(path)!r} is a PyTorch file, which needs torch: `pip install torch==2.13.0` "
            "(the CPU wheel), or convert it once with `python -m dl4cv_jax.pretrained.to_safetensors` where torch is"
        ) from None
    try:
        # weights_only: tensors and plain containers only, never arbitrary code from a pickle.
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(f"config.model.pretrained={str(path)!r} could not be read by torch.load: {error}") from None
    state = unwrap_checkpoint(checkpoint, str(path))
    return {
        key: value.detach().float().numpy() if value.is_floating_point() else value.numpy()
        for key, value in state.items()
        if hasattr(value, "numpy")
    }


def unwrap_checkpoint(checkpoint: object, name: str) -> dict:
    """The state_dict itself, or the one held under a usual wrapper key ({"state_dict": ...}, {"model": ...})."""
    if isinstance(checkpoint, dict):
        for key in WRAPPER_KEYS:
            inner = checkpoint.get(key)
            if isinstance(inner, dict) and inner:
                return inner
        if any(hasattr(value, "numpy") for value in checkpoint.values()):
            return checkpoint
    kind = type(checkpoint).__name__
    raise ConfigError(
        f"config.model.pretrained={name!r} holds a {kind}, not a state_dict (nor one under "
        f"{', '.join(WRAPPER_KEYS)}); save `model.state_dict()`, not the model"
    )
