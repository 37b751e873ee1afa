"""Which oneDNN kernel each convolution pass of a train step runs on, and what the bridge's choice saves.

    .venv/bin/python benchmarks/onednn_kernels.py --models resnet20_cifar lenet --precisions float32 bfloat16

oneDNN offers several implementations of each pass; the bridge (`dl4cv_jax/backends/cpu/onednn_conv.cc`) takes
oneDNN's first choice except where `PreferDirectKernel` swaps a brgemm kernel for the direct JIT one. This script
reads the oneDNN custom calls of the library's compiled train step (`train_step.py`'s workload, batch and
optimizer, on the CPU backend: `config.backend='cpu'`), so the geometries are exactly the step's, and times each
distinct pass as the custom call runs it (kernel reorders included) with the bridge's kernel and with oneDNN's
first choice, alternating the two `--rounds` times. It prints one row per pass whose kernel differs, and the
total per train step (each pass counted as often as the step runs it). The timing function is the bridge's
own `Dl4cvOnednnConvTime`.
"""

import argparse
import collections
import ctypes
import pathlib
import re
import statistics
import sys
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `configs` is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import train_step  # noqa: E402

_CALL = re.compile(
    r"= (\w+)\[([\d,]+)\]\S* custom-call\(.*custom_call_target=\"dl4cv_onednn_conv_(\w+)\", "
    r"operand_layout_constraints=\{\w+\[([\d,]+)\]\S*, \w+\[([\d,]+)\]\S*\}.*"
    r"padding = dense<\[?([\d, ]+)\]?>.*strides = dense<\[?([\d, ]+)\]?>"
)  # MLIR prints an array of equal values as one value: dense<0>


def _ints(text: str, length: int = 0) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.replace(" ", "").split(","))
    return values * length if len(values) == 1 and length else values


def convolution_passes(hlo_text: str) -> collections.Counter:
    """(direction, dtype, input NHWC, kernel HWIO, strides, pads) -> how many times the compiled step runs it."""
    passes = collections.Counter()
    for match in _CALL.finditer(hlo_text):
        dtype, result, direction, first, second, padding, strides = match.groups()
        result, first, second = _ints(result), _ints(first), _ints(second)
        lhs, rhs = {
            "forward": (first, second),  # (x, kernel) -> y
            "input_gradient": (result, second),  # (g, kernel) -> dx
            "kernel_gradient": (first, result),  # (x, g) -> dk
        }[direction]
        top, bottom, left, right = _ints(padding, 4)
        passes[(direction, {"f32": "float32", "bf16": "bfloat16"}[dtype], lhs, rhs, _ints(strides, 2),
                ((top, bottom), (left, right)))] += 1  # fmt: skip
    return passes


def time_pass(key: tuple, with_rule: bool, repetitions: int) -> list[float]:
    """Milliseconds of `repetitions` runs of one pass, with the bridge's kernel or oneDNN's first choice."""
    from dl4cv_jax.backends.cpu import onednn_conv

    direction, dtype, lhs, rhs, strides, pads = key
    sizes = onednn_conv.geometry_sizes(lhs, rhs, strides, pads)
    milliseconds = (ctypes.c_double * repetitions)()
    function = onednn_conv._library().Dl4cvOnednnConvTime
    code = function(onednn_conv.DIRECTIONS.index(direction), sizes, dtype == "bfloat16", with_rule, repetitions,
                    milliseconds)  # fmt: skip
    if code != 0:
        raise RuntimeError(f"oneDNN could not run {key}")
    return list(milliseconds)


def compare_workload(model: str, precision: str, rounds: int, repetitions: int) -> str:
    from dl4cv_jax.backends.cpu import onednn_conv

    workload = train_step.WORKLOADS[model]
    bench = train_step.JaxTrainStep(workload, precision, workload.batch_size, backend="cpu")
    passes = convolution_passes(bench._step.lower(bench.state, bench.batch).compile().as_text())
    rows, totals = [], {True: 0.0, False: 0.0}
    for key, count in sorted(passes.items(), key=lambda item: str(item[0])):
        direction, dtype, lhs, rhs, strides, pads = key
        names = {rule: onednn_conv.kernel_name(direction, lhs, rhs, strides, pads, dtype, not rule)
                 for rule in (True, False)}  # fmt: skip
        if names[True] == names[False]:  # the same kernel either way: timed once, counted in both totals
            median = statistics.median(time_pass(key, True, repetitions)[1:])  # the first run may build the plan
            medians = {True: median, False: median}
        else:
            times = {True: [], False: []}
            for _ in range(rounds):
                for rule in (True, False):
                    times[rule] += time_pass(key, rule, repetitions)[1:]
            medians = {rule: statistics.median(times[rule]) for rule in times}
            layer = f"{direction} {lhs[1]}x{lhs[2]}x{lhs[3]}->{rhs[3]} k{rhs[0]} s{strides[0]}"
            rows.append(f"| {layer} | {count} | {names[False]} | {medians[False]:.3f} | {names[True]} | "
                        f"{medians[True]:.3f} | {medians[False] / medians[True]:.2f} |")  # fmt: skip
        for rule in totals:
            totals[rule] += count * medians[rule]
    header = [
        f"### {model}, {precision}, batch {bench.batch_size}: {sum(passes.values())} oneDNN calls per step",
        "",
        "| pass (input HxWxC -> output channels) | per step | oneDNN's first choice | ms | bridge's | ms | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    total = (f"\nAll passes per step: {totals[False]:.2f} ms with oneDNN's first choices, {totals[True]:.2f} ms "
             f"with the bridge's ({totals[False] / totals[True]:.3f}x).")  # fmt: skip
    return "\n".join(header + (rows or ["| (no pass whose kernel differs) | | | | | | |"])) + total


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[train_step.process_options()])
    parser.add_argument("--models", nargs="+", default=["resnet20_cifar", "lenet"], choices=list(train_step.WORKLOADS))
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=train_step.PRECISIONS)
    parser.add_argument("--rounds", type=int, default=7, help="alternations of the two kernels per pass")
    parser.add_argument("--repetitions", type=int, default=6, help="runs per round (the first is not counted)")
    args = parser.parse_args(argv)
    train_step.configure_benchmark_process(args, restart=False)  # done already under __main__; for callers
    from dl4cv_jax.backends.cpu import onednn_conv

    if not onednn_conv.available():
        raise SystemExit("oneDNN's convolutions are not available here (see the warning above)")
    print(train_step.machine_description(), flush=True)
    for model in args.models:
        for precision in args.precisions:
            print("\n" + compare_workload(model, precision, args.rounds, args.repetitions), flush=True)


if __name__ == "__main__":
    train_step.configure_benchmark_process()  # as main.py does, first thing (it may restart under jemalloc)
    main()
