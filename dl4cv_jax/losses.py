"""Classification losses: config.loss -> a per-example loss on (logits, labels).

Every loss returns one value per example (shape [B]) so the caller can mask the padded examples of the
last evaluation batch before averaging. Labels may be integer class ids [B] or one-hot / soft targets
[B, C]; both give the same loss for the same class.

Losses that compare probabilities with targets (poisson, kl_divergence, mse, mae) apply a softmax to the
logits first, as Keras does when a model ends in a softmax layer; the model always outputs raw logits.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from dl4cv_jax.choices import ConfigError, choose, require

LossFn = Callable[[jax.Array, jax.Array], jax.Array]

_BINARY = "sigmoid_binary_cross_entropy"
# Label smoothing mixes uniform mass into the targets; it is only meaningful for the cross-entropies.
_SMOOTHABLE = ("softmax_cross_entropy", _BINARY)


def _targets(labels: jax.Array, num_classes: int) -> jax.Array:
    """One-hot float targets [B, C] from integer ids [B]; float targets [B, C] pass through."""
    labels = jnp.asarray(labels)
    if labels.ndim == 1:
        return jax.nn.one_hot(labels, num_classes)
    return labels.astype(jnp.float32)


def _class_ids(labels: jax.Array) -> jax.Array:
    """Integer class ids [B] from ids [B] or (soft) targets [B, C] (argmax)."""
    labels = jnp.asarray(labels)
    return labels if labels.ndim == 1 else jnp.argmax(labels, axis=-1)


def _positive_target(labels: jax.Array) -> jax.Array:
    """Target probability of class 1 [B] from ids [B] or targets [B, 2] / [B, 1]."""
    labels = jnp.asarray(labels)
    if labels.ndim == 1:
        return labels.astype(jnp.float32)
    return labels[:, -1].astype(jnp.float32)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
    """Categorical cross-entropy; `smoothing` mixes that much uniform mass into the targets (Szegedy)."""
    targets = _targets(labels, logits.shape[-1])
    if smoothing > 0:
        targets = optax.losses.smooth_labels(targets, smoothing)
    return optax.losses.softmax_cross_entropy(logits, targets)


def sigmoid_binary_cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
    """Binary cross-entropy on ONE logit per example ([B, 1]): the logit of class 1.

    Smoothing moves the target towards 0.5 (Keras' BinaryCrossentropy convention: y(1-a) + a/2).
    """
    target = _positive_target(labels)
    if smoothing > 0:
        target = target * (1.0 - smoothing) + 0.5 * smoothing
    return optax.losses.sigmoid_binary_cross_entropy(logits[:, 0], target)


def multiclass_hinge(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Crammer-Singer hinge: max(0, 1 + max_{j != y} s_j - s_y); soft targets use their argmax class."""
    return optax.losses.multiclass_hinge_loss(logits, _class_ids(labels))


def poisson(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Keras' poisson, mean over classes of p - y log p with p = softmax(logits).

    log p comes from log_softmax, so there is no epsilon and no log(0) even for saturated logits.
    """
    targets = _targets(labels, logits.shape[-1])
    return jnp.mean(jax.nn.softmax(logits) - targets * jax.nn.log_softmax(logits), axis=-1)


def kl_divergence(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """KL(targets || softmax(logits)); zero-probability targets contribute 0 (0 log 0 = 0)."""
    targets = _targets(labels, logits.shape[-1])
    return optax.losses.kl_divergence(jax.nn.log_softmax(logits), targets)


def mse(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Keras' mean squared error between softmax probabilities and one-hot targets, mean over classes."""
    targets = _targets(labels, logits.shape[-1])
    return jnp.mean(optax.losses.squared_error(jax.nn.softmax(logits), targets), axis=-1)


def mae(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Keras' mean absolute error between softmax probabilities and one-hot targets, mean over classes."""
    targets = _targets(labels, logits.shape[-1])
    return jnp.mean(jnp.abs(jax.nn.softmax(logits) - targets), axis=-1)


LOSSES: dict[str, Callable[..., jax.Array]] = {
    "softmax_cross_entropy": softmax_cross_entropy,
    _BINARY: sigmoid_binary_cross_entropy,
    "multiclass_hinge": multiclass_hinge,
    "poisson": poisson,
    "kl_divergence": kl_divergence,
    "mse": mse,
    "mae": mae,
}


def make_loss(config: ConfigDict) -> LossFn:
    """Returns `loss(logits, labels) -> [B]` for config.loss, with config.label_smoothing bound in.

    Label smoothing is refused (not ignored) for losses it does not apply to, so a sweep cannot silently
    compare runs that differ only in a setting that had no effect.
    """
    loss_fn = choose(LOSSES, "loss", config.loss)
    smoothing = config.label_smoothing
    require(0.0 <= smoothing < 1.0, "label_smoothing", smoothing, "must be in [0, 1)")
    if config.loss in _SMOOTHABLE:
        return lambda logits, labels: loss_fn(logits, labels, smoothing)
    if smoothing > 0:
        raise ConfigError(
            f"config.label_smoothing={smoothing!r} applies only to config.loss in: {', '.join(_SMOOTHABLE)} "
            f"(config.loss={config.loss!r}); set it to 0"
        )
    return loss_fn


def num_outputs(loss_name: str, num_classes: int) -> int:
    """Width of the classifier's last layer: 1 for the single-logit binary loss, else num_classes."""
    choose(LOSSES, "loss", loss_name)
    if loss_name != _BINARY:
        return num_classes
    require(num_classes == 2, "loss", loss_name, f"needs exactly 2 classes, the data has {num_classes}")
    return 1


def predict_classes(loss_name: str, logits: jax.Array) -> jax.Array:
    """Predicted class ids [B]: argmax, or logit > 0 (p > 0.5) for the single-logit binary loss."""
    if loss_name == _BINARY:
        return (logits[:, 0] > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1)


def class_probabilities(loss_name: str, logits: jax.Array) -> jax.Array:
    """Class probabilities [B, num_classes]: softmax, or [1 - p, p] with p = sigmoid for the binary loss."""
    if loss_name == _BINARY:
        p = jax.nn.sigmoid(logits[:, 0])
        return jnp.stack([1.0 - p, p], axis=-1)
    return jax.nn.softmax(logits, axis=-1)
