"""Model name -> how its variables are named in PyTorch checkpoints (one module per family in torch_layouts/)."""

from dl4cv_jax.choices import choose
from dl4cv_jax.pretrained.layout import TorchLayout
from dl4cv_jax.pretrained.torch_layouts import alexnet, cifar_resnet, densenet, googlenet, mobilenet, resnet, vgg, vit

LAYOUTS: dict[str, TorchLayout] = {
    **resnet.LAYOUTS,
    **cifar_resnet.LAYOUTS,
    **vgg.LAYOUTS,
    **alexnet.LAYOUTS,
    **googlenet.LAYOUTS,
    **densenet.LAYOUTS,
    **mobilenet.LAYOUTS,
    **vit.LAYOUTS,
}


def layout_for(model_name: str) -> TorchLayout:
    """The layout of `config.model.name`; a model without one raises ConfigError listing those that have one."""
    return choose(LAYOUTS, "model.name (for model.pretrained)", model_name)
