"""torchvision's mobilenet state_dict layout (stub: filled in with the model)."""

from dl4cv_jax.pretrained.layout import TorchLayout

LAYOUTS: dict[str, TorchLayout] = {}
