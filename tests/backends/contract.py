"""The backend contract, checked for one model by `check_contract(name)`; test_contract*.py run it for the models
of contract_models.CHECKED (shared out over two files, so that the two test workers split the compilation), and
contract_models.py says why those cover every name in `MODELS`.

For the same variables, the CPU backend's layers give Flax's layers' variable tree, forward pass (training mode),
parameter gradients and new BatchNorm statistics, within float32 tolerance. Each model is built as small as its
family allows (CIFAR stem and head).
"""

import jax
import jax.numpy as jnp
import numpy as np

from dl4cv_jax.backends import model_layers
from tests.backends.contract_models import BATCH, build_model

KEY = jax.random.key(0)
# Relative errors (to float64) allowed beyond 3x Flax's own; see check_contract. Logits: oneDNN's BatchNorm
# forward is about 4x further from float64 than XLA's on one layer (docs/cpu_backend.md, "Precision"), and
# DenseNet-121's ~120 of them reached 1.64e-5 (Flax's layers: 2.35e-6), too close to a 1e-5 floor to be stable.
FLOORS = {"logits": 4e-5, "gradients": 2.5e-2, "batch_stats": 1e-5}
# The float32 programs run once on tiny inputs: XLA's cheapest compilation (the deep ResNets compile 2-3x faster).
# Not the float64 reference: XLA:CPU has no fast float64 convolution, and the loops it generates at level 0 ran
# several times longer than optimising them took (most of the contract's time, for the wide ResNets).
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _run_once(fn, *args, options=QUICK_COMPILE):
    return jax.jit(fn).lower(*args).compile(options)(*args)


def _train_outputs(model, variables, images, labels, options=QUICK_COMPILE):
    """(logits, parameter gradients, new batch_stats) of one training-mode pass, compiled with `options`."""

    def loss(params):
        logits, updated = model.apply(
            {**variables, "params": params}, images, train=True, mutable=["batch_stats"], rngs={"dropout": KEY}
        )
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels]), (logits, updated)

    step = jax.value_and_grad(loss, has_aux=True)
    (_, (logits, updated)), grads = _run_once(step, variables["params"], options=options)
    return logits, grads, updated.get("batch_stats", {})


def _relative_error(got, reference) -> float:
    """||got - reference|| / ||reference|| over every leaf of the tree, in float64."""
    flat = lambda tree: np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])  # noqa: E731
    got, reference = flat(got), flat(reference)
    return float(np.linalg.norm(got - reference) / max(np.linalg.norm(reference), 1e-30))


def _random_variables(shapes):
    """Values for a variable tree of `jax.eval_shape(model.init, ...)`'s shapes, drawn by numpy: each parameter of
    two or more axes from N(0, 1 / fan_in), BatchNorm and LayerNorm scales and running variances from U(0.5, 1.5),
    other vectors (biases, running means) from N(0, 0.1^2).

    Why not the model's own `init`: compiling its initialisers took a third of the contract's time (MobileNet-V3
    large: 18 of 56 CPU seconds) and shows nothing about the backend's layers. Why these values: none is zero or one
    everywhere, so no term of a layer drops out of the comparison (a forward pass that ignored a zero bias, a scale of
    1 or a running mean of 0 would agree with Flax's), and no kernel hides the layers below it (ViT's head starts at
    zero, which makes the logits and every gradient below it 0)."""
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path[-1:], simple=True)
        if len(leaf.shape) >= 2:
            values = rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        elif name in ("scale", "var"):
            values = rng.uniform(0.5, 1.5, size=leaf.shape)
        else:
            values = 0.1 * rng.normal(size=leaf.shape)
        return jnp.asarray(values, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _float64_reference(model, variables, images, labels):
    """The same pass in float64 on Flax's layers: what both float32 implementations approximate."""
    with jax.enable_x64(True):
        as64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
        return jax.device_get(_train_outputs(model, as64(variables), as64(images), labels, options={}))


def check_contract(name: str) -> None:
    """Asserts the contract (see the module docstring) for the model `name` of `MODELS` or `CHECKED`."""
    flax_model, cpu_model = build_model(name, model_layers("xla")), build_model(name, model_layers("cpu"))
    images = jnp.asarray(np.random.default_rng(1).normal(size=BATCH), jnp.float32)
    labels = jnp.arange(BATCH[0]) % 10
    init = lambda model: lambda x: model.init({"params": KEY, "dropout": KEY}, x, train=False)  # noqa: E731
    variables = _random_variables(jax.eval_shape(init(flax_model), images))
    # One variable tree (names, shapes, types) whichever layers build the model: checkpoints move freely.
    shapes = lambda tree: jax.tree.map(lambda v: (v.shape, v.dtype), tree)  # noqa: E731
    assert shapes(jax.eval_shape(init(cpu_model), images)) == shapes(variables)
    flax_outputs = _train_outputs(flax_model, variables, images, labels)
    cpu_outputs = _train_outputs(cpu_model, variables, images, labels)
    exact = _float64_reference(flax_model, variables, images, labels)
    assert np.any(exact[0]), "the logits are all 0: the comparison would see none of the layers below them"
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
