"""torchvision's GoogLeNet loads exactly: with our auxiliary heads off, from a file holding them (as the published
one does); with them on, main and auxiliary logits equal torch's in training mode (transform_input on, so that is
checked too). A file without the heads does not fit a model with them, and says which keys are missing."""

import copy

import jax
import jax.numpy as jnp
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
# 80x80: each of the four stage pools rounds up (40 -> 20, 20 -> 10, 10 -> 5, 5 -> 3, where floor mode would give
# 19, 9, 4, 2), and the auxiliary heads pool a 5x5 map into 4x4 overlapping bins.
IMAGE_SHAPE = (80, 80, 3)
# Each program runs once: XLA's cheapest compilation (as tests/backends/contract.py) halves the test's time.
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
IMAGES = np.random.default_rng(0).standard_normal((2, *IMAGE_SHAPE)).astype(np.float32)


def torch_googlenet(aux_logits: bool = True, transform_input: bool = False):
    """torchvision's GoogLeNet, dropout off, random BatchNorm scales, shifts and statistics; PyTorch's default
    init for the rest (`init_weights=False` also silences torchvision's warning about its own init)."""
    net = torchvision_models().googlenet(
        weights=None,
        aux_logits=aux_logits,
        transform_input=transform_input,
        init_weights=False,
        dropout=0.0,
        dropout_aux=0.0,
    )
    randomise_batch_norm(net, IMAGE_SHAPE)
    return net


def _fresh(model):
    return zeros_like_init(model, IMAGE_SHAPE)


def _ours(aux_logits: bool = False, transform_input: bool = False):
    model = our_model("googlenet", 1000, stem="imagenet", dropout_rate=0.0)
    return model.clone(aux_logits=aux_logits, aux_dropout_rate=0.0, transform_input=transform_input)


def _run_once(fn, *args):
    return jax.jit(fn).lower(*args).compile(QUICK_COMPILE)(*args)


def _nchw(images: np.ndarray):
    return torch.from_numpy(images).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def torch_net_and_file(tmp_path_factory):
    """A torchvision GoogLeNet with auxiliary heads and its state_dict file, as torchvision publishes it."""
    net = torch_googlenet(aux_logits=True)
    path = tmp_path_factory.mktemp("googlenet") / "googlenet.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_a_file_with_aux_heads_loads_into_ours_without(torch_net_and_file):
    net, path = torch_net_and_file
    model = _ours(aux_logits=False)
    variables, new_head = load_pretrained(path, "googlenet", _fresh(model))
    ours = np.asarray(_run_once(lambda v, x: model.apply(v, x, train=False), variables, jnp.asarray(IMAGES)))
    net = copy.deepcopy(net).eval()
    with torch.no_grad():
        theirs = net(_nchw(IMAGES)).numpy()
    assert new_head == [] and "aux1" not in variables["params"]
    assert theirs.std() > 0.1  # logits large enough for the tolerance to mean something
    assert np.max(np.abs(ours - theirs)) < LOGIT_TOLERANCE


def test_aux_heads_and_transform_input_match_torch_in_training(torch_net_and_file):
    net, path = torch_net_and_file
    model = _ours(aux_logits=True, transform_input=True)
    variables, _ = load_pretrained(path, "googlenet", _fresh(model))
    assert_batch_stats_equal(net, variables)

    def train(v, x):
        return model.apply(v, x, train=True, mutable=["batch_stats", "intermediates"])

    logits, state = _run_once(train, variables, jnp.asarray(IMAGES))
    ours = [np.asarray(logits), *map(np.asarray, state["intermediates"]["aux_logits"][0])]
    net = copy.deepcopy(net).train()  # a copy: a training pass updates the running statistics
    net.transform_input = True
    with torch.no_grad():
        main, aux2, aux1 = (t.numpy() for t in net(_nchw(IMAGES)))
    for name, got, expected in zip(("main", "aux1", "aux2"), ours, (main, aux1, aux2), strict=True):
        assert np.max(np.abs(got - expected)) < LOGIT_TOLERANCE, name


def test_a_file_without_aux_heads_does_not_fit_ours_with_them(tmp_path):
    with torch.device("meta"):
        shapes = torchvision_models().googlenet(weights=None, aux_logits=False, init_weights=False).state_dict()
    state = {key: torch.zeros(value.shape) for key, value in shapes.items()}
    path = tmp_path / "googlenet.pth"
    torch.save(state, path)
    fresh = _fresh(_ours(aux_logits=True))
    with pytest.raises(WeightMismatchError, match=r"18 missing: [^;]*aux1\.conv\.conv\.weight"):
        load_pretrained(path, "googlenet", fresh, allow_new_head=True)
    # Only aux1/aux2 are ignored when our heads are off: any other stray key is still reported.
    torch.save({**state, "aux3.fc.weight": torch.zeros(3)}, path)
    with pytest.raises(WeightMismatchError, match=r"does not fit the model: 1 unknown: aux3\.fc\.weight$"):
        load_pretrained(path, "googlenet", _fresh(_ours(aux_logits=False)))
