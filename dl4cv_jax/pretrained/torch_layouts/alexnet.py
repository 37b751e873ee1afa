"""torchvision's AlexNet names: `features.{i}` counts every layer (conv, relu, pool) of the feature stack, so our
conv1..conv5 are features.0, 3, 6, 8, 10; fc1..fc3 are classifier.1, 4, 6 (the dropouts hold indices 0 and 3).
fc1 reads torch's NCHW flatten of the 6x6 map. Our CIFAR variant's `fc` has no torchvision counterpart."""

from dl4cv_jax.models.alexnet import FEATURES, POOLED_SIZE
from dl4cv_jax.pretrained.layout import Source, TorchLayout, VariablePath, nchw_flatten_dense_kernel, standard_source

_MODULES = {
    "conv1": "features.0",
    "conv2": "features.3",
    "conv3": "features.6",
    "conv4": "features.8",
    "conv5": "features.10",
    "fc1": "classifier.1",
    "fc2": "classifier.4",
    "fc3": "classifier.6",
}


def source(path: VariablePath) -> Source:
    module = path[1]
    if module == "fc1" and path[-1] == "kernel":
        return Source("classifier.1.weight", nchw_flatten_dense_kernel(FEATURES[-1][0], *POOLED_SIZE))
    return standard_source(_MODULES.get(module, module), path)


LAYOUTS: dict[str, TorchLayout] = {"alexnet": TorchLayout(source, head=("fc3", "fc"))}
