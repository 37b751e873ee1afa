"""torchvision's ViT names: conv_proj, class_token, encoder.pos_embedding,
encoder.layers.encoder_layer_{i}.{ln_1, self_attention, ln_2, mlp.{0,3}}, encoder.ln, heads.head.

torch's nn.MultiheadAttention packs q, k and v into one `in_proj_weight` (3E, E) and `in_proj_bias` (3E,), and
keeps its heads inside the feature axis; Flax's attention has per-head kernels: query/key/value (E, heads, E/heads)
and out (heads, E/heads, E). So three of our leaves read thirds of one torch tensor, each split into heads.
"""

from collections.abc import Callable

import numpy as np

from dl4cv_jax.pretrained.layout import Source, TorchLayout, Transform, VariablePath, standard_source

_QKV = ("query", "key", "value")
_MLP = {"linear_1": "mlp.0", "linear_2": "mlp.3"}


def packed_projection(index: int, num_heads: int) -> Transform:
    """Third `index` (q, k, v) of in_proj_weight (3E, E) -> (E, heads, E/heads), or of in_proj_bias -> (heads, E/heads).

    An array that cannot be split so is returned whole, for the converter to report as mis-shaped.
    """

    def transform(array: np.ndarray) -> np.ndarray:
        packed = array.shape[0]
        if packed % 3 or (packed // 3) % num_heads or array.ndim not in (1, 2):
            return array
        part = array[index * packed // 3 : (index + 1) * packed // 3]
        heads = (num_heads, packed // 3 // num_heads)
        return part.reshape(heads) if part.ndim == 1 else part.T.reshape(part.shape[1], *heads)

    return transform


def out_projection(num_heads: int) -> Transform:
    """out_proj.weight (E_out, E_in) -> (heads, E_in/heads, E_out); a shape that does not split is returned whole."""

    def transform(array: np.ndarray) -> np.ndarray:
        if array.ndim != 2 or array.shape[1] % num_heads:
            return array
        return array.T.reshape(num_heads, array.shape[1] // num_heads, array.shape[0])

    return transform


def vit_source(num_heads: int) -> Callable[[VariablePath], Source]:
    def source(path: VariablePath) -> Source:
        modules, leaf = path[1:-1], path[-1]
        if not modules:
            return Source(leaf)  # class_token
        if modules == ("head",):
            return standard_source("heads.head", path)
        if modules[0] != "encoder":
            return standard_source(".".join(modules), path)  # conv_proj
        if len(modules) == 1:
            return Source("encoder.pos_embedding")
        if len(modules) == 2 and modules[1] == "ln":
            return standard_source("encoder.ln", path)
        block = f"encoder.layers.{modules[1]}"
        if modules[2] == "mlp":
            return standard_source(f"{block}.{_MLP[modules[3]]}", path)
        if modules[2] != "self_attention":
            return standard_source(f"{block}.{modules[2]}", path)  # ln_1, ln_2
        attention = f"{block}.self_attention"
        if modules[3] == "out":
            if leaf == "kernel":
                return Source(f"{attention}.out_proj.weight", out_projection(num_heads))
            return standard_source(f"{attention}.out_proj", path)
        packed = "in_proj_weight" if leaf == "kernel" else "in_proj_bias"
        return Source(f"{attention}.{packed}", packed_projection(_QKV.index(modules[3]), num_heads))

    return source


LAYOUTS: dict[str, TorchLayout] = {"vit_b_16": TorchLayout(vit_source(num_heads=12), head=("head",))}
