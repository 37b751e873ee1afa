"""Image classifiers: `create_model(config.model, num_outputs)` builds any name in `MODELS`.

Every model is called as `model.apply(variables, x, train=...)` on float32 NHWC images that are already
normalised, and returns logits of shape [batch, num_outputs].
"""

from dl4cv_jax.models.registry import MODELS, create_model

__all__ = ["MODELS", "create_model"]
