"""Input pipeline throughput on the CIFAR-10 JPEG folder, beside the train step that consumes it.

    .venv/bin/python benchmarks/input_pipeline.py [--data=~/.cache/dl4cv/cifar10] [--seconds=8]

Prints a markdown table of images/second for:
- tf.data, crop + flip, from the decoded in-memory split (what the CIFAR configs use);
- tf.data, crop + flip, decoding the JPEGs in every pass (a split too large for memory);
- tf.data, the full augmentation list (every augmentation the library offers);
- the on-device path (jit, crop + flip + cutout);
- the ResNet-20 train step of configs/resnet20_cifar.py on one fixed batch, and the same step fed by tf.data crop +
  flip (the real loop): if the two agree, the input pipeline is not the bottleneck.
The figures swing by tens of percent between runs on a shared machine; compare rows of one run. The process is set
up as main.py sets it up (`configure_process(restart=True)`: its XLA:CPU flag, jemalloc where the machine has it;
`--xla-cpu-defaults off`, `--allocator system` leave them out), so the train step runs as in `make train`;
`--backend` is the train step's `config.backend`.
"""

import argparse
import os
import pathlib
import sys
import tarfile
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.train_step import BACKENDS, configure_benchmark_process, process_options  # noqa: E402

if __name__ == "__main__":
    configure_benchmark_process()  # as main.py does, first thing (it may restart the process under jemalloc)

import jax  # noqa: E402

from configs import resnet20_cifar  # noqa: E402
from dl4cv_jax.data import device, load_data, train_batches  # noqa: E402
from dl4cv_jax.data.augment import BUILDERS  # noqa: E402
from dl4cv_jax.train import sharding  # noqa: E402
from dl4cv_jax.train.loop import build_trainer  # noqa: E402

FULL = (
    "crop(4),translate(0.1),flip,vflip,rotate(15),zoom(0.1),shear(10),rot90,brightness(0.2),contrast(0.2),"
    "saturation(0.2),hue(0.05),noise(0.03),cutout(8),mixup(0.2),cutmix(1.0)"
)


def cifar_dir(given: str | None) -> pathlib.Path:
    """The extracted CIFAR-10 folders: --data, ~/.cache/dl4cv/cifar10, or the shared archive extracted to /tmp."""
    for candidate in (given, "~/.cache/dl4cv/cifar10"):
        if candidate and (pathlib.Path(candidate).expanduser() / "train").is_dir():
            return pathlib.Path(candidate).expanduser()
    archive = REPO.parent / "shared" / "data" / "cifar10_jpeg.tar.gz"
    target = pathlib.Path(tempfile.mkdtemp(prefix="cifar10_"))
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


def rate(batches, batch_size: int, seconds: float, block=lambda batch: None) -> float:
    """Images/second over `seconds` after two warm-up batches (compilation, tf.data start-up)."""
    iterator = iter(batches)
    for _ in range(2):
        block(next(iterator))
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            block(next(iterator))
        except StopIteration:
            break
        count += 1
    return count * batch_size / (time.perf_counter() - start)


def epochs(make, first: int = 0):
    """Batches of consecutive epochs, endlessly (a benchmark may outlast one epoch)."""
    epoch = first
    while True:
        yield from make(epoch)
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[process_options()])
    parser.add_argument("--data", default=None, help="CIFAR-10 folder with train/ and test/")
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per row")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="config.backend of the train step rows")
    args = parser.parse_args()

    config = resnet20_cifar.get_config()
    config.backend = args.backend
    config.data.dir = str(cifar_dir(args.data))
    start = time.perf_counter()
    data = load_data(config)
    load_seconds = time.perf_counter() - start
    batch = config.batch_size
    rows = [("load + decode 60,000 JPEGs once (load_data)", 60_000 / load_seconds)]

    crop_flip = config.copy_and_resolve_references()
    rows.append(
        (
            "tf.data crop+flip (in memory)",
            rate(epochs(lambda e: train_batches(data, crop_flip, e)), batch, args.seconds),
        )
    )

    files = config.copy_and_resolve_references()
    files.data.max_in_memory_mb = 0
    file_data = load_data(files)
    rows.append(
        (
            "tf.data crop+flip (JPEG decoded every pass)",
            rate(epochs(lambda e: train_batches(file_data, files, e)), batch, args.seconds),
        )
    )

    full = config.copy_and_resolve_references()
    full.data.augment = (FULL,)
    label = f"tf.data full list ({len(BUILDERS)} augmentations)"
    rows.append((label, rate(epochs(lambda e: train_batches(data, full, e)), batch, args.seconds)))

    mesh = sharding.make_mesh()
    on_device = config.copy_and_resolve_references()
    on_device.data.augment = ("crop(4)", "flip", "cutout(8)")
    block = lambda b: jax.block_until_ready(b)  # noqa: E731
    rows.append(
        (
            "device path crop+flip+cutout (jit)",
            rate(epochs(lambda e: device.train_batches(data, on_device, e, mesh)), batch, args.seconds, block),
        )
    )

    trainer, state = build_trainer(config, data)
    fixed = trainer.put_batch(next(iter(train_batches(data, config, 0))))

    def fixed_steps():
        nonlocal state
        while True:
            state, metrics = trainer.train_step(state, fixed)
            yield metrics

    rows.append(("ResNet-20 train step, one fixed batch", rate(fixed_steps(), batch, args.seconds, block)))

    def fed_steps():
        nonlocal state
        for b in epochs(trainer.train_batches):
            state, metrics = trainer.train_step(state, b)
            yield metrics

    rows.append(("ResNet-20 train step fed by tf.data crop+flip", rate(fed_steps(), batch, args.seconds, block)))

    print(f"\n{jax.devices()[0].platform} x {jax.device_count()}, {os.cpu_count()} CPU cores, batch {batch}\n")
    print("| path | images/s |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:,.0f} |")
    tf_rate, step_rate = rows[1][1], rows[5][1]
    print(f"\ntf.data crop+flip / train step: {tf_rate / step_rate:.1f}x")


if __name__ == "__main__":
    main()
