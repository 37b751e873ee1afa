"""Weights from other frameworks' files: PyTorch checkpoints and safetensors, mapped onto our models offline.

`load_pretrained(path, model_name, variables)` is the one entry point; docs/pretrained.md is the user's guide.
"""

import pathlib
from collections.abc import Mapping
from typing import Any

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.pretrained.convert import WeightMismatchError, torch_to_variables
from dl4cv_jax.pretrained.known_files import KNOWN_FILES, download_hint
from dl4cv_jax.pretrained.layouts import layout_for
from dl4cv_jax.pretrained.state_dict import read_state_dict


def load_pretrained(
    path: str | pathlib.Path, model_name: str, variables: Mapping[str, Any], *, allow_new_head: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """(variables of `model_name` read from the file at `path`, head variables left at their init).

    `variables` is a fresh init of the model (its tree and shapes); see convert.torch_to_variables.
    """
    if not pathlib.Path(path).expanduser().is_file():
        raise ConfigError(
            f"config.model.pretrained={str(path)!r}: no such file, and weights are never downloaded at run time; "
            + download_hint(str(path) if str(path) in KNOWN_FILES else model_name)
        )
    arrays, _ = read_state_dict(path)
    return torch_to_variables(arrays, variables, layout_for(model_name), allow_new_head=allow_new_head, name=str(path))


__all__ = ["WeightMismatchError", "load_pretrained", "read_state_dict"]
