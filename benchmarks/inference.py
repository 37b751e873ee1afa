"""Inference speed of configs' models on this machine: batched images/second and batch-1 latency.

    .venv/bin/python benchmarks/inference.py [--configs resnet20_cifar resnet_cifar] [--batch-size 128]

The same measurement `--mode=eval` writes into report.json (`dl4cv_jax.evaluate.speed`: the compiled forward
pass on images already on the device, median call after warm-up), with freshly initialised weights, which cost
the same as trained ones. Sets main.py's XLA:CPU flag and, like main.py, restarts under jemalloc where the
machine has it, so the figures match what eval reports.
"""

import argparse
import importlib
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dl4cv_jax.cpu_allocator import restart_under_jemalloc  # noqa: E402

if __name__ == "__main__":
    restart_under_jemalloc()  # as main.py does: see dl4cv_jax/cpu_allocator.py

import jax  # noqa: E402
from dl4cv_jax.xla_cpu import apply_xla_cpu_defaults  # noqa: E402

from dl4cv_jax.evaluate.speed import random_weights_speed  # noqa: E402

apply_xla_cpu_defaults()  # main.py's XLA:CPU flag, so the figures match what eval reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["resnet20_cifar", "resnet_cifar"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-shape", type=int, nargs=3, default=[32, 32, 3])
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    device = jax.devices()[0]
    print(
        f"{device.platform} x {jax.device_count()} ({device.device_kind}), jax {jax.__version__}, "
        f"{os.cpu_count()} CPU cores\n"
    )
    print("| config | model | batch | images/s (batched) | latency batch 1 (ms) |\n|---|---|---|---|---|")
    for name in args.configs:
        config = importlib.import_module(f"configs.{name}").get_config()
        speed = random_weights_speed(config, tuple(args.image_shape), args.classes, args.batch_size)
        print(
            f"| {name} | {config.model.name} | {args.batch_size} | {speed['images_per_second']:,.1f} "
            f"| {speed['latency_ms_batch1']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
