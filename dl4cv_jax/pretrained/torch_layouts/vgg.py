"""torchvision's VGG names: `features.{i}` counts every layer (conv, [bn], relu, pool) of the feature stack,
`classifier.{0,3,6}` are the three Linears; the first reads torch's NCHW flatten of the 7x7 map."""

from dl4cv_jax.models.vgg import LAYOUTS as VGG_LAYOUTS
from dl4cv_jax.models.vgg import POOL
from dl4cv_jax.pretrained.layout import Source, TorchLayout, VariablePath, nchw_flatten_dense_kernel, standard_source


def feature_indices(layout: tuple, batch_norm: bool) -> dict[int, tuple[int, int]]:
    """conv number (1-based, as our `conv{k}`/`norm{k}`) -> (torch index of the conv, of its BatchNorm)."""
    indices, position, conv = {}, 0, 0
    for item in layout:
        if item == POOL:
            position += 1
            continue
        conv += 1
        indices[conv] = (position, position + 1)
        position += 3 if batch_norm else 2  # conv, [bn], relu
    return indices


def vgg_layout(depth: int, batch_norm: bool) -> TorchLayout:
    indices = feature_indices(VGG_LAYOUTS[depth], batch_norm)
    last_width = [item for item in VGG_LAYOUTS[depth] if item != POOL][-1]

    def source(path: VariablePath) -> Source:
        module = path[1]
        if module.startswith("conv"):
            return standard_source(f"features.{indices[int(module[4:])][0]}", path)
        if module.startswith("norm"):
            return standard_source(f"features.{indices[int(module[4:])][1]}", path)
        linear = {"fc1": "classifier.0", "fc2": "classifier.3", "fc3": "classifier.6"}[module]
        if module == "fc1" and path[-1] == "kernel":
            return Source(f"{linear}.weight", nchw_flatten_dense_kernel(last_width, 7, 7))
        return standard_source(linear, path)

    return TorchLayout(source, head=("fc3",))


LAYOUTS: dict[str, TorchLayout] = {
    f"vgg{depth}{'_bn' if bn else ''}": vgg_layout(depth, bn) for depth in (11, 13, 16, 19) for bn in (False, True)
}
