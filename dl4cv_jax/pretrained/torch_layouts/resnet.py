"""torchvision's ResNet-18..152 names (timm's resnet* use the same): conv1/bn1, layer{s}.{i}.{conv,bn}{k},
layer{s}.{i}.downsample.{0,1}, fc."""

from dl4cv_jax.pretrained.layout import Source, TorchLayout, VariablePath, standard_source

_RENAMES = {
    "norm1": "bn1",
    "norm2": "bn2",
    "norm3": "bn3",
    "shortcut_conv": "downsample.0",
    "shortcut_norm": "downsample.1",
}


def torch_module(modules: tuple[str, ...]) -> str:
    """("layer1_0", "norm1") -> "layer1.0.bn1"; ("norm1",) -> "bn1"."""
    return ".".join(
        _RENAMES.get(name, name).replace("_", ".", 1) if name.startswith("layer") else _RENAMES.get(name, name)
        for name in modules
    )


def source(path: VariablePath) -> Source:
    return standard_source(torch_module(path[1:-1]), path)


LAYOUTS: dict[str, TorchLayout] = {
    f"resnet{depth}": TorchLayout(source, head=("fc",)) for depth in (18, 34, 50, 101, 152)
}
