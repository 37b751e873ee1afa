"""torchvision's DenseNet names: everything but the classifier lives under `features.`, with our module names
(`features.denseblock1.denselayer1.norm1`, `features.transition1.conv`, `features.norm5`); `classifier` is the
Linear. timm's densenet121..201 save the same keys.

The files torchvision publishes (densenet121-a639ec97.pth and its siblings) predate those names: a dense layer's
norms and convs are stored as `norm.1`, `conv.2`, ... and torchvision renames them while loading (its
`_load_state_dict`). `current_keys` is that rename, for a loader to apply to such a file's keys; a state_dict saved
from a torchvision or timm model already has the current names.
"""

import re

import numpy as np

from dl4cv_jax.pretrained.layout import Source, TorchLayout, VariablePath, standard_source

# torchvision's pattern for the old names: `...denselayerN.norm.1.weight` -> `...denselayerN.norm1.weight`.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def current_keys(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`arrays` with torchvision's pre-0.3 dense-layer keys (`norm.1`, `conv.2`) renamed to today's."""
    return {_LEGACY_KEY.sub(r"\1\2", key): value for key, value in arrays.items()}


def source(path: VariablePath) -> Source:
    modules = path[1:-1]
    prefix = () if modules[0] == "classifier" else ("features",)
    return standard_source(".".join(prefix + modules), path)


LAYOUTS: dict[str, TorchLayout] = {
    f"densenet{depth}": TorchLayout(source, head=("classifier",), rename_keys=current_keys)
    for depth in (121, 161, 169, 201)
}
