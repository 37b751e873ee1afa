"""The CIFAR ResNets (ResNet-20..110) in the layout of akamaster/pytorch_resnet_cifar10, the widely used PyTorch
checkpoints: conv1/bn1, layer{1,2,3}.{i}.{conv,bn}{1,2}, linear (option-A shortcuts hold no parameters)."""

from dl4cv_jax.pretrained.layout import Source, TorchLayout, VariablePath, standard_source

_RENAMES = {"norm1": "bn1", "norm2": "bn2", "fc": "linear"}


def torch_module(modules: tuple[str, ...]) -> str:
    """("layer2_1", "norm2") -> "layer2.1.bn2"; ("fc",) -> "linear"."""
    return ".".join(
        name.replace("_", ".", 1) if name.startswith("layer") else _RENAMES.get(name, name) for name in modules
    )


def source(path: VariablePath) -> Source:
    return standard_source(torch_module(path[1:-1]), path)


LAYOUTS: dict[str, TorchLayout] = {
    f"resnet{depth}": TorchLayout(source, head=("fc",)) for depth in (20, 32, 44, 56, 110)
}
