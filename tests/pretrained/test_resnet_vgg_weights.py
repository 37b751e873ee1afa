"""ResNet, VGG and the CIFAR ResNets load PyTorch weights exactly: torchvision's models (random init, saved to a
file) and akamaster/pytorch_resnet_cifar10's layout for ResNet-20..110, written out below from its definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.pretrained import WeightMismatchError, load_pretrained
from tests.pretrained.torch_reference import (
    compare_with_torch,
    our_model,
    randomise_batch_norm,
    torchvision_models,
    zeros_like_init,
)

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

LOGIT_TOLERANCE = 1e-4


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_resnet(tmp_path, name):
    net = getattr(torchvision_models(), name)(weights=None)
    randomise_batch_norm(net, (64, 64, 3))
    assert compare_with_torch(net, name, tmp_path, (64, 64, 3), stem="imagenet") < LOGIT_TOLERANCE


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_torchvision_vgg_reads_the_nchw_flatten(tmp_path, name):
    # 64x64 leaves a 2x2 map that torch's adaptive pool spreads over 7x7, so the flatten order matters.
    net = getattr(torchvision_models(), name)(weights=None)
    randomise_batch_norm(net, (64, 64, 3))
    assert compare_with_torch(net, name, tmp_path, (64, 64, 3), stem="imagenet", dropout_rate=0.0) < LOGIT_TOLERANCE


class _AkamasterBlock(nn.Module):
    """akamaster's BasicBlock with option A: the shortcut subsamples and zero-pads planes // 4 on each side."""

    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if (stride != 1 or in_planes != planes) else 0
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.pad:
            shortcut = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + shortcut)


class _AkamasterResNet(nn.Module):
    def __init__(self, blocks, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes, layers = 16, []
        for stage, width in enumerate((16, 32, 64)):
            stage_blocks = []
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                stage_blocks.append(_AkamasterBlock(planes, width, stride))
                planes = width
            layers.append(nn.Sequential(*stage_blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def test_cifar_resnet20_in_akamaster_layout(tmp_path):
    torch.manual_seed(0)
    net = _AkamasterResNet(blocks=3)
    randomise_batch_norm(net, (32, 32, 3))
    # Saved as akamaster's files are: inside DataParallel ("module." prefix), under "state_dict".
    path = tmp_path / "resnet20.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "best_prec1": 0.0}, path)
    model = our_model("resnet20", 10)
    images = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype(np.float32)
    variables, new_head = load_pretrained(path, "resnet20", zeros_like_init(model, (32, 32, 3)))
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(images)))
    with torch.no_grad():
        theirs = net(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    assert new_head == []
    assert np.max(np.abs(ours - theirs)) < LOGIT_TOLERANCE


def _resnet18_file(tmp_path, num_classes=1000):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_models().resnet18(weights=None, num_classes=num_classes).state_dict(), path)
    return path


def _fresh(name, num_outputs, **overrides):
    model = our_model(name, num_outputs, **overrides)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))


def test_another_class_count_keeps_a_fresh_head_only_when_allowed(tmp_path):
    path = _resnet18_file(tmp_path)
    fresh = _fresh("resnet18", 7)
    with pytest.raises(
        WeightMismatchError,
        match=r"2 mis-shaped: fc\.bias \(1000,\) -> ours \(7,\), fc\.weight \(1000, 512\) -> ours \(512, 7\)",
    ):
        load_pretrained(path, "resnet18", fresh)
    variables, new_head = load_pretrained(path, "resnet18", fresh, allow_new_head=True)
    assert sorted(new_head) == ["params/fc/bias", "params/fc/kernel"]
    assert variables["params"]["fc"]["kernel"] is fresh["params"]["fc"]["kernel"]


def test_a_file_of_another_architecture_lists_missing_unknown_and_misshaped_keys(tmp_path):
    path = _resnet18_file(tmp_path)
    with pytest.raises(WeightMismatchError, match=r"165 missing: layer1\.0\.bn3\.running_mean.*mis-shaped: "):
        load_pretrained(path, "resnet50", _fresh("resnet50", 1000), allow_new_head=True)
    state = torch.load(path)
    torch.save({**state, "extra.weight": torch.zeros(3)}, path)
    with pytest.raises(WeightMismatchError, match=r"does not fit the model: 1 unknown: extra\.weight$"):
        load_pretrained(path, "resnet18", _fresh("resnet18", 1000))
    # A mis-shaped backbone tensor is never taken for a new head.
    with pytest.raises(WeightMismatchError, match=r"mis-shaped: conv1\.weight \(64, 3, 7, 7\) -> ours \(3, 3, 3, 64\)"):
        load_pretrained(path, "resnet18", _fresh("resnet18", 1000, stem="cifar"), allow_new_head=True)


def test_models_without_a_layout_are_named(tmp_path):
    path = _resnet18_file(tmp_path)
    with pytest.raises(Exception, match=r"config\.model\.name \(for model\.pretrained\)='lenet'.*choose one of"):
        load_pretrained(path, "lenet", {})


def test_a_bare_model_name_says_which_file_to_download():
    expected = r"'resnet50': no such file.*never downloaded.*download https://download\.pytorch\.org/models/resnet50-"
    with pytest.raises(ConfigError, match=expected):
        load_pretrained("resnet50", "resnet18", {})  # the name given, not the config's model, names the file
