"""timm checkpoints of families whose layout equals torchvision's load through the same path, exactly."""

import pytest

from tests.pretrained.torch_reference import compare_with_torch, randomise_batch_norm, torchvision_models

torchvision_models()  # timm imports torchvision: make that import work first (see torch_reference)
timm = pytest.importorskip("timm")


def test_timm_resnet(tmp_path, name="resnet18"):  # timm's resnet50 has the same keys (it adds only depth)
    net = timm.create_model(name, pretrained=False)
    randomise_batch_norm(net, (64, 64, 3))
    assert compare_with_torch(net, name, tmp_path, (64, 64, 3), stem="imagenet") < 1e-4
