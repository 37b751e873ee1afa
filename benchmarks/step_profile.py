"""Where the library's train step spends its time: a `jax.profiler` trace of a few steps, summarised as tables.

    .venv/bin/python benchmarks/step_profile.py --models resnet20_cifar --precisions float32
    .venv/bin/python benchmarks/step_profile.py --models lenet --precisions bfloat16 --top 15
    .venv/bin/python benchmarks/step_profile.py --models lenet --backend xla   # Flax's layers on XLA alone

The step is `train_step.py`'s (synthetic batch already on the device, main.py's XLA flag, `--backend` as
`config.backend`: 'auto' = the CPU backend on one CPU device, as main.py runs it). For each workload it
prints the step's speed untraced, then three tables from the trace: time per kind of operation (an XLA fusion's
kind, read from its name, or a custom call's target, such as oneDNN's convolutions), the slowest operations with
their output shape and the JAX operation they came from (the compiled HLO's metadata), and the time per step
with no operation running on any thread. TensorBoard's profile tab shows the same trace graphically
(`--config.profile_steps=N` in main.py); this is the summary to paste into benchmarks/RESULTS.md.

Like main.py, it restarts under jemalloc with `oversize_threshold:0` (`dl4cv_jax/backends/cpu/allocator.py`;
`--allocator system` keeps glibc's malloc, `--xla-cpu-defaults off` leaves main.py's XLA flag out). That
matters more here than anywhere: under glibc, or jemalloc's defaults, XLA:CPU's 8 MB temporaries are faulted in
afresh every step, and each elementwise pass over a 128x32x32x16 tensor took 2.2-2.9 ms instead of 0.2-0.6 ms,
which made XLA's elementwise fusions look like ResNet-20's bottleneck when they were not (RESULTS.md).
"""

import argparse
import collections
import gzip
import json
import pathlib
import re
import sys
import tempfile
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `configs` is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import train_step  # noqa: E402

# One HLO instruction: `  %name = type[shape]{layout} opcode(...` (ROOT optional), with its metadata.
_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%(\S+) = (\S+) ")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_OP_NAME = re.compile(r'op_name="([^"]+)"')
MINOR_SHARE = 0.005  # kinds below this share of the operations' time are summed in one row


def hlo_instructions(hlo_text: str) -> dict[str, tuple[str, str, str]]:
    """Instruction name -> (kind, output type, JAX op name) for every instruction of a compiled module's text.

    The kind is a custom call's target, or the name without its numeric and `.clone` suffixes (XLA names fusions
    after what they compute: `add_maximum_fusion.13` is of kind `add_maximum_fusion`, `cond.77.clone` `cond`)."""
    instructions = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, shape = match.groups()
        target, op_name = _TARGET.search(line), _OP_NAME.search(line)
        kind = target.group(1) if target else re.sub(r"(\.(\d+|clone))+$", "", name)
        instructions[name] = (kind, shape, op_name.group(1) if op_name else "")
    return instructions


def trace_events(trace_dir: pathlib.Path) -> list[dict]:
    """The complete ('X') events of the perfetto trace `jax.profiler.trace(create_perfetto_trace=True)` wrote."""
    (path,) = trace_dir.rglob("*perfetto_trace.json.gz")
    with gzip.open(path) as file:
        trace = json.load(file)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    return [e for e in events if e.get("ph") == "X" and "dur" in e]


def idle_microseconds(events: Sequence[dict]) -> float:
    """Time between the first operation's start and the last one's end with no operation running anywhere."""
    idle, end = 0.0, None
    for event in sorted(events, key=lambda e: e["ts"]):
        if end is not None and event["ts"] > end:
            idle += event["ts"] - end
        end = max(end or 0.0, event["ts"] + event["dur"])
    return idle


def self_times(events: Sequence[dict]) -> list[float]:
    """Each event's duration less that of the events nested in it on its thread (a conditional's branch runs
    its own operations, which the trace lists inside the conditional's), so that no time is counted twice."""
    own = [float(e["dur"]) for e in events]
    by_thread = collections.defaultdict(list)
    for index, event in enumerate(events):
        by_thread[event["tid"]].append(index)
    for indices in by_thread.values():
        stack: list[int] = []
        for index in sorted(indices, key=lambda i: (events[i]["ts"], -events[i]["dur"])):
            start = events[index]["ts"]
            while stack and events[stack[-1]]["ts"] + events[stack[-1]]["dur"] <= start:
                stack.pop()
            if stack:
                own[stack[-1]] -= events[index]["dur"]
            stack.append(index)
    return own


def summarise(events: Sequence[dict], instructions: dict[str, tuple[str, str, str]], steps: int, top: int) -> str:
    """Markdown tables: time per kind (kinds under 0.5% of the total in one row), the `top` slowest operations,
    both in self time, and idle time, all per step."""
    ops = [e for e in events if e["name"] in instructions]
    per_kind, count = collections.Counter(), collections.Counter()
    per_op = collections.Counter()
    for event, own in zip(ops, self_times(ops), strict=True):
        per_kind[instructions[event["name"]][0]] += own
        count[instructions[event["name"]][0]] += 1
        per_op[event["name"]] += own
    total = sum(per_kind.values())
    lines = ["| kind | ms per step | per step | share |", "|---|---|---|---|"]
    minor = [kind for kind, us in per_kind.items() if us < MINOR_SHARE * total]
    for kind, us in per_kind.most_common():
        if kind not in minor:
            lines.append(f"| {kind} | {us / steps / 1e3:.2f} | {count[kind] / steps:.0f} | {us / total:.1%} |")
    if minor:
        us, n = sum(per_kind[k] for k in minor), sum(count[k] for k in minor)
        lines.append(f"| {len(minor)} other kinds | {us / steps / 1e3:.2f} | {n / steps:.0f} | {us / total:.1%} |")
    lines.append(f"| **all operations** | **{total / steps / 1e3:.2f}** | {len(ops) / steps:.0f} | |")
    lines += ["", "| operation | ms per step | output | from |", "|---|---|---|---|"]
    for name, us in per_op.most_common(top):
        _, shape, op_name = instructions[name]
        lines.append(f"| {name} | {us / steps / 1e3:.2f} | `{shape}` | {op_name[-80:]} |")
    lines += ["", f"No operation running on any thread: {idle_microseconds(ops) / steps / 1e3:.2f} ms per step."]
    return "\n".join(lines)


def profile_workload(model: str, precision: str, batch_size: int, steps: int, top: int, backend: str = "auto") -> str:
    import jax

    workload = train_step.WORKLOADS[model]
    bench = train_step.JaxTrainStep(workload, precision, batch_size or workload.batch_size, backend=backend)
    # Run the very program whose HLO is read (the trace names its instructions), and compile it only once.
    bench._step = bench._step.lower(bench.state, bench.batch).compile()
    instructions = hlo_instructions(bench._step.as_text())
    train_step.warm_up(bench, target_seconds=2.0)
    seconds = bench.run(steps)
    with tempfile.TemporaryDirectory() as directory:
        with jax.profiler.trace(directory, create_perfetto_trace=True):
            bench.run(steps)
        events = trace_events(pathlib.Path(directory))
    where = "" if backend == "auto" else f", backend {backend}"
    header = (
        f"### {model}, {precision}, batch {bench.batch_size}{where}: {steps * bench.batch_size / seconds:.1f} img/s "
        f"untraced ({seconds / steps * 1e3:.1f} ms per step), then {steps} steps traced"
    )
    return header + "\n\n" + summarise(events, instructions, steps, top)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[train_step.process_options()])
    parser.add_argument("--models", nargs="+", default=["resnet20_cifar"], choices=list(train_step.WORKLOADS))
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=train_step.PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = each workload's default (train_step.py)")
    parser.add_argument("--steps", type=int, default=5, help="steps traced (and timed untraced before)")
    parser.add_argument("--top", type=int, default=12, help="how many of the slowest operations to list")
    parser.add_argument("--backend", default="auto", choices=train_step.BACKENDS, help="config.backend")
    args = parser.parse_args(argv)
    train_step.configure_benchmark_process(args, restart=False)  # done already under __main__; for callers
    print(train_step.machine_description(), flush=True)
    for model in args.models:
        for precision in args.precisions:
            profile = profile_workload(model, precision, args.batch_size, args.steps, args.top, args.backend)
            print("\n" + profile, flush=True)


if __name__ == "__main__":
    train_step.configure_benchmark_process()  # as main.py does; see the module docstring for why it matters here
    main()
