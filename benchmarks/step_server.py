"""One framework's train step in a process of its own, run window by window on its parent's command.

Why: an allocator is chosen when a process starts (LD_PRELOAD), so comparing JAX as main.py runs it (under
jemalloc) with PyTorch as it runs by default (glibc's malloc) takes two processes. To keep what one process
gives, windows of both timed in turn under the same load, the parent (`compare_frameworks.py --allocators
each`) drives two servers and alternates their windows.

The protocol is one command per line on the server's stdin, each answered by one `RESULT <json>` line on its
stdout (anything else it prints goes to stderr):

    build MODEL PRECISION BATCH WINDOW_SECONDS  ->  {"label", "parameters", "first_s", "steps"}   (built, warmed up)
    window                                      ->  {"seconds"}   (one window of `steps` steps)
    loss                                        ->  {"loss"}      (the last step's loss)
"""

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

RESULT = "RESULT "
FRAMEWORKS = ("jax", "torch")


def serve(framework: str, xla_cpu_defaults: bool, threads: int) -> None:
    """The server's side: builds `framework`'s step (`jax`: the library's, `torch`: the reference) on command."""
    sys.stdout, answers = sys.stderr, sys.stdout  # libraries' prints must not break the protocol
    from benchmarks import train_step

    if framework == "jax":
        from dl4cv_jax.xla_cpu import apply_xla_cpu_defaults

        apply_xla_cpu_defaults(xla_cpu_defaults)
    else:
        import torch

        torch.set_num_threads(threads)
    print(f"# {framework} server: {train_step.machine_description()}", flush=True)
    bench, steps = None, 0
    for line in sys.stdin:
        command, *fields = line.split()
        if command == "build":
            bench = _build(framework, *fields[:3])
            first, steps = train_step.warm_up(bench, float(fields[3]))
            reply = {"label": bench.label, "parameters": bench.num_parameters, "first_s": first, "steps": steps}
        elif command == "window":
            reply = {"seconds": bench.run(steps)}
        elif command == "loss":
            reply = {"loss": float(bench.loss)}
        else:
            raise SystemExit(f"step server: unknown command {line.strip()!r}; choose build, window or loss")
        answers.write(RESULT + json.dumps(reply) + "\n")
        answers.flush()


def _build(framework: str, model: str, precision: str, batch: str) -> Any:
    from benchmarks.train_step import WORKLOADS, JaxTrainStep

    workload = WORKLOADS[model]
    if framework == "jax":
        return JaxTrainStep(workload, precision, int(batch))
    from benchmarks.torch_reference import TorchTrainStep

    return TorchTrainStep(workload, precision, int(batch), compile=False)


class StepServer:
    """The parent's handle on one server process."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]):
        self.command = list(command)
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        self.process = subprocess.Popen(command, env=dict(env), text=True, **pipes)

    def ask(self, request: str) -> dict[str, Any]:
        """Sends one command and returns its answer; a server that died ends the benchmark with its status."""
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line.startswith(RESULT):
            status = self.process.wait()
            raise SystemExit(f"step server {' '.join(self.command[-6:])} stopped (exit status {status}) at {request!r}")
        return json.loads(line[len(RESULT) :])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
