"""Pure train and eval steps. The loop jit-compiles them with shardings; they know nothing about devices."""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from dl4cv_jax import losses
from dl4cv_jax.train import precision
from dl4cv_jax.train import tta as tta_lib
from dl4cv_jax.train.state import TrainState

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def normalize_images(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """uint8 [0, 255] images → float32 standardised per channel. Done on the device: 4× less to transfer."""
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def _variables(params: Any, batch_stats: Any, compute_dtype: Any) -> dict[str, Any]:
    """Model variables with the parameters cast to the compute dtype (BatchNorm statistics stay float32)."""
    params = precision.cast_floating(params, compute_dtype)
    if batch_stats:
        return {"params": params, "batch_stats": batch_stats}
    return {"params": params}


def eval_logits(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    loss_name: str,
    mean: Sequence[float],
    std: Sequence[float],
    compute_dtype: Any = jnp.float32,
    tta: Sequence[str] = (),
) -> jax.Array:
    """float32 logits of the evaluation weights (EMA when kept); with `tta`, log of the views' mean probability."""
    images = normalize_images(batch["image"], mean, std).astype(compute_dtype)
    variables = _variables(state.eval_params(), state.eval_batch_stats(), compute_dtype)
    views = tta_lib.tta_views(images, tta)
    logits = [state.apply_fn(variables, view, train=False).astype(jnp.float32) for view in views]
    if len(logits) == 1:
        return logits[0]
    return tta_lib.average_probabilities([losses.class_probabilities(loss_name, x) for x in logits])


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    loss_fn: LossFn,
    loss_name: str,
    mean: Sequence[float],
    std: Sequence[float],
    dropout_key: jax.Array,
    compute_dtype: Any = jnp.float32,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on one (global) batch; returns the new state and the batch's mean loss and accuracy.

    The dropout key is folded with the step number, so the randomness of step k is the same whether the run
    was interrupted and resumed or not. The model computes in `compute_dtype`; logits and loss are float32.
    """
    images = normalize_images(batch["image"], mean, std).astype(compute_dtype)
    labels = batch["label"]
    step_key = jax.random.fold_in(dropout_key, state.step)

    def loss_and_aux(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        logits, new_model_state = state.apply_fn(
            _variables(params, state.batch_stats, compute_dtype),
            images,
            train=True,
            rngs={"dropout": step_key},
            mutable=["batch_stats"],
        )
        logits = logits.astype(jnp.float32)
        loss = jnp.mean(loss_fn(logits, labels))
        return loss, (logits, new_model_state)

    (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_and_aux, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads=grads, batch_stats=new_model_state.get("batch_stats", {}))
    # mixup / cutmix give soft targets [B, C]: accuracy counts agreement with their largest class.
    hard_labels = labels if labels.ndim == 1 else jnp.argmax(labels, axis=-1)
    accuracy = jnp.mean(losses.predict_classes(loss_name, logits) == hard_labels)
    return new_state, {"loss": loss, "accuracy": accuracy}


def eval_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    loss_fn: LossFn,
    loss_name: str,
    mean: Sequence[float],
    std: Sequence[float],
    compute_dtype: Any = jnp.float32,
    tta: Sequence[str] = (),
) -> dict[str, jax.Array]:
    """Sums of loss and correct predictions over the real (mask = 1) examples of a padded batch.

    Sums rather than means, so that batches of any fill add up to exact totals over the split.
    """
    logits = eval_logits(state, batch, loss_name=loss_name, mean=mean, std=std, compute_dtype=compute_dtype, tta=tta)
    mask = batch["mask"].astype(jnp.float32)
    per_example_loss = loss_fn(logits, batch["label"])
    correct = (losses.predict_classes(loss_name, logits) == batch["label"]).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(per_example_loss * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }
