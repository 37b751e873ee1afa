"""Inference speed of configs' models on this machine: batched images/second and batch-1 latency.

    .venv/bin/python benchmarks/inference.py [--configs resnet20_cifar resnet_cifar] [--batch-size 128] [--backend xla]

The same measurement `--mode=eval` writes into report.json (`dl4cv_jax.evaluate.speed`: the compiled forward
pass on images already on the device, median call after warm-up), with freshly initialised weights, which cost
the same as trained ones. Sets the process up as main.py does (`configure_process(restart=True)`: its XLA:CPU flag,
jemalloc where the machine has it; `--xla-cpu-defaults off`, `--allocator system` leave them out), so the figures
match what eval reports. `--backend` overrides the configs' `config.backend` ('auto' in all of them).
"""

import argparse
import importlib
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.train_step import BACKENDS, configure_benchmark_process, process_options  # noqa: E402

if __name__ == "__main__":
    configure_benchmark_process()  # as main.py does, first thing (it may restart the process under jemalloc)

import jax  # noqa: E402

from dl4cv_jax.evaluate.speed import random_weights_speed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[process_options()])
    parser.add_argument("--configs", nargs="+", default=["resnet20_cifar", "resnet_cifar"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-shape", type=int, nargs=3, default=[32, 32, 3])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--backend", default=None, choices=BACKENDS, help="config.backend (default: the config's)")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(
        f"{device.platform} x {jax.device_count()} ({device.device_kind}), jax {jax.__version__}, "
        f"{os.cpu_count()} CPU cores\n"
    )
    print("| config | model | batch | images/s (batched) | latency batch 1 (ms) |\n|---|---|---|---|---|")
    for name in args.configs:
        config = importlib.import_module(f"configs.{name}").get_config()
        config.backend = args.backend or config.backend
        speed = random_weights_speed(config, tuple(args.image_shape), args.classes, args.batch_size)
        print(
            f"| {name} | {config.model.name} | {args.batch_size} | {speed['images_per_second']:,.1f} "
            f"| {speed['latency_ms_batch1']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
