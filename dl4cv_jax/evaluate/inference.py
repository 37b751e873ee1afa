"""Per-example model outputs over the device mesh: class probabilities, predicted class and loss.

Training's `eval_step` returns sums, which is all a validation score needs; a report needs every example's
output (confusion matrix, predictions.csv, top-k, ROC). This step runs on the same mesh and padded, masked
batches as training's evaluation, returns the whole global batch replicated (so every process, on a multi-host
job too, can read it), and the host drops the padding by the mask.
"""

import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dl4cv_jax import losses
from dl4cv_jax.data import eval_batch_size
from dl4cv_jax.train import sharding
from dl4cv_jax.train.loop import Trainer, eval_options
from dl4cv_jax.train.state import TrainState
from dl4cv_jax.train.steps import LossFn, eval_logits

Outputs = dict[str, np.ndarray]


def predict_step(
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
    """Probabilities [B, C], predicted class [B], per-example loss [B], label and mask of a padded batch.

    The logits are training's `eval_logits` (EMA weights when kept, test-time augmentation, compute dtype) and the
    prediction is `losses.predict_classes`, the rule training's accuracy uses, so the report matches
    test_metrics.json exactly.
    """
    logits = eval_logits(state, batch, loss_name=loss_name, mean=mean, std=std, compute_dtype=compute_dtype, tta=tta)
    return {
        "probabilities": losses.class_probabilities(loss_name, logits),
        "prediction": losses.predict_classes(loss_name, logits).astype(jnp.int32),
        "loss": loss_fn(logits, batch["label"]),
        "label": batch["label"],
        "mask": batch["mask"],
    }


def make_predict_step(trainer: Trainer) -> Any:
    """`predict_step` jit-compiled over the trainer's mesh: batch sharded in, everything replicated out."""
    config, data = trainer.config, trainer.data
    step = functools.partial(predict_step, loss_fn=losses.make_loss(config), **eval_options(config, data))
    repl = sharding.replicated(trainer.mesh)
    return jax.jit(step, in_shardings=(repl, sharding.batch_sharding(trainer.mesh)), out_shardings=repl)


def gather_outputs(step: Any, state: TrainState, batches: Iterable[dict[str, jax.Array]]) -> Outputs:
    """Runs `step` on every batch and keeps the rows with mask 1, in order; outputs stay on the device until
    the end, so the host never waits on a batch while the next one could be running."""
    outputs = jax.device_get([step(state, batch) for batch in batches])
    if not outputs:
        return {}
    merged = {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}
    real = merged.pop("mask") > 0
    return {key: value[real] for key, value in merged.items()}


def split_outputs(trainer: Trainer, state: TrainState, split: str) -> Outputs:
    """Every example of `split` exactly once: label, prediction, probabilities and loss, in split order."""
    outputs = gather_outputs(make_predict_step(trainer), state, trainer.eval_batches(split))
    expected = trainer.data.num_examples(split)
    found = len(outputs.get("label", ()))
    if found != expected:  # padding that leaked in or examples that fell out: never report such numbers
        raise RuntimeError(f"evaluation of split {split!r} saw {found} examples, the split has {expected}")
    return outputs


def padded_batches(
    images: np.ndarray, batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[dict[str, np.ndarray]]:
    """This process's slices of global batches over uint8 `images`, the last one padded with zeros and mask 0."""
    local = batch_size // process_count
    padded = -(-len(images) // batch_size) * batch_size
    for start in range(0, padded, batch_size):
        rows = np.arange(start + process_index * local, start + (process_index + 1) * local)
        real = rows < len(images)
        batch = np.zeros((local, *images.shape[1:]), np.uint8)
        batch[real] = images[rows[real]]
        yield {"image": batch, "label": np.zeros(local, np.int32), "mask": real.astype(np.float32)}


def image_outputs(trainer: Trainer, state: TrainState, images: np.ndarray) -> Outputs:
    """Probabilities and predicted class for uint8 images [N, H, W, C] already in the run's image shape."""
    size = eval_batch_size(trainer.config)
    local = padded_batches(images, size, jax.process_index(), jax.process_count())
    outputs = gather_outputs(make_predict_step(trainer), state, map(trainer.put_batch, local))
    return {key: outputs[key] for key in ("probabilities", "prediction")}
