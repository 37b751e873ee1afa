"""Whole-epoch compiled training (`data.scan_epoch=True`) against one dispatch per step, both on the device pipeline.

    .venv/bin/python benchmarks/epoch_program.py [--models lenet cnn resnet20] [--batch-sizes 32 128] [--epochs 3]
    .venv/bin/python benchmarks/epoch_program.py --models lenet --batch-sizes 128 --backend xla

For each model and batch size, trains `--epochs` timed epochs on synthetic in-memory data (crop + flip on the
device) after one warm-up epoch that compiles, with the step-by-step loop and with the scanned epoch, and prints the
median epoch time and images/second of each and their ratio; `--rounds` repeats each pair (loop, scan, loop,
scan), one row per round, as this machine's speed drifts. Small models at small batches are where Python dispatch
shows; a large model hides it behind compute. Sets the process up as main.py does (`configure_process(restart=True)`:
its XLA:CPU flag, jemalloc where the machine has it; `--xla-cpu-defaults off`, `--allocator system` leave them out);
`--backend` is `config.backend` ('auto': the CPU backend on one CPU device, Flax's layers on XLA elsewhere).
"""

import argparse
import itertools
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.train_step import BACKENDS, configure_benchmark_process, process_options  # noqa: E402

if __name__ == "__main__":
    configure_benchmark_process()  # as main.py does, first thing (it may restart the process under jemalloc)

import jax  # noqa: E402

from configs import default  # noqa: E402
from dl4cv_jax.data import load_data  # noqa: E402
from dl4cv_jax.train.callbacks import Callback  # noqa: E402
from dl4cv_jax.train.loop import build_trainer, train_epoch  # noqa: E402

MODELS = {  # name -> (model config overrides, synthetic image shape)
    "lenet": ({"name": "lenet"}, (28, 28, 1)),
    "cnn": ({"name": "cnn", "width": 16}, (32, 32, 3)),
    "resnet20": ({"name": "resnet20"}, (32, 32, 3)),
}


def make_config(model: str, batch_size: int, scan: bool, examples: int, backend: str = "auto"):
    config = default.get_config()
    config.backend = backend
    overrides, shape = MODELS[model]
    for key, value in overrides.items():
        config.model[key] = value
    config.data.source = "synthetic"
    config.data.synthetic_shape = shape
    config.data.synthetic_examples = examples
    config.data.augment = ("crop(2)", "flip")
    config.data.pipeline = "device"
    config.data.scan_epoch = scan
    config.batch_size = batch_size
    config.num_epochs = 100  # the schedule's length only
    config.optimizer.learning_rate = 0.01  # random labels: a high rate can diverge, which would end the timing
    return config


def epoch_seconds(
    model: str, batch_size: int, scan: bool, epochs: int, examples: int, backend: str = "auto"
) -> tuple[float, int]:
    """Median seconds of `epochs` timed epochs (after one warm-up epoch) and the steps per epoch."""
    config = make_config(model, batch_size, scan, examples, backend)
    trainer, state = build_trainer(config, load_data(config))
    times = []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        state, _ = train_epoch(trainer, state, epoch, Callback(), workdir=pathlib.Path("."))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), trainer.steps_per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[process_options()])
    parser.add_argument("--models", nargs="+", default=["lenet", "cnn"], choices=list(MODELS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up epoch")
    parser.add_argument("--examples", type=int, default=4096, help="synthetic training images")
    parser.add_argument("--rounds", type=int, default=1, help="repeat each (loop, scan) pair, one row per round")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="config.backend")
    args = parser.parse_args()
    platform = f"{jax.devices()[0].platform} x {jax.device_count()} ({jax.devices()[0].device_kind})"
    print(f"{platform}, jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, backend {args.backend}")
    print(
        "\n| model | batch | steps/epoch | per-step loop s/epoch | scanned s/epoch | per-step img/s | scanned img/s "
        "| speed-up |\n|---|---|---|---|---|---|---|---|"
    )
    for model, batch, _ in itertools.product(args.models, args.batch_sizes, range(args.rounds)):
        looped, steps = epoch_seconds(model, batch, False, args.epochs, args.examples, args.backend)
        scanned, _ = epoch_seconds(model, batch, True, args.epochs, args.examples, args.backend)
        images = steps * batch
        print(
            f"| {model} | {batch} | {steps} | {looped:.3f} | {scanned:.3f} | {images / looped:,.0f} "
            f"| {images / scanned:,.0f} | {looped / scanned:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
