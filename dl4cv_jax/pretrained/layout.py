"""How one of our variables is found in a PyTorch state_dict: a `Source` (key + transform) per variable path.

Why per variable and not per file format: Flax and PyTorch name and shape the same layer differently (HWIO vs OIHW
kernels, `kernel` vs `weight`, `batch_stats/mean` vs `running_mean`, `layer1_0` vs `layer1.0`), and a few layers
differ in more than names (VGG's NCHW flatten, ViT's packed q/k/v). A family's `TorchLayout` answers, for each of
our variables, which tensor to read and how to turn it into ours; the converter (convert.py) does the rest and
reports missing, unknown and mis-shaped keys together.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]
VariablePath = tuple[str, ...]  # (collection, *module names, leaf), e.g. ("params", "layer1_0", "conv1", "kernel")


def identity(array: np.ndarray) -> np.ndarray:
    return array


def conv_kernel(array: np.ndarray) -> np.ndarray:
    """PyTorch OIHW (depthwise: O,1,H,W) -> Flax HWIO (depthwise: H,W,1,O)."""
    return np.transpose(array, (2, 3, 1, 0))


def dense_kernel(array: np.ndarray) -> np.ndarray:
    """PyTorch Linear (out, in) -> Flax Dense (in, out)."""
    return np.transpose(array)


def nchw_flatten_dense_kernel(channels: int, height: int, width: int) -> Transform:
    """A Linear after torch's NCHW `flatten` -> a Dense after our NHWC reshape: rows reordered (c,h,w) -> (h,w,c)."""

    def transform(array: np.ndarray) -> np.ndarray:
        out = array.shape[0]
        return array.reshape(out, channels, height, width).transpose(2, 3, 1, 0).reshape(height * width * channels, out)

    return transform


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one of our variables comes from: `transform(state_dict[key])`."""

    key: str
    transform: Transform = identity


# Our leaf name -> (PyTorch's attribute name, transform by the array's rank where it matters).
_PARAM_LEAVES = {"scale": "weight", "bias": "bias"}
_STAT_LEAVES = {"mean": "running_mean", "var": "running_var"}


def standard_source(torch_module: str, path: VariablePath) -> Source:
    """The usual rules for the leaf of `path` living in PyTorch module `torch_module` (dotted, e.g. "layer1.0.conv1").

    kernel -> weight (4-D: OIHW -> HWIO; 2-D: transposed), scale -> weight, bias -> bias,
    batch_stats mean/var -> running_mean/running_var. Anything else raises KeyError (a layout must say).
    """
    collection, leaf = path[0], path[-1]
    prefix = f"{torch_module}." if torch_module else ""
    if collection == "batch_stats" and leaf in _STAT_LEAVES:
        return Source(prefix + _STAT_LEAVES[leaf])
    if collection == "params" and leaf == "kernel":
        return Source(prefix + "weight", kernel_by_rank)
    if collection == "params" and leaf in _PARAM_LEAVES:
        return Source(prefix + _PARAM_LEAVES[leaf])
    raise KeyError(f"no standard PyTorch name for {'/'.join(path)}")


def kernel_by_rank(array: np.ndarray) -> np.ndarray:
    """A conv (4-D) or Linear (2-D) weight in our layout; other ranks unchanged."""
    return conv_kernel(array) if array.ndim == 4 else dense_kernel(array) if array.ndim == 2 else array


@dataclasses.dataclass(frozen=True)
class TorchLayout:
    """A family's mapping onto PyTorch's state_dict (torchvision's names unless the docstring of `source` says).

    `source(path)` gives the Source of each of our variables. `head` names our top-level modules that form the
    classifier: when the file's class count differs from ours, these keep their fresh initialisation (transfer
    learning) instead of failing. `ignored` are regular expressions (re.search) for PyTorch keys that have no
    counterpart in ours (`num_batches_tracked`; GoogLeNet's auxiliary heads when ours are off). `rename_keys`, when
    given, first brings a file's keys to today's names (torchvision's published DenseNet files predate them).
    """

    source: Callable[[VariablePath], Source]
    head: tuple[str, ...]
    ignored: tuple[str, ...] = (r"num_batches_tracked$",)
    rename_keys: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
