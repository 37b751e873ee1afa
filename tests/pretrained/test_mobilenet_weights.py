"""MobileNetV2 and V3-Small/Large load torchvision's weights exactly; a file that does not fit names its keys."""

import jax
import numpy as np
import pytest

from dl4cv_jax.pretrained import WeightMismatchError, load_pretrained
from tests.pretrained.torch_reference import (
    assert_batch_stats_equal,
    our_model,
    randomise_batch_norm,
    torchvision_models,
    zeros_like_init,
)

torch = pytest.importorskip("torch")

LOGIT_TOLERANCE = 1e-4
# MobileNets take any size, but at 32x32 the last stage would see 1x1 maps, where a depthwise conv uses only its
# centre tap and a flipped or transposed kernel would pass; 64x64 leaves 2x2.
IMAGE = (64, 64, 3)


def _fresh(name, num_outputs=1000, **overrides):
    return zeros_like_init(our_model(name, num_outputs, **overrides), IMAGE)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"])
def test_torchvision_mobilenet(tmp_path, name):
    # As torch_reference.compare_with_torch, but from _fresh's zeros. Dropout is on, and must be off in eval mode.
    net = getattr(torchvision_models(), name)(weights=None)
    randomise_batch_norm(net, IMAGE)
    if name != "mobilenet_v2":  # two normal(0, 0.01) Linears leave V3's logits at ~0.02, too small to show much
        with torch.no_grad():
            for linear in (net.classifier[0], net.classifier[3]):
                linear.weight.normal_(0.0, 2.0 / linear.in_features**0.5, generator=torch.Generator().manual_seed(0))
    torch.save(net.state_dict(), tmp_path / f"{name}.pth")
    variables, new_head = load_pretrained(tmp_path / f"{name}.pth", name, _fresh(name))
    assert new_head == []
    assert_batch_stats_equal(net, variables)
    images = np.random.default_rng(0).standard_normal((2, *IMAGE)).astype(np.float32)
    model = our_model(name, 1000, stem="imagenet", dropout_rate=0.2)
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
    with torch.no_grad():
        theirs = net(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    difference = float(np.max(np.abs(ours - theirs)))
    assert difference < LOGIT_TOLERANCE, f"max |logit difference| {difference:.2e}"


def test_mismatched_files_name_the_keys(tmp_path):
    state = torchvision_models().mobilenet_v3_small(weights=None).state_dict()
    path = tmp_path / "mobilenet_v3_small.pth"
    torch.save({k: v for k, v in state.items() if k != "features.4.block.2.fc1.weight"}, path)
    with pytest.raises(
        WeightMismatchError, match=r"does not fit the model: 1 missing: features\.4\.block\.2\.fc1\.weight$"
    ):
        load_pretrained(path, "mobilenet_v3_small", _fresh("mobilenet_v3_small"))
    torch.save({**state, "features.1.block.0.0.weight": torch.zeros(16, 1, 5, 5)}, path)
    expected = r"1 mis-shaped: features\.1\.block\.0\.0\.weight \(16, 1, 5, 5\) -> ours \(3, 3, 1, 16\)$"
    with pytest.raises(WeightMismatchError, match=expected):
        load_pretrained(path, "mobilenet_v3_small", _fresh("mobilenet_v3_small"))
    # Another class count: only the classifier (classifier.3) starts fresh; the hidden Linear before it loads.
    torch.save(state, path)
    variables, new_head = load_pretrained(
        path, "mobilenet_v3_small", _fresh("mobilenet_v3_small", 10), allow_new_head=True
    )
    assert sorted(new_head) == ["params/classifier/bias", "params/classifier/kernel"]
    np.testing.assert_array_equal(variables["params"]["hidden"]["kernel"], state["classifier.0.weight"].numpy().T)
