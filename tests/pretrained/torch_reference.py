"""torchvision as the reference for our architectures and weight import (tests only; no weights are downloaded).

torchvision 0.28's compiled ops do not load beside the CPU build of torch 2.13 (`operator torchvision::nms does
not exist`, raised while `import torchvision` registers fake kernels for them). The model definitions never call
those ops, so `torchvision_models()` declares the two operator schemas the import looks up (a schema only: any
call would fail) and imports torchvision's model definitions unchanged. STACK_NOTES.md has the background.
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from dl4cv_jax.models import create_model
from dl4cv_jax.pretrained import load_pretrained

torch = pytest.importorskip("torch")


@functools.cache
def torchvision_models():
    """`torchvision.models`, importable beside the CPU torch wheel (see the module docstring)."""
    if not hasattr(torch.ops.torchvision, "nms"):
        try:
            torch.ops.torchvision.nms  # noqa: B018 - loaded by torchvision's _C where that works
        except (AttributeError, RuntimeError):
            library = torch.library.Library("torchvision", "DEF")
            for op in ("nms", "qnms"):
                library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            torchvision_models.library = library  # kept alive: dropping a Library removes its definitions
    import torchvision.models

    return torchvision.models


def randomise_batch_norm(module, image_shape: tuple[int, int, int], seed: int = 0) -> None:
    """Random BatchNorm scale and shift, and running statistics measured on random images (one training-mode pass
    with momentum 1), so a swapped mean/var or scale/bias shows while activations stay at their natural scale
    (made-up statistics let a deep ResNet's logits grow into the hundreds)."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for layer in norms:
            layer.weight.copy_(0.25 + 0.5 * torch.rand(layer.num_features, generator=generator))
            layer.bias.copy_(0.2 * torch.randn(layer.num_features, generator=generator))
            layer.momentum = 1.0
        module.train()
        module(torch.randn(8, image_shape[2], image_shape[0], image_shape[1], generator=generator))
        for layer in norms:
            layer.momentum = 0.1
    module.eval()


def our_model(name: str, num_outputs: int, **model_overrides):
    config = get_config().model
    config.name = name
    config.update(model_overrides)
    return create_model(config, num_outputs)


def zeros_like_init(model, image_shape: tuple[int, int, int]):
    """Zeros shaped like `model.init`'s variables: all a weight file needs. Skipping the random init saves compiling
    its kernels, most of a test's time for the large models on two cores."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), train=False))
    return jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), shapes)


def compare_with_torch(
    torch_model,
    name: str,
    tmp_path: pathlib.Path,
    image_shape: tuple[int, int, int] = (224, 224, 3),
    batch: int = 2,
    num_outputs: int = 1000,
    **model_overrides,
) -> float:
    """Saves `torch_model`'s state_dict to a file, loads it into our `name` through load_pretrained, and returns
    the largest |logit difference| in eval mode on random images; also asserts the BatchNorm statistics equal."""
    torch_model.eval()
    path = tmp_path / f"{name}.pth"
    torch.save(torch_model.state_dict(), path)
    model = our_model(name, num_outputs, **model_overrides)
    images = np.random.default_rng(0).standard_normal((batch, *image_shape)).astype(np.float32)
    variables, new_head = load_pretrained(path, name, zeros_like_init(model, image_shape))
    assert new_head == []
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(images)))
    with torch.no_grad():
        theirs = torch_model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    assert_batch_stats_equal(torch_model, variables)
    return float(np.max(np.abs(ours - theirs)))


def assert_batch_stats_equal(torch_model, variables) -> None:
    """Every running mean/var of the torch model appears, bit for bit, among our batch_stats."""
    ours = sorted(np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(variables.get("batch_stats", {})))
    theirs = sorted(
        buffer.numpy().astype(np.float32).tobytes()
        for key, buffer in torch_model.state_dict().items()
        if key.endswith(("running_mean", "running_var"))
    )
    assert ours == theirs
