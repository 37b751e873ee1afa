"""torchvision's AlexNet loads exactly, including fc1's reading of torch's NCHW flatten; a bad file names its keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl4cv_jax.pretrained import WeightMismatchError, load_pretrained
from tests.pretrained.torch_reference import our_model, torchvision_models, zeros_like_init

torch = pytest.importorskip("torch")

LOGIT_TOLERANCE = 1e-4


def he_initialised_alexnet(num_classes: int = 1000):
    """torchvision's AlexNet with He-scaled weights and random biases: its default init shrinks the signal at each
    layer (logits near 0.01), which would let a 1e-4 tolerance pass a wrong weight order. Built on the meta device
    and filled once, so the 61 M parameters are drawn once."""
    with torch.device("meta"):
        net = torchvision_models().alexnet(weights=None, num_classes=num_classes)
    net = net.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * (2 / fan_in) ** 0.5)
                layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=generator))
        net.classifier[-1].weight.mul_(0.25)  # logits of order 1, the scale the 1e-4 tolerance is meant for
    return net.eval()


def _fresh(model, side: int = 63):
    return zeros_like_init(model, (side, side, 3))


def test_torchvision_alexnet_reads_the_nchw_flatten(tmp_path):
    # 99x99 leaves a 2x2 map after the third pool, which the adaptive pool spreads over 6x6: fc1's rows are read
    # in torch's (channel, row, column) order, so a missing reorder shows.
    net = he_initialised_alexnet()
    path = tmp_path / "alexnet.pth"
    torch.save(net.state_dict(), path)
    model = our_model("alexnet", 1000, stem="imagenet", dropout_rate=0.0)
    variables, new_head = load_pretrained(path, "alexnet", _fresh(model))
    images = np.random.default_rng(0).standard_normal((2, 99, 99, 3)).astype(np.float32)
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(images)))
    with torch.no_grad():
        theirs = net(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    assert new_head == []
    assert theirs.std() > 0.3  # logits large enough for the tolerance to mean something
    assert np.max(np.abs(ours - theirs)) < LOGIT_TOLERANCE


def _zeros_state_dict() -> dict:
    with torch.device("meta"):
        shapes = torchvision_models().alexnet(weights=None).state_dict()
    return {key: torch.zeros(value.shape) for key, value in shapes.items()}


def test_a_bad_file_names_missing_and_misshaped_keys(tmp_path):
    state = _zeros_state_dict()
    del state["features.3.bias"]
    state["classifier.4.weight"] = state["classifier.4.weight"][:, :100]
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    expected = (
        r"1 missing: features\.3\.bias; "
        r"1 mis-shaped: classifier\.4\.weight \(4096, 100\) -> ours \(4096, 4096\)$"
    )
    with pytest.raises(WeightMismatchError, match=expected):
        load_pretrained(path, "alexnet", _fresh(our_model("alexnet", 1000, stem="imagenet")))


def test_the_cifar_variant_does_not_take_torchvisions_file(tmp_path):
    path = tmp_path / "alexnet.pth"
    torch.save(_zeros_state_dict(), path)
    with pytest.raises(WeightMismatchError, match=r"missing: fc\.bias, fc\.weight.*mis-shaped: features\.0\.weight"):
        load_pretrained(path, "alexnet", _fresh(our_model("alexnet", 10, stem="cifar"), 32), allow_new_head=True)
