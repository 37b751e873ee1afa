"""Images/second of the library's jitted train step, on synthetic data, for the benchmark workloads.

    .venv/bin/python benchmarks/train_step.py                               # every model, float32 and bfloat16
    .venv/bin/python benchmarks/train_step.py --models resnet20_cifar --precisions float32 --batch-size 256
    DL4CV_XLA_CPU_DEFAULTS=0 .venv/bin/python benchmarks/train_step.py      # without main.py's XLA:CPU flag

What is timed is `build_trainer(config, data).train_step(state, batch)`, the step the training loop runs: uint8
images normalised on the device, the model in `config.precision`, softmax cross-entropy, optax SGD with Nesterov
momentum 0.9 and L2 weight decay 5e-4 (kernels only), BatchNorm statistics updated, loss and accuracy returned.
The batch is put on the device once, so the input pipeline is not part of the figure. After a warm-up (the
compilation and a few steps), `--windows` windows of about `--window-seconds` each are timed; each window ends
with `jax.block_until_ready` on the new state and metrics, because a jitted call returns before the device has
finished. The figure is the median window; the spread (min-max) is printed with it.

Like `main.py`, on a machine with no accelerator plugin this adds
`--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` to XLA_FLAGS unless DL4CV_XLA_CPU_DEFAULTS=0
or the flag is set already (`dl4cv_jax/xla_cpu.py`). XLA reads XLA_FLAGS once, when jax initialises its backend,
so `apply_xla_cpu_defaults` runs in `main()` before any computation. Also like `main.py`, it restarts under
jemalloc where the machine has it, unless DL4CV_JEMALLOC=0 (`dl4cv_jax/cpu_allocator.py`).
"""

import argparse
import dataclasses
import datetime
import importlib.util
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `configs` is not an installed package
    sys.path.insert(0, str(ROOT))

from dl4cv_jax.cpu_allocator import restart_under_jemalloc  # noqa: E402
from dl4cv_jax.xla_cpu import apply_xla_cpu_defaults  # noqa: E402

PRECISIONS = ("float32", "bfloat16")
MEAN, STD = (0.491, 0.481, 0.444), (0.246, 0.244, 0.262)  # CIFAR-10's; any fixed values do


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmarked model: the library's model name, its input and the batch used on this CPU."""

    name: str
    model: str
    config_module: str  # the experiment config it derives from
    shape: tuple[int, int, int]  # H, W, C
    classes: int
    batch_size: int


WORKLOADS = {
    w.name: w
    for w in (
        Workload("lenet", "lenet", "lenet_mnist", (28, 28, 1), 10, 128),  # 28x28x1: LeNet-5's 61,706 parameters
        Workload("resnet20_cifar", "resnet20", "resnet20_cifar", (32, 32, 3), 10, 128),
        Workload("resnet18_cifar", "resnet18", "resnet_cifar", (32, 32, 3), 10, 128),
        # 224x224 at batch 16: a step at 256 would take minutes on 2 cores. On a GPU use --batch-size 256.
        Workload("resnet50", "resnet50", "resnet50_imagenet", (224, 224, 3), 1000, 16),
    )
}


def bench_config(
    workload: Workload, precision: str, batch_size: int, optimizer: str = "nesterov", conv_inputs: str = "auto"
) -> Any:
    """The workload's experiment config on synthetic data, with the optimizer both frameworks use.

    SGD, learning rate 0.1, Nesterov momentum 0.9, L2 weight decay 5e-4; a constant schedule and no label
    smoothing, so PyTorch's SGD and cross-entropy are the same computation. `optimizer='sgd'` drops momentum and
    decay (to measure what the optimizer chain costs). `conv_inputs` is `config.materialize_conv_inputs`.
    """
    import importlib

    config = importlib.import_module(f"configs.{workload.config_module}").get_config()
    config.model.name = workload.model
    config.model.stem = "cifar" if workload.shape[0] <= 64 else "imagenet"
    config.data.source = "synthetic"
    config.data.synthetic_shape = workload.shape
    config.data.synthetic_classes = workload.classes
    # At least one example per class and one full batch; the step only ever sees the first batch.
    config.data.synthetic_examples = max(batch_size, workload.classes)
    config.data.image_size, config.data.channels, config.data.augment = 0, 0, ()
    config.data.mean, config.data.std = MEAN[: workload.shape[2]], STD[: workload.shape[2]]
    config.batch_size = batch_size
    config.precision = precision
    config.loss, config.label_smoothing = "softmax_cross_entropy", 0.0
    config.optimizer.name = optimizer
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4 if optimizer != "sgd" else 0.0
    config.optimizer.weight_decay_mode = "l2"
    config.schedule.name, config.schedule.warmup_epochs = "constant", 0.0
    config.num_epochs = 1
    config.materialize_conv_inputs = conv_inputs
    return config


class JaxTrainStep:
    """The library's jitted train step on one synthetic batch already on the device.

    `variant`: 'library' (the real step); 'plain_sgd' (the real step with SGD without momentum and decay);
    'grad_only' (forward + backward of the same model and loss on pre-normalised float32 images, no optimizer
    update, no metrics: what is left of the step without the library's extras).
    """

    framework = "jax"

    def __init__(
        self,
        workload: Workload,
        precision: str,
        batch_size: int,
        variant: str = "library",
        conv_inputs: str = "auto",
        tap_sum_channels: int | None = None,
        col2im_channels: int | None = None,
        phase_channels: int | None = None,
        onednn: bool | None = None,
    ):
        import jax

        from dl4cv_jax.data import load_data
        from dl4cv_jax.models import conv
        from dl4cv_jax.train.loop import build_trainer
        from dl4cv_jax.train.state import count_parameters

        self.variant = variant
        self.label = f"jax/{variant}" if variant != "library" else "jax"
        self.conv_inputs = conv_inputs
        optimizer = "sgd" if variant == "plain_sgd" else "nesterov"
        config = bench_config(workload, precision, batch_size, optimizer, conv_inputs)
        data = load_data(config)
        trainer, self.state = build_trainer(config, data)
        train = data.split("train")
        self.batch = trainer.put_batch({"image": train.images[:batch_size], "label": train.labels[:batch_size]})
        self.num_parameters = count_parameters(self.state.params)
        self.batch_size = batch_size
        self.loss = float("nan")
        self._step = trainer.train_step if variant != "grad_only" else self._grad_only_step(config, data)
        if variant == "grad_only":
            from dl4cv_jax.train import steps

            self.batch = {**self.batch, "image": steps.normalize_images(self.batch["image"], data.mean, data.std)}
        self._block = jax.block_until_ready
        # models.conv reads these while tracing: a step built with either is compiled now, under those values.
        limits = {
            "MAX_TAP_SUM_CHANNELS": tap_sum_channels,
            "MAX_COL2IM_CHANNELS": col2im_channels,
            "MAX_PHASE_CHANNELS": phase_channels,
            "USE_ONEDNN": onednn,
        }
        limits = {k: v for k, v in limits.items() if v is not None}
        defaults = {k: getattr(conv, k) for k in limits}
        try:
            for k, v in limits.items():
                setattr(conv, k, v)
            self.tap_sum_channels, self.col2im_channels = conv.MAX_TAP_SUM_CHANNELS, conv.MAX_COL2IM_CHANNELS
            self.phase_channels = conv.MAX_PHASE_CHANNELS
            self.onednn = conv.USE_ONEDNN and conv.onednn_conv.available()
            if limits:
                self._step = self._step.lower(self.state, self.batch).compile()
        finally:
            for k, v in defaults.items():
                setattr(conv, k, v)

    @staticmethod
    def _grad_only_step(config: Any, data: Any) -> Callable:
        import jax
        import jax.numpy as jnp
        import optax

        from dl4cv_jax.train import precision

        dtype = precision.compute_dtype(config)

        def step(state, batch):
            def loss_fn(params):
                variables = {"params": precision.cast_floating(params, dtype), "batch_stats": state.batch_stats}
                logits, updates = state.apply_fn(
                    variables, batch["image"].astype(dtype), train=True, mutable=["batch_stats"]
                )
                loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["label"])
                return loss.mean(), updates

            (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            # Returning the gradients keeps XLA from dropping the backward pass; the state is passed through.
            return state.replace(batch_stats=updates.get("batch_stats", {})), {"loss": loss, "grads": grads}

        return jax.jit(step, donate_argnums=(0,))

    def run(self, steps: int) -> float:
        """Seconds for `steps` steps, from dispatch of the first to the device finishing the last."""
        state, metrics = self.state, None
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = self._step(state, self.batch)
        self._block((state, metrics))
        seconds = time.perf_counter() - start
        self.state, self.loss = state, float(metrics["loss"])
        return seconds


@dataclasses.dataclass
class Measurement:
    """Per-window throughput of one benchmarked step."""

    label: str
    batch_size: int
    first_step_s: float  # the first call: compilation (jit, torch.compile) + one step
    steps_per_window: int
    window_seconds: list[float]

    @property
    def images_per_second(self) -> list[float]:
        return [self.batch_size * self.steps_per_window / s for s in self.window_seconds]

    @property
    def median(self) -> float:
        return statistics.median(self.images_per_second)

    @property
    def best(self) -> float:
        return max(self.images_per_second)

    def spread(self) -> str:
        ips = self.images_per_second
        return f"{min(ips):.0f}-{max(ips):.0f}"


def warm_up(bench: Any, target_seconds: float, min_steps: int = 2) -> tuple[float, int]:
    """Compiles, then runs at least `min_steps` steps and half a window; returns the first call's seconds and
    the number of steps that fills one window of `target_seconds`."""
    first = bench.run(1)
    steps, seconds = 0, 0.0
    while steps < min_steps or seconds < target_seconds / 2:
        seconds += bench.run(1)
        steps += 1
    return first, max(1, round(target_seconds * steps / seconds))


def measure_interleaved(benches: Sequence[Any], windows: int, window_seconds: float) -> list[Measurement]:
    """Times `windows` windows of each bench in turn (A, B, A, B, ...), so all see the same machine load.

    Every bench is warmed up first; the window length (in steps) is fixed per bench from its warm-up speed.
    """
    plans = [(bench, *warm_up(bench, window_seconds)) for bench in benches]
    results = [Measurement(b.label, b.batch_size, first, n, []) for b, first, n in plans]
    for _ in range(windows):
        for (bench, _, steps), result in zip(plans, results, strict=True):
            result.window_seconds.append(bench.run(steps))
    for bench in benches:
        if bench.loss != bench.loss or abs(bench.loss) == float("inf"):
            raise RuntimeError(f"{bench.label}: the loss is {bench.loss}; the step is broken")
    return results


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    return "{:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


# Vector extensions that decide these figures: the same "AMD EPYC" label has covered machines with and without
# AVX-512 (and its bfloat16 instructions) here, and PyTorch's bfloat16 convolutions are 20x apart between them.
CPU_EXTENSIONS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_description() -> str:
    """CPU model and which of `CPU_EXTENSIONS` it has, from /proc/cpuinfo (the platform's name elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    extensions = "/".join(e for e in CPU_EXTENSIONS if e in flags) or "no AVX2"
    return f"{fields.get('model name', platform.machine())} ({extensions})"


def machine_description() -> str:
    """CPU model and vector extensions, cores, date, Python and library versions, XLA_FLAGS, preloaded allocator,
    and the oneDNN kernel switch where it is set."""
    cpu = cpu_description()
    kernels = os.environ.get("DL4CV_ONEDNN_KERNELS")
    versions = []
    for name in ("jax", "jaxlib", "flax", "optax", "torch"):
        if name in sys.modules or importlib.util.find_spec(name):
            try:
                from importlib.metadata import version

                versions.append(f"{name} {version(name)}")
            except Exception:  # noqa: BLE001 - a missing distribution just is not listed
                pass
    return (
        f"{datetime.date.today()} | {cpu}, {os.cpu_count()} cores | Python {platform.python_version()} | "
        f"{', '.join(versions)} | XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} | "
        f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}"
        + (f" | DL4CV_ONEDNN_KERNELS={kernels!r}" if kernels is not None else "")
    )


VARIANTS = ("library", "plain_sgd", "grad_only")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[0], help="0 = the workload's default")
    parser.add_argument("--variants", nargs="+", default=["library"], choices=VARIANTS, help="see JaxTrainStep")
    parser.add_argument(
        "--conv-inputs",
        nargs="+",
        default=["auto"],
        choices=["auto", "on", "off"],
        help="config.materialize_conv_inputs (several: timed interleaved)",
    )
    parser.add_argument(
        "--tap-sum-channels",
        nargs="+",
        type=int,
        default=[None],
        help="models.conv.MAX_TAP_SUM_CHANNELS (0 = no tap-sum forward; several: timed interleaved). "
        "Steps built with this are compiled as they are built, so their 'first call' excludes compilation.",
    )
    parser.add_argument(
        "--col2im-channels",
        nargs="+",
        type=int,
        default=[None],
        help="models.conv.MAX_COL2IM_CHANNELS (0 = XLA's input gradient everywhere); as --tap-sum-channels",
    )
    parser.add_argument(
        "--phase-channels",
        nargs="+",
        type=int,
        default=[None],
        help="models.conv.MAX_PHASE_CHANNELS (0 = XLA's input gradient for strided convs); as --tap-sum-channels",
    )
    parser.add_argument(
        "--onednn",
        nargs="+",
        default=[None],
        choices=["on", "off"],
        help="models.conv.USE_ONEDNN: float32 and bf16 convs on oneDNN where available; as --tap-sum-channels",
    )
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)

    apply_xla_cpu_defaults()
    import jax

    print(machine_description())
    print(f"devices: {jax.devices()}")
    print("Several batch sizes or variants of one model and precision are timed interleaved (A, B, A, B, ...).")
    print(
        "| model | precision | batch | variant | conv inputs | tap-sum / col2im / phase channels | oneDNN "
        "| img/s (median) | min-max | steps/window x windows | first call s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for precision in args.precisions:
            workload = WORKLOADS[name]
            batches = [b or workload.batch_size for b in args.batch_sizes]
            benches = [
                JaxTrainStep(workload, precision, b, v, c, t, i, p, None if o is None else o == "on")
                for b in batches
                for v in args.variants
                for c in args.conv_inputs
                for t in args.tap_sum_channels
                for i in args.col2im_channels
                for p in args.phase_channels
                for o in args.onednn
            ]
            for bench, m in zip(benches, measure_interleaved(benches, args.windows, args.window_seconds), strict=True):
                print(
                    f"| {name} | {precision} | {m.batch_size} | {bench.variant} | {bench.conv_inputs} | "
                    f"{bench.tap_sum_channels} / {bench.col2im_channels} / {bench.phase_channels} | "
                    f"{'on' if bench.onednn else 'off'} | "
                    f"{m.median:.1f} | {m.spread()} | "
                    f"{m.steps_per_window} x {args.windows} | {m.first_step_s:.1f} |",
                    flush=True,
                )
    print(f"load average: {load_average()}")


if __name__ == "__main__":
    restart_under_jemalloc()  # as main.py does: see dl4cv_jax/cpu_allocator.py
    main()
