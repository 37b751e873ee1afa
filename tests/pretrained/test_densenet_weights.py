"""DenseNet loads torchvision's weights exactly; torchvision's published files (old dense-layer key names) load
(the layout renames them, as torchvision's loader does); timm's densenet keys are torchvision's; a foreign file
names the keys that do not fit."""

import re

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
# torchvision's smallest input for DenseNet (its min_size is 29): the stem and three transitions leave 1x1.
IMAGE = (32, 32, 3)


def _fresh(name, num_outputs=1000, **overrides):
    return zeros_like_init(our_model(name, num_outputs, **overrides), IMAGE)


def test_torchvision_densenet121(tmp_path):
    # One depth suffices: the others differ only in growth rate and block lengths, which the parameter counts check.
    # As torch_reference.compare_with_torch, but from _fresh's zeros.
    net = torchvision_models().densenet121(weights=None)
    randomise_batch_norm(net, IMAGE)
    torch.save(net.state_dict(), tmp_path / "densenet121.pth")
    variables, new_head = load_pretrained(tmp_path / "densenet121.pth", "densenet121", _fresh("densenet121"))
    assert new_head == []
    assert_batch_stats_equal(net, variables)
    images = np.random.default_rng(0).standard_normal((2, *IMAGE)).astype(np.float32)
    model = our_model("densenet121", 1000, stem="imagenet")
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
    with torch.no_grad():
        theirs = net(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    difference = float(np.max(np.abs(ours - theirs)))
    assert difference < LOGIT_TOLERANCE, f"max |logit difference| {difference:.2e}"


def test_published_files_old_key_names_load(tmp_path):
    # torchvision's densenet*.pth store `denselayerN.norm.1.weight` where the model has `denselayerN.norm1.weight`.
    state = torchvision_models().densenet121(weights=None).state_dict()
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key): value for key, value in state.items()}
    assert "features.denseblock1.denselayer1.norm.1.running_var" in legacy and len(legacy) == len(state)
    assert "features.denseblock4.denselayer16.conv.2.weight" in legacy
    path = tmp_path / "densenet121-a639ec97.pth"
    torch.save(legacy, path)
    variables, _ = load_pretrained(path, "densenet121", _fresh("densenet121"))
    kernel = variables["params"]["denseblock1"]["denselayer1"]["conv2"]["kernel"]
    assert (kernel == state["features.denseblock1.denselayer1.conv2.weight"].numpy().transpose(2, 3, 1, 0)).all()


def test_timm_densenet_keys_are_torchvisions():
    torchvision_models()  # timm imports torchvision: make that import work first (see torch_reference)
    timm = pytest.importorskip("timm")
    for depth in (121, 161):
        torchvisions = getattr(torchvision_models(), f"densenet{depth}")(weights=None).state_dict()
        timms = timm.create_model(f"densenet{depth}", pretrained=False).state_dict()
        assert {k: v.shape for k, v in timms.items()} == {k: v.shape for k, v in torchvisions.items()}


def test_mismatched_files_name_the_keys(tmp_path):
    state = torchvision_models().densenet121(weights=None).state_dict()
    path = tmp_path / "densenet121.pth"
    torch.save({k: v for k, v in state.items() if k != "features.transition2.conv.weight"}, path)
    with pytest.raises(
        WeightMismatchError, match=r"does not fit the model: 1 missing: features\.transition2\.conv\.weight$"
    ):
        load_pretrained(path, "densenet121", _fresh("densenet121"))
    # densenet169's last two blocks are longer: its extra layers are missing, the later ones wider.
    expected = r"241 missing: features\.denseblock3\.denselayer25\..*; 90 mis-shaped: features\.denseblock4\."
    with pytest.raises(WeightMismatchError, match=expected):
        load_pretrained(path, "densenet169", _fresh("densenet169"))
