"""JAX (the library's train step) against PyTorch on the same models, batch, optimizer and precision, in one run.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/compare_frameworks.py --models lenet resnet20_cifar --precisions float32
    .venv/bin/python benchmarks/compare_frameworks.py --models resnet18_cifar --xla-cpu-defaults on off --compile
    .venv/bin/python benchmarks/compare_frameworks.py --models lenet --allocators system --backend xla

For each XLA setting (`--xla-cpu-defaults on`: main.py's `--xla_cpu_experimental_ynn_fusion_type=-individual_
convolution`; `off`: XLA's own defaults) one worker process builds, for every model and precision, the library's
step (`train_step.JaxTrainStep`) and the PyTorch step (`torch_reference.TorchTrainStep`, eager, and compiled with
`--compile`), warms them up and then times their windows in turn: JAX, PyTorch, JAX, PyTorch, ... so that both
see the same load on a shared machine. Both frameworks get the same cores: XLA's pool uses every core, PyTorch
gets `torch.set_num_threads(--threads)` (default: every core). `--rounds 2` runs the whole set twice (A B A B
across processes too). `--allocators jemalloc` (the default, what main.py runs under where the machine has it:
`dl4cv_jax/backends/cpu/allocator.py`) runs the workers with jemalloc preloaded, `system` with glibc's malloc; both
frameworks in a worker use the same allocator. `--allocators each` runs each framework as it runs by default,
JAX under jemalloc (as main.py restarts itself) and PyTorch under the system allocator: the allocator is chosen
when a process starts, so each framework then gets a process of its own and the parent alternates their windows
(`StepServer`), which keeps the pairing of one process.

The table gives the median images/second of each and the ratio JAX / PyTorch, with the load averages (as
`uptime` prints them) at the end of each row's measurement. Under `--allocators each` it also gives each server's
median minor page faults per step: a process that re-faults its buffers every step shows there, tenfold.

A worker (or step server) is told its setting on its command line (`--xla-cpu-defaults`, `--allocators`,
`--backend`, one value each) and sets its process up from them with `dl4cv_jax.process.configure_process`, as
main.py does, before anything else. `--backend` is the JAX step's `config.backend` ('auto', as main.py runs it,
by default; another is named in the model cell).
"""

import argparse
import ctypes.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.step_server import RESULT  # noqa: E402
from benchmarks.train_step import (  # noqa: E402
    BACKENDS,
    PRECISIONS,
    WORKLOADS,
    configure_benchmark_process,
    load_average,
    machine_description,
)
from dl4cv_jax.backends.cpu.allocator import jemalloc_environment, jemalloc_preloaded  # noqa: E402
from dl4cv_jax.backends.cpu.xla_flags import XLA_CPU_FLAG  # noqa: E402


def run_worker(args: argparse.Namespace) -> None:
    """In a fresh process set up for its one setting (`main`): time JAX and PyTorch interleaved, print rows."""
    import torch

    from benchmarks import train_step
    from benchmarks.torch_reference import TorchTrainStep

    torch.set_num_threads(args.threads)
    print(f"# {machine_description()} | torch threads {torch.get_num_threads()}", flush=True)
    for name in args.models:
        for precision in args.precisions:
            workload = WORKLOADS[name]
            batch = args.batch_size or workload.batch_size
            benches = [train_step.JaxTrainStep(workload, precision, batch, backend=args.backend)]
            benches += [TorchTrainStep(workload, precision, batch, compile=False)]
            if args.compile:
                benches += [TorchTrainStep(workload, precision, batch, compile=True)]
            counts = {b.label: b.num_parameters for b in benches}
            if len(set(counts.values())) != 1:
                raise AssertionError(f"{name}: parameter counts differ: {counts}")
            load_before = load_average()
            measured = train_step.measure_interleaved(benches, args.windows, args.window_seconds)
            allocator = "jemalloc" if jemalloc_preloaded(os.environ) else "system"
            parameters, setting = benches[0].num_parameters, args.xla_cpu_defaults
            row = result_row(setting, name, precision, batch, allocator, parameters, load_before, measured)
            row["xla_flags"], row["backend"] = flags_beyond_main(os.environ), args.backend
            print(RESULT + json.dumps(row), flush=True)


def result_row(
    xla_cpu_defaults: str,
    model: str,
    precision: str,
    batch: int,
    allocator: str,
    parameters: int,
    load_before: str,
    measured: Sequence[Any],
) -> dict:
    """One table row as JSON: the setting, the load, and per framework its window figures (`Measurement`s)."""
    return {
        "model": model,
        "precision": precision,
        "batch": batch,
        "xla_cpu_defaults": xla_cpu_defaults,
        "allocator": allocator,
        "parameters": parameters,
        "load_before": load_before,
        "load_after": load_average(),
        **{
            m.label: {
                "median": m.median,
                "best": m.best,
                "spread": m.spread(),
                "windows": m.images_per_second,
                "steps": m.steps_per_window,
                "first_s": m.first_step_s,
            }
            for m in measured
        },
    }


def flags_beyond_main(environ: Mapping[str, str]) -> str:
    """The XLA_FLAGS in `environ` other than main.py's own (those the row's "XLA flag" cell adds)."""
    return " ".join(f for f in environ.get("XLA_FLAGS", "").split() if f != XLA_CPU_FLAG)


def allocator_environment(allocator: str) -> dict[str, str]:
    """This process's environment with jemalloc preloaded as main.py would ('jemalloc'), or without it."""
    env = {k: v for k, v in os.environ.items() if not (k == "LD_PRELOAD" and jemalloc_preloaded(os.environ))}
    if allocator == "system":
        return env  # and the worker is told `--allocators system`, so it does not restart under jemalloc
    library = ctypes.util.find_library("jemalloc")
    preloaded = jemalloc_environment(env, library, cpu_only_machine=True)
    if preloaded is None:
        raise SystemExit("--allocators jemalloc: no jemalloc library found (apt install libjemalloc2)")
    return preloaded


def worker_environment(args: argparse.Namespace, xla_cpu_defaults: str, allocator: str) -> dict[str, str]:
    """A worker's environment: the allocator, and XLA_FLAGS with main.py's flag ('on') or without it ('off')."""
    env = allocator_environment(allocator)
    inherited = env.get("XLA_FLAGS", "").split()
    if xla_cpu_defaults == "off":  # XLA's own defaults, even where the caller's XLA_FLAGS has main.py's flag
        inherited = [flag for flag in inherited if flag != XLA_CPU_FLAG]
    env["XLA_FLAGS"] = " ".join([*inherited, *args.xla_flags.split()])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def worker_arguments(args: argparse.Namespace, xla_cpu_defaults: str, allocator: str) -> list[str]:
    """The command line of a worker or server for one XLA setting and allocator (what it configures itself with)."""
    command = [sys.executable, __file__, "--xla-cpu-defaults", xla_cpu_defaults, "--allocators", allocator]
    command += ["--backend", args.backend, "--threads", str(args.threads)]
    command += ["--models", *args.models, "--precisions", *args.precisions]
    command += ["--batch-size", str(args.batch_size)]
    command += ["--windows", str(args.windows), "--window-seconds", str(args.window_seconds)]
    return command + (["--compile"] if args.compile else [])


def spawn_worker(args: argparse.Namespace, xla_cpu_defaults: str, allocator: str) -> list[dict]:
    """Runs one worker for `xla_cpu_defaults` and `allocator`; returns its rows, its other output passes through."""
    env = worker_environment(args, xla_cpu_defaults, allocator)
    command = [*worker_arguments(args, xla_cpu_defaults, allocator), "--worker"]
    rows = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
        for line in process.stdout:
            if line.startswith(RESULT):
                rows.append(json.loads(line[len(RESULT) :]))
                report_row(args, rows[-1])
            else:
                print(line, end="", flush=True)
    if process.returncode:
        raise SystemExit(f"worker ({xla_cpu_defaults}, {allocator}) failed with exit status {process.returncode}")
    return rows


HEADER = (
    "| model | precision | batch | XLA flag | allocator | JAX img/s median (best) | PyTorch img/s median (best) "
    "| JAX / PyTorch: medians, paired, bests | torch.compile img/s median (best) | JAX / compiled (medians) "
    "| minor faults / step (JAX, PyTorch) | load avg (1, 5, 15 min) |\n" + "|---" * 12 + "|"
)


def paired_ratio(row: dict, other: str) -> float:
    """Median over windows of JAX / `other`, each JAX window with the window timed right after it."""
    return statistics.median(a / b for a, b in zip(row["jax"]["windows"], row[other]["windows"], strict=True))


def fault_cells(row: dict) -> str:
    """Median minor faults per step of each framework's server (`--allocators each` only; else "-")."""
    counts = [row[label].get("faults_per_step") for label in ("jax", "torch")]
    return "-" if None in counts else ", ".join(f"{count:,.0f}" for count in counts)


def format_row(row: dict) -> str:
    jax_, torch_ = row["jax"], row["torch"]
    compiled = row.get("torch/compile")
    compiled_cells = "not run | -"
    if compiled:
        compiled_cells = (
            f"{compiled['median']:.1f} ({compiled['best']:.1f}) | {jax_['median'] / compiled['median']:.2f}"
        )
    flag = {"on": "ynn -individual_convolution", "off": "none"}[row["xla_cpu_defaults"]]
    flag += f" ({row['xla_flags']})" if row.get("xla_flags") else ""
    ratios = (
        f"**{jax_['median'] / torch_['median']:.2f}**, {paired_ratio(row, 'torch'):.2f}, "
        f"{jax_['best'] / torch_['best']:.2f}"
    )
    backend = row.get("backend", "auto")
    model = row["model"] if backend == "auto" else f"{row['model']} (backend {backend})"
    return (
        f"| {model} | {row['precision']} | {row['batch']} | {flag} | {row.get('allocator', 'system')} "
        f"| {jax_['median']:.1f} ({jax_['best']:.1f}) "
        f"| {torch_['median']:.1f} ({torch_['best']:.1f}) | {ratios} | {compiled_cells} | {fault_cells(row)} "
        f"| {row['load_after']} |"
    )


def report_row(args: argparse.Namespace, row: dict) -> None:
    """Prints the row as it comes and appends it to --jsonl, so rows survive an interrupted run."""
    print(f"  -> {format_row(row)}", flush=True)
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")


def run_each_by_default(args: argparse.Namespace, xla_cpu_defaults: str) -> list[dict]:
    """`--allocators each`: JAX in a server under jemalloc, PyTorch in one under the system allocator, measured
    by `train_step.measure_interleaved` as if both were in this process (it alternates their windows)."""
    from benchmarks import train_step
    from benchmarks.step_server import StepServer

    jax_environment = worker_environment(args, xla_cpu_defaults, "jemalloc")
    servers = [
        StepServer([*worker_arguments(args, xla_cpu_defaults, "jemalloc"), "--serve", "jax"], jax_environment),
        StepServer(
            [*worker_arguments(args, xla_cpu_defaults, "system"), "--serve", "torch"],
            worker_environment(args, xla_cpu_defaults, "system"),
        ),
    ]
    rows = []
    try:
        for name in args.models:
            for precision in args.precisions:
                batch = args.batch_size or WORKLOADS[name].batch_size
                benches = [server.build(name, precision, batch, args.backend) for server in servers]
                counts = {b.label: b.num_parameters for b in benches}
                if len(set(counts.values())) != 1:
                    raise AssertionError(f"{name}: parameter counts differ: {counts}")
                load_before = load_average()
                measured = train_step.measure_interleaved(benches, args.windows, args.window_seconds)
                allocator, parameters = "each (JAX jemalloc, PyTorch system)", benches[0].num_parameters
                row = result_row(xla_cpu_defaults, name, precision, batch, allocator, parameters, load_before, measured)
                row["xla_flags"], row["backend"] = flags_beyond_main(jax_environment), args.backend
                for bench in benches:
                    row[bench.label]["faults_per_step"] = bench.median_faults_per_step(args.windows)
                report_row(args, row)
                rows.append(row)
    finally:
        for server in servers:
            server.close()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = each workload's default (see train_step.py)")
    parser.add_argument("--xla-cpu-defaults", nargs="+", default=["on"], choices=("on", "off"))
    parser.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the JAX side (investigation)")
    parser.add_argument("--allocators", nargs="+", default=["jemalloc"], choices=("jemalloc", "system", "each"))
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="config.backend of the JAX step")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every worker this many times (A B A B)")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    parser.add_argument("--jsonl", default="", help="also append every row, as JSON, to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker or args.serve:  # one setting each, from the parent
        (args.xla_cpu_defaults,), (args.allocator,) = args.xla_cpu_defaults, args.allocators
        if args.worker or args.serve == "jax":  # first thing: it may restart the process under jemalloc
            configure_benchmark_process(args)
    if args.serve:
        from benchmarks.step_server import serve

        serve(args.serve, args.threads)
        return
    if args.worker:
        run_worker(args)
        return
    print(f"load average at start: {load_average()}", flush=True)
    rows = []
    for _ in range(args.rounds):
        for setting in args.xla_cpu_defaults:
            for allocator in args.allocators:
                if allocator == "each":
                    rows += run_each_by_default(args, setting)
                else:
                    rows += spawn_worker(args, setting, allocator)
    print(f"\n{machine_description()}\n")
    print(HEADER)
    for row in rows:
        print(format_row(row))


if __name__ == "__main__":
    main()
