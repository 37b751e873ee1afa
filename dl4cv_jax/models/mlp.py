"""A multilayer perceptron: the baseline that shows what convolutions buy."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import ml_collections

from dl4cv_jax.models.layers import FLAX_LAYERS, Layers


class MLP(nn.Module):
    """Flatten, then Dense + ReLU + dropout for each hidden size, then a Dense to the logits."""

    num_outputs: int
    hidden_sizes: Sequence[int] = (256, 128)
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs)(x)


def build_mlp(model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS) -> nn.Module:
    """MLP from `config.model.hidden_sizes` and `dropout_rate`; ignores `norm` and `layers` (no conv, no norm)."""
    return MLP(
        num_outputs=num_outputs,
        hidden_sizes=tuple(int(h) for h in model_config.hidden_sizes),
        dropout_rate=float(model_config.dropout_rate),
    )
