"""Where the published weights of each model live, for the error a user gets when no file is at hand.

Nothing is ever downloaded at run time (machines running experiments are often offline, and a silent download
makes a run depend on the network): a bare model name in `config.model.pretrained` fails with the address of the
file and where to put it. The torchvision addresses are its IMAGENET1K_V1 weights (torchvision 0.28's sources).
"""

TORCHVISION = "https://download.pytorch.org/models/"
KNOWN_FILES: dict[str, str] = {
    "alexnet": TORCHVISION + "alexnet-owt-7be5be79.pth",
    "googlenet": TORCHVISION + "googlenet-1378be20.pth",
    "densenet121": TORCHVISION + "densenet121-a639ec97.pth",
    "densenet161": TORCHVISION + "densenet161-8d451a50.pth",
    "densenet169": TORCHVISION + "densenet169-b2777c0a.pth",
    "densenet201": TORCHVISION + "densenet201-c1103571.pth",
    "mobilenet_v2": TORCHVISION + "mobilenet_v2-b0353104.pth",
    "mobilenet_v3_large": TORCHVISION + "mobilenet_v3_large-8738ca79.pth",
    "mobilenet_v3_small": TORCHVISION + "mobilenet_v3_small-047dcff4.pth",
    "vit_b_16": TORCHVISION + "vit_b_16-c867db91.pth",
    "resnet18": TORCHVISION + "resnet18-f37072fd.pth",
    "resnet34": TORCHVISION + "resnet34-b627a593.pth",
    "resnet50": TORCHVISION + "resnet50-0676ba61.pth",
    "resnet101": TORCHVISION + "resnet101-63fe2227.pth",
    "resnet152": TORCHVISION + "resnet152-394f9c45.pth",
    "vgg11": TORCHVISION + "vgg11-8a719046.pth",
    "vgg11_bn": TORCHVISION + "vgg11_bn-6002323d.pth",
    "vgg13": TORCHVISION + "vgg13-19584684.pth",
    "vgg13_bn": TORCHVISION + "vgg13_bn-abd245e5.pth",
    "vgg16": TORCHVISION + "vgg16-397923af.pth",
    "vgg16_bn": TORCHVISION + "vgg16_bn-6c64b313.pth",
    "vgg19": TORCHVISION + "vgg19-dcbb9e9d.pth",
    "vgg19_bn": TORCHVISION + "vgg19_bn-c79401a0.pth",
    # akamaster/pytorch_resnet_cifar10 (BSD-2): CIFAR-10 ResNets in its own layout (torch_layouts/cifar_resnet.py).
    **{
        f"resnet{depth}": f"https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/{name}"
        for depth, name in (
            (20, "resnet20-12fca82f.th"),
            (32, "resnet32-d509ac18.th"),
            (44, "resnet44-014dd654.th"),
            (56, "resnet56-4bfd9763.th"),
            (110, "resnet110-1d1ed7c2.th"),
        )
    },
}


def download_hint(name: str) -> str:
    """One sentence: which file to fetch for `name` and where it goes (or how to find one)."""
    url = KNOWN_FILES.get(name)
    if url is None:
        return "give the path of a .pth/.pt/.th or .safetensors file of this model (docs/pretrained.md)"
    file = url.rsplit("/", 1)[-1]
    return (
        f"download {url} on a machine with network access, copy it to e.g. ~/models/{file} and pass that path "
        f"(--config.model.pretrained=~/models/{file})"
    )
