"""torchvision's MobileNetV2/V3 names: `features.0` is the stem (`.0` conv, `.1` BatchNorm), `features.{i}` our
`block{i}`, the next index the last conv; V2's Linear is `classifier.1`, V3's two are `classifier.0` and `.3`.

Inside a block torchvision numbers the parts it has: V2's `conv.{k}` = [expansion (conv, norm)], depthwise (conv,
norm), then the projection's conv and norm as two entries; V3's `block.{k}` = [expansion], depthwise,
[squeeze-excitation (`fc1`, `fc2`: 1x1 convs, our Dense layers)], projection, each conv/norm pair as `.0`/`.1`.
"""

import numpy as np

from dl4cv_jax.models.mobilenet import ARCHITECTURES, BlockConfig
from dl4cv_jax.pretrained.layout import Source, TorchLayout, VariablePath, standard_source


def pointwise_dense_kernel(array: np.ndarray) -> np.ndarray:
    """A 1x1 conv's weight (out, in, 1, 1) -> a Dense kernel (in, out)."""
    return array[:, :, 0, 0].T


def block_parts(block: BlockConfig) -> list[str]:
    """The parts of a block in torchvision's order, named as ours (`expand_conv` is part "expand")."""
    expand = ["expand"] if block.expanded != block.in_channels else []
    return [*expand, "depthwise", *(["se"] if block.use_se else []), "project"]


def mobilenet_layout(name: str) -> TorchLayout:
    blocks = ARCHITECTURES[name][0]
    v2 = name == "mobilenet_v2"
    last = f"features.{len(blocks) + 1}"
    top = {"stem_conv": "features.0.0", "stem_norm": "features.0.1", "last_conv": f"{last}.0"}
    top |= {"last_norm": f"{last}.1", "hidden": "classifier.0", "classifier": "classifier.1" if v2 else "classifier.3"}

    def source(path: VariablePath) -> Source:
        module = path[1]
        if module in top:
            return standard_source(top[module], path)
        index = int(module.removeprefix("block"))
        part, kind = path[2].rsplit("_", 1) if path[2] != "se" else ("se", path[3])
        position = block_parts(blocks[index - 1]).index(part)
        prefix = f"features.{index}.{'conv' if v2 else 'block'}.{position}"
        if part == "se" and path[-1] == "kernel":
            return Source(f"{prefix}.{kind}.weight", pointwise_dense_kernel)
        if part == "se":
            return standard_source(f"{prefix}.{kind}", path)
        if v2 and part == "project":  # a bare conv and norm, not a Conv2dNormActivation
            return standard_source(f"features.{index}.conv.{position + (kind == 'norm')}", path)
        return standard_source(f"{prefix}.{0 if kind == 'conv' else 1}", path)

    return TorchLayout(source, head=("classifier",))


LAYOUTS: dict[str, TorchLayout] = {name: mobilenet_layout(name) for name in ARCHITECTURES}
