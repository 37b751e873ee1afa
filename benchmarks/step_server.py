"""One framework's train step in a process of its own, run window by window on its parent's command.

Why: an allocator is chosen when a process starts (LD_PRELOAD), so comparing JAX as main.py runs it (under
jemalloc) with PyTorch as it runs by default (glibc's malloc) takes two processes. To keep what one process
gives, windows of both timed in turn under the same load, the parent (`compare_frameworks.py --allocators
each`) holds a `StepServer` per framework, which looks like a bench to `train_step.measure_interleaved`: that
function warms both up and alternates their windows exactly as it does within one process.

The protocol is one command per line on the server's stdin, each answered by one `RESULT <json>` line on its
stdout (anything else it prints goes to stderr):

    build MODEL PRECISION BATCH BACKEND  ->  {"label", "batch_size", "parameters"}   (BACKEND: JAX's config.backend)
    run STEPS                            ->  {"seconds", "loss", "minor_faults"}   (STEPS steps, waited for; the
                                            last step's loss; the page faults the process took meanwhile)

The server's process is set up by whoever starts it (`compare_frameworks.py` configures a JAX server's process
from its command line, as main.py does, before calling `serve`).

Minor faults tell a process that re-faults its buffers every step (once jemalloc's page purge did that to about
one JAX process in five, a 20-30% loss for the process's whole life; see RESULTS.md) from a slow machine.
"""

import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

RESULT = "RESULT "  # lines starting with this carry one JSON answer (also compare_frameworks' worker rows)


def serve(framework: str, threads: int) -> None:
    """The server's side: builds `framework`'s step (`jax`: the library's, `torch`: the reference) on command."""
    sys.stdout, answers = sys.stderr, sys.stdout  # libraries' prints must not break the protocol
    from benchmarks import train_step

    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
    print(f"# {framework} server: {train_step.machine_description()}", flush=True)
    bench = None
    for line in sys.stdin:
        command, *fields = line.split()
        if command == "build":
            bench = _build(framework, *fields)
            reply = {"label": bench.label, "batch_size": bench.batch_size, "parameters": bench.num_parameters}
        elif command == "run":
            faults_before = minor_faults()
            seconds = bench.run(int(fields[0]))
            reply = {"seconds": seconds, "loss": float(bench.loss), "minor_faults": minor_faults() - faults_before}
        else:
            raise SystemExit(f"step server: unknown command {line.strip()!r}; choose build or run")
        answers.write(RESULT + json.dumps(reply) + "\n")
        answers.flush()


def minor_faults() -> int:
    """Minor page faults this process has taken so far (a fresh page mapped in, no disk read)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _build(framework: str, model: str, precision: str, batch: str, backend: str = "auto") -> Any:
    from benchmarks.train_step import WORKLOADS, JaxTrainStep

    workload = WORKLOADS[model]
    if framework == "jax":
        return JaxTrainStep(workload, precision, int(batch), backend=backend)
    from benchmarks.torch_reference import TorchTrainStep

    return TorchTrainStep(workload, precision, int(batch), compile=False)


class StepServer:
    """The parent's handle on one server process, with the bench interface `train_step.measure_interleaved`
    uses (`label`, `batch_size`, `num_parameters`, `run(steps)` -> seconds, `loss`) once `build` has run."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]):
        self.command = list(command)
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        self.process = subprocess.Popen(command, env=dict(env), text=True, **pipes)
        self.loss = float("nan")
        self.faults_per_step: list[float] = []  # one entry per `run`, warm-up runs included

    def ask(self, request: str) -> dict[str, Any]:
        """Sends one command and returns its answer; a server that died ends the benchmark with its status."""
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line.startswith(RESULT):
            status = self.process.wait()
            raise SystemExit(f"step server {' '.join(self.command[-6:])} stopped (exit status {status}) at {request!r}")
        return json.loads(line[len(RESULT) :])

    def build(self, model: str, precision: str, batch: int, backend: str = "auto") -> "StepServer":
        built = self.ask(f"build {model} {precision} {batch} {backend}")
        self.label, self.batch_size, self.num_parameters = built["label"], built["batch_size"], built["parameters"]
        return self

    def run(self, steps: int) -> float:
        answer = self.ask(f"run {steps}")
        self.loss = answer["loss"]
        self.faults_per_step.append(answer["minor_faults"] / steps)
        return answer["seconds"]

    def median_faults_per_step(self, last_runs: int) -> float:
        """Median minor faults per step over the last `last_runs` runs (the timed windows, after warm-up)."""
        return statistics.median(self.faults_per_step[-last_runs:])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
