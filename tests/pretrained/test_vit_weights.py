"""torchvision's ViT-B/16 loads exactly: a randomly initialised torchvision model, saved to a file, read through
load_pretrained gives the same logits; q/k/v split from torch's packed in_proj_weight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl4cv_jax.models.vit import VisionTransformer
from dl4cv_jax.pretrained import WeightMismatchError, load_pretrained
from tests.pretrained.torch_reference import our_model, torchvision_models, zeros_like_init

torch = pytest.importorskip("torch")

LOGIT_TOLERANCE = 1e-4


def randomise(net, seed: int = 0) -> None:
    """Non-trivial values where torchvision starts at a constant (LayerNorm scales, biases, class token, the zero
    head), so a swapped or dropped tensor changes the logits. ViT has no BatchNorm (no randomise_batch_norm)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.named_parameters():
            noise = torch.randn(tensor.shape, generator=generator)
            if ".ln" in name and name.endswith("weight"):
                tensor.copy_(1.0 + 0.25 * noise)
            elif name.endswith("bias") or name == "class_token":
                tensor.copy_(0.1 * noise)
            elif name.startswith("heads"):
                tensor.copy_(0.05 * noise)
    net.eval()


def max_logit_difference(net, model, tmp_path, image_shape, batch: int = 2) -> float:
    """Saves `net`'s state_dict, loads it into `model` as vit_b_16 weights, returns max |logit difference|."""
    path = tmp_path / "vit.pth"
    torch.save(net.state_dict(), path)
    variables, new_head = load_pretrained(path, "vit_b_16", zeros_like_init(model, image_shape))
    assert new_head == []
    images = np.random.default_rng(0).standard_normal((batch, *image_shape)).astype(np.float32)
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(images)))
    with torch.no_grad():
        theirs = net(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    return float(np.max(np.abs(ours - theirs)))


def test_torchvision_vit_b_16_at_224(tmp_path):
    torch.manual_seed(0)
    net = torchvision_models().vit_b_16(weights=None)
    randomise(net)
    assert max_logit_difference(net, our_model("vit_b_16", 1000), tmp_path, (224, 224, 3)) < LOGIT_TOLERANCE


# One small layer with vit_b_16's 12 heads, for the error messages.
SMALL = dict(num_layers=1, hidden_dim=96, mlp_dim=192)


def small_vit_file(tmp_path, num_classes: int = 1000, edit=None):
    torch.manual_seed(0)
    net = torchvision_models().VisionTransformer(
        image_size=32, patch_size=16, num_heads=12, num_classes=num_classes, **SMALL
    )
    state = net.state_dict()
    if edit:
        edit(state)
    path = tmp_path / "small_vit.pth"
    torch.save(state, path)
    return path


def small_shapes(num_outputs: int = 1000):
    model = VisionTransformer(num_outputs=num_outputs, **SMALL)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))


def test_missing_and_misshaped_keys_are_named(tmp_path):
    block = "encoder.layers.encoder_layer_0."

    def edit(state):
        del state[block + "ln_2.weight"]
        state[block + "self_attention.in_proj_weight"] = state[block + "self_attention.in_proj_weight"][:-3]

    path = small_vit_file(tmp_path, edit=edit)
    expected = (
        rf"1 missing: {block}ln_2\.weight; "
        rf"3 mis-shaped: {block}self_attention\.in_proj_weight \(285, 96\) -> ours \(96, 12, 8\)"
    )
    with pytest.raises(WeightMismatchError, match=expected):
        load_pretrained(path, "vit_b_16", small_shapes())


def test_another_class_count_keeps_a_fresh_head(tmp_path):
    path = small_vit_file(tmp_path, num_classes=1000)
    _, new_head = load_pretrained(path, "vit_b_16", small_shapes(10), allow_new_head=True)
    assert sorted(new_head) == ["params/head/bias", "params/head/kernel"]
