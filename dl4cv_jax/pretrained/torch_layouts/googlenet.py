"""torchvision's GoogLeNet names: conv{1,2,3}.{conv,bn}, inception{3a..5b}.branch{1 | k.i}.{conv,bn},
aux{1,2}.{conv.{conv,bn}, fc1, fc2}, fc. Ours mirror them (`branch2_1` for `branch2.1`, `norm` for `bn`).

torchvision's published file holds the auxiliary heads (its loader builds the net with them, then drops them
unless asked), so aux1/aux2 keys are `ignored` when our heads are off; when they are on, the keys are read like
any other. The aux heads' fc1 reads torch's NCHW flatten of their 128x4x4 map.
"""

from dl4cv_jax.models.googlenet import AUX_POOLED_SIZE, AUX_WIDTHS
from dl4cv_jax.pretrained.layout import Source, TorchLayout, VariablePath, nchw_flatten_dense_kernel, standard_source


def torch_module(modules: tuple[str, ...]) -> str:
    """("inception3a", "branch2_1", "norm") -> "inception3a.branch2.1.bn"; ("aux1", "fc1") -> "aux1.fc1"."""
    return ".".join(
        "bn" if name == "norm" else name.replace("_", ".", 1) if name.startswith("branch") else name for name in modules
    )


def source(path: VariablePath) -> Source:
    modules = path[1:-1]
    if modules[0].startswith("aux") and modules[1:] == ("fc1",) and path[-1] == "kernel":
        transform = nchw_flatten_dense_kernel(AUX_WIDTHS[0], *AUX_POOLED_SIZE)
        return Source(f"{modules[0]}.fc1.weight", transform)
    return standard_source(torch_module(modules), path)


LAYOUTS: dict[str, TorchLayout] = {
    "googlenet": TorchLayout(source, head=("fc", "aux1", "aux2"), ignored=(r"num_batches_tracked$", r"^aux[12]\."))
}
