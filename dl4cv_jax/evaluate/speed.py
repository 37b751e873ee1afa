"""Inference speed: images/second on full batches and the latency of one image, both after warm-up.

What is timed is the compiled forward pass (normalise, model, softmax) on images already on the device:
decoding and host-to-device copies are left out, so the figure describes the model on this machine rather than
the input pipeline. Each call is waited for with `block_until_ready` (JAX dispatches asynchronously; without
it one would time the dispatch). The median call is reported, which shrugs off the odd slow call on a shared
machine better than the mean.
"""

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from dl4cv_jax import losses
from dl4cv_jax.evaluate.restore import data_from_info
from dl4cv_jax.train import sharding
from dl4cv_jax.train.loop import Trainer, build_trainer, eval_options
from dl4cv_jax.train.state import TrainState
from dl4cv_jax.train.steps import eval_logits


def forward(state: TrainState, images: jax.Array, *, loss_name: str, **eval_options: Any) -> jax.Array:
    """uint8 images → class probabilities: the whole inference path a deployed model runs (evaluation's
    `eval_logits`: EMA weights, test-time augmentation and compute dtype as configured; `eval_options` are its
    mean, std, compute_dtype and tta, from `loop.eval_options`)."""
    logits = eval_logits(state, {"image": images}, loss_name=loss_name, **eval_options)
    return losses.class_probabilities(loss_name, logits)


def time_calls(
    call: Callable[[], jax.Array], warmup: int = 2, min_calls: int = 5, min_seconds: float = 2.0
) -> list[float]:
    """Seconds per call, after `warmup` untimed calls (the first compiles); at least `min_calls` calls and
    `min_seconds` in total. With several processes, exactly `min_calls`: each call is a collective, so every
    process must make as many as the others, and each one's clock would stop at another count."""
    for _ in range(warmup):
        call().block_until_ready()
    times: list[float] = []
    by_clock = jax.process_count() == 1
    while len(times) < min_calls or (by_clock and sum(times) < min_seconds):
        start = time.perf_counter()
        call().block_until_ready()
        times.append(time.perf_counter() - start)
    return times


def measure_speed(
    trainer: Trainer, state: TrainState, batch_size: int | None = None, min_seconds: float = 2.0
) -> dict[str, Any]:
    """{images_per_second, batch_size, latency_ms_batch1, device_count, device_kind} for the trainer's model on
    random images.

    The batch defaults to the evaluation batch and is sharded over the mesh like evaluation's; the single image
    is replicated (one image cannot be split over several devices). Random pixels: speed does not depend on the
    values, so this works on random weights too.
    """
    config, data = trainer.config, trainer.data
    batch_size = batch_size or config.eval_batch_size or config.batch_size
    step = functools.partial(forward, **eval_options(config, data))
    repl = sharding.replicated(trainer.mesh)
    batched = jax.jit(step, in_shardings=(repl, sharding.batch_sharding(trainer.mesh)), out_shardings=repl)
    single = jax.jit(step, in_shardings=(repl, repl), out_shardings=repl)
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        return rng.integers(0, 256, (n, *data.image_shape), dtype=np.uint8)

    local = batch_size // jax.process_count()
    batch = trainer.put_batch({"image": images(local)})["image"]
    one = sharding.shard_batch({"image": images(1)}, repl)["image"]  # every process holds it all
    batch_times = time_calls(lambda: batched(state, batch), min_seconds=min_seconds)
    single_times = time_calls(lambda: single(state, one), min_seconds=min_seconds / 2)
    return {
        "images_per_second": batch_size / statistics.median(batch_times),
        "batch_size": batch_size,
        "latency_ms_batch1": 1000.0 * statistics.median(single_times),
        "device_count": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
    }


def random_weights_speed(
    config: ml_collections.ConfigDict,
    image_shape: tuple[int, int, int],
    num_classes: int,
    batch_size: int | None = None,
    min_seconds: float = 2.0,
) -> dict[str, Any]:
    """`measure_speed` for a config's model with freshly initialised weights: no data, no checkpoint needed.

    Inference cost does not depend on the weights' values, so this answers "how fast would this model be here"
    before training it.
    """
    info = {
        "class_names": [str(k) for k in range(num_classes)],
        "image_shape": list(image_shape),
        "mean": list(config.data.mean) or [0.5] * image_shape[2],
        "std": list(config.data.std) or [0.25] * image_shape[2],
    }
    trainer, state = build_trainer(config, data_from_info(info, config))
    return measure_speed(trainer, state, batch_size, min_seconds)
