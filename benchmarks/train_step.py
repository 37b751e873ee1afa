"""Images/second of the library's jitted train step, on synthetic data, for the benchmark workloads.

    .venv/bin/python benchmarks/train_step.py                               # every model, float32 and bfloat16
    .venv/bin/python benchmarks/train_step.py --models resnet20_cifar --precisions float32 --batch-sizes 256
    .venv/bin/python benchmarks/train_step.py --xla-cpu-defaults off        # without main.py's XLA:CPU flag
    .venv/bin/python benchmarks/train_step.py --models lenet --backend xla cpu   # both backends, interleaved

What is timed is `build_trainer(config, data).train_step(state, batch)`, the step the training loop runs: uint8
images normalised on the device, the model in `config.precision`, softmax cross-entropy, optax SGD with Nesterov
momentum 0.9 and L2 weight decay 5e-4 (kernels only), BatchNorm statistics updated, loss and accuracy returned.
The batch is put on the device once, so the input pipeline is not part of the figure. After a warm-up (the
compilation and a few steps), `--windows` windows of about `--window-seconds` each are timed; each window ends
with `jax.block_until_ready` on the new state and metrics, because a jitted call returns before the device has
finished. The figure is the median window; the spread (min-max) is printed with it.

`--backend` is `config.backend` (dl4cv_jax/backends: 'auto' = the CPU backend on one CPU device, Flax's layers on
XLA elsewhere); `--onednn`, `--keep-conv-inputs` and the `--*-channels` limits are options passed to the CPU
backend (module constants of `dl4cv_jax/backends/cpu/conv.py`, read while the step is traced).

The process is set up as `main.py` sets it up, by `dl4cv_jax.process.configure_process(restart=True)` before any
computation: on a machine with no accelerator plugin it adds main.py's XLA:CPU flag
(`dl4cv_jax/backends/cpu/xla_flags.py`; `--xla-cpu-defaults off` leaves it out) and restarts under jemalloc where
the machine has it (`dl4cv_jax/backends/cpu/allocator.py`; `--allocator system` keeps glibc's malloc). Every
benchmark entry point takes these two options (`process_options`).
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

from dl4cv_jax.process import configure_process  # noqa: E402  (imports nothing until it is called)

PRECISIONS = ("float32", "bfloat16")
BACKENDS = ("auto", "xla", "cpu")  # config.backend: dl4cv_jax.backends.BACKENDS, whose import would load jax
ALLOCATORS = ("jemalloc", "system")
ON_OFF = ("on", "off")
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


def process_options() -> argparse.ArgumentParser:
    """The process set-up options every benchmark entry point takes (add it to `parents=`), main.py's by default:
    `--allocator jemalloc|system` and `--xla-cpu-defaults on|off` (see the module docstring)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--allocator",
        default="jemalloc",
        choices=ALLOCATORS,
        help="jemalloc: restart under it where the machine has it, as main.py does; system: glibc's malloc "
        "(a jemalloc already in LD_PRELOAD stays: the header shows LD_PRELOAD)",
    )
    parser.add_argument(
        "--xla-cpu-defaults",
        default="on",
        choices=ON_OFF,
        help="on: main.py's XLA:CPU flag (dl4cv_jax/backends/cpu/xla_flags.py); off: XLA's own defaults",
    )
    return parser


def configure_benchmark_process(args: argparse.Namespace | None = None, restart: bool = True) -> argparse.Namespace:
    """`configure_process` as the `process_options` in `args` say (default: parsed from the command line, whose
    other arguments are left for the script's own parser), then starts jax's backends, so that XLA_FLAGS is final:
    the trainer calls `configure_process()` itself and would otherwise add main.py's XLA:CPU flag back where
    `--xla-cpu-defaults off` left it out. Call it first thing under `__main__`: `restart` may restart the process
    under jemalloc."""
    if args is None:
        args, _ = process_options().parse_known_args()
    configure_process(
        restart=restart, jemalloc=args.allocator == "jemalloc", xla_cpu_flags=args.xla_cpu_defaults == "on"
    )
    import jax

    jax.devices()
    return args


def bench_config(
    workload: Workload, precision: str, batch_size: int, optimizer: str = "nesterov", backend: str = "auto"
) -> Any:
    """The workload's experiment config on synthetic data, with the optimizer both frameworks use.

    SGD, learning rate 0.1, Nesterov momentum 0.9, L2 weight decay 5e-4; a constant schedule and no label
    smoothing, so PyTorch's SGD and cross-entropy are the same computation. `optimizer='sgd'` drops momentum and
    decay (to measure what the optimizer chain costs). `backend` is `config.backend`.
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
    config.backend = backend
    return config


class JaxTrainStep:
    """The library's jitted train step on one synthetic batch already on the device.

    `variant`: 'library' (the real step); 'plain_sgd' (the real step with SGD without momentum and decay);
    'grad_only' (forward + backward of the same model and loss on pre-normalised float32 images, no optimizer
    update, no metrics: what is left of the step without the library's extras). `backend` is `config.backend`.
    The other arguments, None for the backend's defaults, are options passed to the CPU backend: the module
    constants of `backends/cpu/conv.py` (`MAX_TAP_SUM_CHANNELS`, `MAX_COL2IM_CHANNELS`, `MAX_PHASE_CHANNELS`,
    `USE_ONEDNN`, `KEEP_CONV_INPUTS`), set while this step is compiled (at once, where any is given).
    """

    framework = "jax"

    def __init__(
        self,
        workload: Workload,
        precision: str,
        batch_size: int,
        variant: str = "library",
        backend: str = "auto",
        tap_sum_channels: int | None = None,
        col2im_channels: int | None = None,
        phase_channels: int | None = None,
        onednn: bool | None = None,
        keep_conv_inputs: bool | None = None,
    ):
        import jax

        from dl4cv_jax.backends import resolve_backend
        from dl4cv_jax.data import load_data
        from dl4cv_jax.train.loop import build_trainer
        from dl4cv_jax.train.state import count_parameters

        self.variant = variant
        self.label = f"jax/{variant}" if variant != "library" else "jax"
        optimizer = "sgd" if variant == "plain_sgd" else "nesterov"
        config = bench_config(workload, precision, batch_size, optimizer, backend)
        data = load_data(config)
        trainer, self.state = build_trainer(config, data)
        self.backend = resolve_backend(backend)  # after build_trainer, which has set the process up
        self.backend_label = backend if backend != "auto" else f"auto ({self.backend})"
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
        self.tap_sum_channels = self.col2im_channels = self.phase_channels = None
        self.onednn = self.keep_conv_inputs = False
        options = {
            "MAX_TAP_SUM_CHANNELS": tap_sum_channels,
            "MAX_COL2IM_CHANNELS": col2im_channels,
            "MAX_PHASE_CHANNELS": phase_channels,
            "USE_ONEDNN": onednn,
            "KEEP_CONV_INPUTS": keep_conv_inputs,
        }
        options = {k: v for k, v in options.items() if v is not None}
        if self.backend != "cpu":
            if options:
                raise ValueError(f"{sorted(options)} are options of the CPU backend; this step runs on {backend!r}")
            return
        from dl4cv_jax.backends.cpu import conv

        # conv.py reads these while tracing: a step built with any of them is compiled now, under those values.
        defaults = {k: getattr(conv, k) for k in options}
        try:
            for k, v in options.items():
                setattr(conv, k, v)
            self.tap_sum_channels, self.col2im_channels = conv.MAX_TAP_SUM_CHANNELS, conv.MAX_COL2IM_CHANNELS
            self.phase_channels, self.keep_conv_inputs = conv.MAX_PHASE_CHANNELS, conv.KEEP_CONV_INPUTS
            self.onednn = conv.USE_ONEDNN and conv.onednn_conv.available()
            if options:
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


def cpu_option(value: str | None) -> bool | None:
    """An on/off option of the CPU backend as a module constant's value; None keeps the backend's default."""
    return None if value is None else value == "on"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[process_options()])
    parser.add_argument("--models", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[0], help="0 = the workload's default")
    parser.add_argument("--variants", nargs="+", default=["library"], choices=VARIANTS, help="see JaxTrainStep")
    parser.add_argument(
        "--backend",
        nargs="+",
        default=["auto"],
        choices=BACKENDS,
        help="config.backend (several: timed interleaved); the options below apply to the CPU backend only",
    )
    parser.add_argument(
        "--keep-conv-inputs",
        nargs="+",
        default=[None],
        choices=ON_OFF,
        help="backends.cpu.conv.KEEP_CONV_INPUTS: conv inputs of XLA's convolutions kept as buffers (default on); "
        "as --tap-sum-channels",
    )
    parser.add_argument(
        "--tap-sum-channels",
        nargs="+",
        type=int,
        default=[None],
        help="backends.cpu.conv.MAX_TAP_SUM_CHANNELS (0 = no tap-sum forward; several: timed interleaved). "
        "Steps built with this are compiled as they are built, so their 'first call' excludes compilation.",
    )
    parser.add_argument(
        "--col2im-channels",
        nargs="+",
        type=int,
        default=[None],
        help="backends.cpu.conv.MAX_COL2IM_CHANNELS (0 = XLA's input gradient everywhere); as --tap-sum-channels",
    )
    parser.add_argument(
        "--phase-channels",
        nargs="+",
        type=int,
        default=[None],
        help="backends.cpu.conv.MAX_PHASE_CHANNELS (0 = XLA's input gradient for strided convs); as --tap-sum-channels",
    )
    parser.add_argument(
        "--onednn",
        nargs="+",
        default=[None],
        choices=ON_OFF,
        help="backends.cpu.conv.USE_ONEDNN: float32 and bf16 convs on oneDNN where available; as --tap-sum-channels",
    )
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)

    configure_benchmark_process(args, restart=False)  # done already under __main__; for callers of main()
    import jax

    from dl4cv_jax.backends import resolve_backend

    cpu_options = [
        {
            "keep_conv_inputs": cpu_option(k),
            "tap_sum_channels": t,
            "col2im_channels": i,
            "phase_channels": p,
            "onednn": cpu_option(o),
        }
        for k in args.keep_conv_inputs
        for t in args.tap_sum_channels
        for i in args.col2im_channels
        for p in args.phase_channels
        for o in args.onednn
    ]
    print(machine_description())
    print(f"devices: {jax.devices()}")
    print("Several batch sizes or variants of one model and precision are timed interleaved (A, B, A, B, ...).")
    print(
        "| model | precision | batch | variant | backend | conv inputs | tap-sum / col2im / phase channels | oneDNN "
        "| img/s (median) | min-max | steps/window x windows | first call s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for precision in args.precisions:
            workload = WORKLOADS[name]
            batches = [b or workload.batch_size for b in args.batch_sizes]
            benches = [
                JaxTrainStep(workload, precision, b, v, backend, **options)
                for b in batches
                for v in args.variants
                for backend in args.backend
                for options in (cpu_options if resolve_backend(backend) == "cpu" else [{}])
            ]
            for bench, m in zip(benches, measure_interleaved(benches, args.windows, args.window_seconds), strict=True):
                cpu = bench.backend == "cpu"
                channels = f"{bench.tap_sum_channels} / {bench.col2im_channels} / {bench.phase_channels}"
                print(
                    f"| {name} | {precision} | {m.batch_size} | {bench.variant} | {bench.backend_label} | "
                    f"{('on' if bench.keep_conv_inputs else 'off') if cpu else '-'} | {channels if cpu else '-'} | "
                    f"{'on' if bench.onednn else 'off'} | "
                    f"{m.median:.1f} | {m.spread()} | "
                    f"{m.steps_per_window} x {args.windows} | {m.first_step_s:.1f} |",
                    flush=True,
                )
    print(f"load average: {load_average()}")


if __name__ == "__main__":
    configure_benchmark_process()  # as main.py does, first thing (it may restart the process under jemalloc)
    main()
