"""Vision Transformer (Dosovitskiy et al. 2021) in torchvision's layout: ViT-B/16 by default.

Pre-norm encoder blocks (LayerNorm, multi-head self-attention, residual; LayerNorm, GELU MLP, residual) over the
patch tokens and a learned class token, whose final state feeds one Dense. Submodules carry torchvision's names
(`conv_proj`, `class_token`, `encoder/pos_embedding`, `encoder/encoder_layer_{i}/{ln_1, self_attention, ln_2, mlp}`,
`encoder/ln`, `head`), so pretrained/torch_layouts/vit.py is a short mechanical mapping; the one real difference is
that torch packs q, k and v into one `in_proj_weight`, which Flax's attention keeps as three per-head kernels.

Differences from torchvision that a user may notice:
- Image size is not fixed. The number of patches comes from the input, and the learned position embedding is
  created for the size of the batch given to `init` (torchvision fixes 224x224 at construction); applying the
  model to another size fails with Flax's parameter-shape error rather than resizing the embedding.
- LayerNorm is part of the architecture (epsilon 1e-6, as torchvision), so `config.model.norm` does not apply.
- `stem="cifar"` uses 4x4 patches, so a 32x32 image becomes 8x8 = 64 tokens (as 224 / 16 does 14x14); everything
  else is ViT-B. Its `conv_proj` kernel is 4x4, so ImageNet weights do not load into it.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dl4cv_jax.choices import choose
from dl4cv_jax.models.layers import FLAX_LAYERS, Layers

EPSILON = 1e-6  # torchvision's LayerNorm(eps=1e-6) in every block and the final norm
PATCH_SIZES = {"imagenet": 16, "cifar": 4}

# torchvision's initialisers. The patch projection is a normal with std sqrt(1 / fan_in) (torch truncates at
# +-2 absolute, dozens of standard deviations out, so in effect never).
patch_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
# nn.MultiheadAttention draws the packed (3E, E) in_proj_weight as one xavier_uniform matrix, i.e. variance
# 2 / (E + 3E); Flax initialises q, k and v as separate (E, E) kernels, whose fan_avg is E, hence scale 1/2.
qkv_kernel_init = nn.initializers.variance_scaling(0.5, "fan_avg", "uniform")
# out_proj keeps nn.Linear's default, uniform(+-1 / sqrt(fan_in)): variance 1 / (3 fan_in).
out_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# The MLP: xavier_uniform weights and normal(1e-6) biases.
mlp_kernel_init = nn.initializers.xavier_uniform()
mlp_bias_init = nn.initializers.normal(1e-6)


class MLPBlock(nn.Module):
    """Dense, exact GELU, dropout, Dense, dropout (torchvision's `mlp.0` and `mlp.3`, here `linear_1/2`)."""

    mlp_dim: int
    dropout_rate: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        hidden_dim = x.shape[-1]
        x = nn.Dense(self.mlp_dim, kernel_init=mlp_kernel_init, bias_init=mlp_bias_init, name="linear_1")(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.gelu(x, approximate=False))
        x = nn.Dense(hidden_dim, kernel_init=mlp_kernel_init, bias_init=mlp_bias_init, name="linear_2")(x)
        return nn.Dropout(self.dropout_rate, deterministic=not train)(x)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + Dropout(MHSA(LN(x))), then + MLP(LN(.)). Attention weights are not
    dropped (torchvision's attention_dropout defaults to 0)."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nn.LayerNorm(epsilon=EPSILON, name="ln_1")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            kernel_init=qkv_kernel_init,
            out_kernel_init=out_kernel_init,
            deterministic=True,
            name="self_attention",
        )(y)
        x = x + nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        y = nn.LayerNorm(epsilon=EPSILON, name="ln_2")(x)
        return x + MLPBlock(self.mlp_dim, self.dropout_rate, name="mlp")(y, train)


class Encoder(nn.Module):
    """Adds the learned position embedding (sized from the sequence seen at init), dropout, the blocks, a LayerNorm."""

    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        position = self.param("pos_embedding", nn.initializers.normal(0.02), (1, *x.shape[1:]))  # BERT's std
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x + position)
        for index in range(self.num_layers):
            x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate, name=f"encoder_layer_{index}")(x, train)
        return nn.LayerNorm(epsilon=EPSILON, name="ln")(x)


class VisionTransformer(nn.Module):
    """ViT with torchvision's defaults for ViT-B/16; depth and width are fields so smaller variants can be built.

    `dropout_rate` is torchvision's `dropout`: after adding the position embedding, after each attention, and after
    each of the MLP's two layers; the classifier has none. The head starts at zero, as torchvision's.
    """

    num_outputs: int
    patch_size: int = 16
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    mlp_dim: int = 3072
    dropout_rate: float = 0.0
    layers: Layers = FLAX_LAYERS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        batch, height, width, _ = x.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"ViT: image size {height}x{width} is not a multiple of the patch size {self.patch_size}")
        patch = (self.patch_size, self.patch_size)
        x = self.layers.conv(
            self.hidden_dim, patch, patch, padding="VALID", kernel_init=patch_kernel_init, name="conv_proj"
        )(x)
        # Row-major over (rows, columns) of patches, the order of torch's reshape of its NCHW output.
        x = x.reshape(batch, -1, self.hidden_dim)
        class_token = self.param("class_token", nn.initializers.zeros_init(), (1, 1, self.hidden_dim))
        x = jnp.concatenate([jnp.broadcast_to(class_token, (batch, 1, self.hidden_dim)).astype(x.dtype), x], axis=1)
        x = Encoder(self.num_layers, self.num_heads, self.mlp_dim, self.dropout_rate, name="encoder")(x, train)
        zeros = nn.initializers.zeros_init()
        return nn.Dense(self.num_outputs, kernel_init=zeros, bias_init=zeros, name="head")(x[:, 0])


def build_vit_b_16(
    model_config: ml_collections.ConfigDict, num_outputs: int, layers: Layers = FLAX_LAYERS
) -> nn.Module:
    """ViT-B/16 (12 layers, 12 heads, width 768, MLP 3072).

    `config.model.stem`: imagenet (16x16 patches) or cifar (4x4 patches, for 32x32 images); `dropout_rate` is
    torchvision's `dropout` (see VisionTransformer; torchvision's default is 0.0). `config.model.norm` is ignored:
    the LayerNorms are part of the architecture.
    """
    patch_size = choose(PATCH_SIZES, "model.stem", model_config.stem)
    return VisionTransformer(
        num_outputs=num_outputs, patch_size=patch_size, dropout_rate=float(model_config.dropout_rate), layers=layers
    )


BUILDERS: dict[str, Callable[..., nn.Module]] = {"vit_b_16": build_vit_b_16}
