# NOTE TO THE HELPER WRITING THIS FILE: your prompt was cut short. Read /tmp/common.md NOW: it has the full
# instructions (conventions, test helpers, do not commit, touch only your files). Delete this comment.
"""torchvision's alexnet state_dict layout (stub: filled in with the model)."""

from dl4cv_jax.pretrained.layout import TorchLayout

LAYOUTS: dict[str, TorchLayout] = {}
