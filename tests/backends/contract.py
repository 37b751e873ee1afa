"""The backend contract, checked for one model by `check_contract(name)`; test_contract*.py run it for every
name in `MODELS` (split over two files, so that the two test workers share the deep ResNets' compilation).

For the same variables, the CPU backend's layers give Flax's layers' variable tree, forward pass (training mode),
parameter gradients and new BatchNorm statistics, within float32 tolerance. Each model is built as small as its
family allows (CIFAR stem and head).
"""

import jax
import jax.numpy as jnp
import numpy as np

from configs.default import get_config
from dl4cv_jax.backends import model_layers
from dl4cv_jax.models import create_model

# 4 images of 32x32: the smallest batch whose last BatchNorms still average over 16+ values per channel. With
# fewer (2 images of 16x16: 2 values in VGG's last block), the normalisation divides by a near-zero spread and
# amplifies float32 rounding far past any tolerance, whichever layers compute it.
BATCH = (4, 32, 32, 3)
KEY = jax.random.key(0)
# These programs run once on tiny inputs: XLA's cheapest compilation (the deep ResNets compile 2-3x faster).
# Relative errors (to float64) allowed beyond 3x Flax's own; see check_contract.
FLOORS = {"logits": 1e-5, "gradients": 2.5e-2, "batch_stats": 1e-5}
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _model(name: str, backend: str):
    config = get_config().model
    config.name, config.stem = name, "cifar"  # the small stem and head where the family has them
    return create_model(config, 10, model_layers(backend))


def _run_once(fn, *args):
    return jax.jit(fn).lower(*args).compile(QUICK_COMPILE)(*args)


def _train_outputs(model, variables, images, labels):
    """(logits, parameter gradients, new batch_stats) of one training-mode pass."""

    def loss(params):
        logits, updated = model.apply(
            {**variables, "params": params}, images, train=True, mutable=["batch_stats"], rngs={"dropout": KEY}
        )
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels]), (logits, updated)

    (_, (logits, updated)), grads = _run_once(jax.value_and_grad(loss, has_aux=True), variables["params"])
    return logits, grads, updated.get("batch_stats", {})


def _relative_error(got, reference) -> float:
    """||got - reference|| / ||reference|| over every leaf of the tree, in float64."""
    flat = lambda tree: np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])  # noqa: E731
    got, reference = flat(got), flat(reference)
    return float(np.linalg.norm(got - reference) / max(np.linalg.norm(reference), 1e-30))


def _float64_reference(model, variables, images, labels):
    """The same pass in float64 on Flax's layers: what both float32 implementations approximate."""
    with jax.enable_x64(True):
        as64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
        return jax.device_get(_train_outputs(model, as64(variables), as64(images), labels))


def check_contract(name: str) -> None:
    """Asserts the contract (see the module docstring) for `MODELS[name]`."""
    flax_model, cpu_model = _model(name, "xla"), _model(name, "cpu")
    images = jax.random.normal(jax.random.key(1), BATCH)
    labels = jnp.arange(BATCH[0]) % 10
    init = lambda model: lambda x: model.init({"params": KEY, "dropout": KEY}, x, train=False)  # noqa: E731
    variables = _run_once(init(flax_model), images)
    # One variable tree (names, shapes, types) whichever layers build the model: checkpoints move freely.
    shapes = lambda tree: jax.tree.map(lambda v: (v.shape, v.dtype), tree)  # noqa: E731
    assert shapes(jax.eval_shape(init(cpu_model), images)) == shapes(variables)
    flax_outputs = _train_outputs(flax_model, variables, images, labels)
    cpu_outputs = _train_outputs(cpu_model, variables, images, labels)
    exact = _float64_reference(flax_model, variables, images, labels)
    # "Within float32 tolerance", measured: the CPU backend is no further from the float64 answer than Flax's
    # float32 layers (3x, for rounding luck), plus a floor for what float32 sums cannot do better. A fixed
    # tolerance between the two cannot say that: at initialisation the deep nets' BatchNorm gradients cancel and
    # both float32 implementations miss the float64 gradients by percents, while their logits agree closely. The
    # gradients' floor is oneDNN's BatchNorm: it sums a channel's gradient in float32 in order, where XLA sums in
    # a tree, which costs precision when that gradient is nearly constant (behind a global average pool).
    for what, cpu, flax, reference in zip(
        ("logits", "gradients", "batch_stats"), cpu_outputs, flax_outputs, exact, strict=True
    ):
        assert jax.tree.structure(cpu) == jax.tree.structure(flax), what
        if not jax.tree.leaves(reference):  # no BatchNorm, no statistics
            continue
        cpu_error, flax_error = _relative_error(cpu, reference), _relative_error(flax, reference)
        print(f"{name} {what}: relative error CPU backend {cpu_error:.2e}, Flax layers {flax_error:.2e}")
        assert cpu_error <= 3 * flax_error + FLOORS[what], (what, cpu_error, flax_error)
