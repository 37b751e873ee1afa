"""The benchmarked architectures in plain `torch.nn`, layer for layer the library's Flax models.

There is no CPU wheel of torchvision here, so ResNet-50 is written out too (torchvision's v1.5 layout: the stride
on the 3x3 conv of the Bottleneck). Convolutions followed by BatchNorm have no bias, as in the library; BatchNorm
epsilon 1e-5 and momentum 0.1 (PyTorch's convention for the library's 0.9). Trainable parameter counts are the
library's (`count_parameters` of `MODELS[...]`) and are asserted by `build_model`.
"""

import torch
import torch.nn.functional as F
from torch import nn

# Trainable parameters of the library's model for each benchmark workload (running statistics not counted).
EXPECTED_PARAMETERS = {
    "lenet": 61_706,  # LeNet-5 on 28x28x1, 10 classes
    "resnet20_cifar": 269_722,  # He et al. 2016, option-A shortcuts, 10 classes
    "resnet18_cifar": 11_173_962,  # MODELS['resnet18'] with model.stem='cifar', 10 classes
    "resnet50": 25_557_032,  # torchvision's figure, 1,000 classes
}


def _init(module: nn.Module) -> None:
    """He (fan-out) init of the convs, unit BatchNorm scales: what the library and torchvision use."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    )


class LeNet5(nn.Module):
    """conv 6@5x5 SAME - relu - pool - conv 16@5x5 VALID - relu - pool - 120 - 84 - 10 (dl4cv_jax.models.lenet)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, flat: int = 16 * 5 * 5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(flat, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class CifarBlock(nn.Module):
    """conv3x3-bn-relu-conv3x3-bn + option-A shortcut (subsample, zero-pad channels on both sides), relu."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True), _conv_bn(cout, cout, 3, 1))
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.extra:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(self.body(x) + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) of He et al. 2016 with 16-32-64 widths (dl4cv_jax.models.cifar_resnet)."""

    def __init__(self, blocks_per_stage: int = 3, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 16, 3, 1), nn.ReLU(inplace=True)]
        cin = 16
        for stage, width in enumerate((16, 32, 64)):
            for index in range(blocks_per_stage):
                layers.append(CifarBlock(cin, width, 2 if stage > 0 and index == 0 else 1))
                cin = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, width, 3, stride), nn.ReLU(inplace=True), _conv_bn(width, width, 3, 1))
        self.shortcut = _conv_bn(cin, width, 1, stride) if stride != 1 or cin != width else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        out = width * self.expansion
        self.body = nn.Sequential(
            _conv_bn(cin, width, 1, 1),
            nn.ReLU(inplace=True),
            _conv_bn(width, width, 3, stride),
            nn.ReLU(inplace=True),
            _conv_bn(width, out, 1, 1),
        )
        self.shortcut = _conv_bn(cin, out, 1, stride) if stride != 1 or cin != out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """torchvision's ResNet (dl4cv_jax.models.resnet) with an ImageNet stem (7x7/2 + max-pool) or a CIFAR stem."""

    def __init__(self, block: type, stage_sizes: tuple[int, ...], num_classes: int, stem: str = "imagenet"):
        super().__init__()
        if stem == "imagenet":
            layers: list[nn.Module] = [_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        else:
            layers = [_conv_bn(3, 64, 3, 1), nn.ReLU(inplace=True)]
        cin = 64
        for stage, blocks in enumerate(stage_sizes):
            width = 64 * 2**stage
            for index in range(blocks):
                layers.append(block(cin, width, 2 if stage > 0 and index == 0 else 1))
                cin = width * block.expansion
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


BUILDERS = {
    "lenet": lambda: LeNet5(1, 10),
    "resnet20_cifar": lambda: CifarResNet(3, 10),
    "resnet18_cifar": lambda: ResNet(BasicBlock, (2, 2, 2, 2), 10, stem="cifar"),
    "resnet50": lambda: ResNet(Bottleneck, (3, 4, 6, 3), 1000, stem="imagenet"),
}


def count_parameters(model: nn.Module) -> int:
    """Trainable scalars (BatchNorm running statistics are buffers, not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(name: str) -> nn.Module:
    """The torch model for benchmark workload `name`, initialised; fails if its size differs from the library's."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(BUILDERS)}")
    model = BUILDERS[name]()
    _init(model)
    count = count_parameters(model)
    if count != EXPECTED_PARAMETERS[name]:
        raise AssertionError(f"torch {name} has {count:,} parameters, the library's has {EXPECTED_PARAMETERS[name]:,}")
    return model
