"""Where a run's first weights come from: a fresh init, a weight file (`config.model.pretrained`), or one of our
own runs (`config.model.init_from`, its best checkpoint).

Why both go through the same converter: a warm start is a mapping from someone's names and shapes onto our fresh
variables, and the errors a user needs (missing, unknown, mis-shaped keys; another class count) are the same
whether the file came from PyTorch or from an earlier run of ours. When only the classifier's shape differs (a
new task), the head keeps its fresh init and the log names it.
"""

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.pretrained import load_pretrained
from dl4cv_jax.pretrained.convert import torch_to_variables
from dl4cv_jax.pretrained.layout import Source, TorchLayout, VariablePath
from dl4cv_jax.pretrained.layouts import LAYOUTS
from dl4cv_jax.train.checkpoints import BEST


def initial_variables(model_config: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
    """`variables` (a fresh init of `model_config.name`) with the weights the config asks to start from."""
    pretrained, init_from = model_config.get("pretrained", ""), model_config.get("init_from", "")
    if pretrained and init_from:
        raise ConfigError(
            f"config.model.pretrained={pretrained!r} and config.model.init_from={init_from!r}: set one of them"
        )
    if pretrained:
        loaded, new_head = load_pretrained(pretrained, model_config.name, variables, allow_new_head=True)
        source = pretrained
    elif init_from:
        loaded, new_head = restore_best_variables(pathlib.Path(init_from), model_config.name, variables)
        source = f"{init_from} (best checkpoint)"
    else:
        return dict(variables)
    logging.info("Initialised %s from %s", model_config.name, source)
    if new_head:
        logging.info("The class count differs: the classifier keeps its fresh init (%s)", ", ".join(new_head))
    return loaded


def restore_best_variables(
    workdir: pathlib.Path, model_name: str, variables: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Params and BatchNorm statistics of `workdir`'s best checkpoint onto `variables` (the head may differ)."""
    directory = (workdir / "checkpoints" / BEST).absolute()
    if not directory.is_dir():  # checked first: opening a manager would create the folder
        raise ConfigError(f"config.model.init_from={str(workdir)!r}: no best checkpoint in {directory}")
    manager = ocp.CheckpointManager(directory, item_handlers={"state": ocp.StandardCheckpointHandler()})
    try:
        step = manager.latest_step()
        if step is None:
            raise ConfigError(f"config.model.init_from={str(workdir)!r}: no best checkpoint in {directory}")
        saved = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    finally:
        manager.close()
    arrays = {
        "/".join((collection, *path)): np.asarray(value)
        for collection in ("params", "batch_stats")
        for path, value in traverse_util.flatten_dict(dict(saved.get(collection) or {})).items()
    }
    same_names = TorchLayout(source=_same_name, head=_head(model_name, variables))
    return torch_to_variables(arrays, variables, same_names, allow_new_head=True, name=str(workdir))


def _same_name(path: VariablePath) -> Source:
    return Source("/".join(path))


def _head(model_name: str, variables: Mapping[str, Any]) -> tuple[str, ...]:
    """The classifier's top-level modules: the family's layout says; our small models call theirs `fc` (cnn),
    `fc3` (lenet) or leave Flax's last auto-named `Dense_k` (mlp). Not dict order: a jitted init sorts the keys."""
    if model_name in LAYOUTS:
        return LAYOUTS[model_name].head
    names = list(variables["params"])
    for name in ("fc", "fc3"):
        if name in names:
            return (name,)
    dense = sorted((n for n in names if n.startswith("Dense_")), key=lambda n: int(n.split("_")[1]))
    return tuple(dense[-1:])
