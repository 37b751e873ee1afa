"""The PyTorch reference for benchmarks/train_step.py: the same models, batch, optimizer and precision.

    .venv/bin/pip install -e '.[bench]'          # torch==2.13.0, a CPU wheel
    .venv/bin/python benchmarks/torch_reference.py --models resnet20_cifar lenet --compile

The step: uint8 NCHW images (channels_last) normalised to float32, forward under `torch.autocast('cpu', bf16)` for
bfloat16 (parameters, optimizer and loss stay float32, as in the library), cross-entropy, backward, SGD with
Nesterov momentum 0.9 and weight decay 5e-4 on the kernels only (PyTorch's coupled L2 = the library's 'l2'
mode), accuracy. On a CPU every torch op returns when done; each window still ends with `torch.cpu.synchronize()`
(and `torch.cuda.synchronize()` on a GPU), so the timing is right on both.

Threads: `torch.set_num_threads(--threads)`, 2 by default (this machine has 2 cores; XLA uses all of them too).
`--compile` also times `torch.compile(model)` (inductor; the backward is compiled through AOTAutograd).
"""

import argparse
import pathlib
import sys
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import torch_models  # noqa: E402
from benchmarks.train_step import (  # noqa: E402
    MEAN,
    PRECISIONS,
    STD,
    WORKLOADS,
    Workload,
    load_average,
    machine_description,
    measure_interleaved,
)


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD lr 0.1, Nesterov momentum 0.9, weight decay 5e-4 on tensors with ndim > 1 (as the library's mask)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True, foreach=True)


class TorchTrainStep:
    """One PyTorch train step on a fixed synthetic batch; `run(n)` times n of them."""

    framework = "torch"

    def __init__(
        self,
        workload: Workload,
        precision: str,
        batch_size: int,
        compile: bool = False,
        channels_last: bool = True,
        device: str = "cpu",
        seed: int = 0,
    ):
        torch.manual_seed(seed)
        self.label = "torch/compile" if compile else "torch"
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = torch_models.build_model(workload.name).to(self.device, memory_format=self.memory_format)
        self.num_parameters = torch_models.count_parameters(model)
        self.optimizer = make_optimizer(model)
        self.model = torch.compile(model) if compile else model
        self.model.train()
        self.dtype = {"float32": None, "bfloat16": torch.bfloat16}[precision]
        h, w, c = workload.shape
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (batch_size, c, h, w), dtype=torch.uint8, generator=generator)
        self.images = images.to(self.device).contiguous(memory_format=self.memory_format)
        self.labels = torch.randint(0, workload.classes, (batch_size,), generator=generator).to(self.device)
        self.mean = torch.tensor(MEAN[:c], device=self.device).view(1, c, 1, 1)
        self.std = torch.tensor(STD[:c], device=self.device).view(1, c, 1, 1)
        self.loss = float("nan")

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = ((self.images.float() / 255.0 - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        accuracy = (logits.argmax(dim=1) == self.labels).float().mean()
        return loss, accuracy

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        else:
            torch.cpu.synchronize()

    def run(self, steps: int) -> float:
        """Seconds for `steps` steps, the last one finished."""
        self._synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            loss, _ = self.step()
        self._synchronize()
        seconds = time.perf_counter() - start
        self.loss = float(loss.detach())
        return seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = the workload's default")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(f"{machine_description()} | torch threads {torch.get_num_threads()}")
    print("| model | precision | batch | variant | img/s (median) | min-max | steps/window x windows | first call s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for precision in args.precisions:
            workload = WORKLOADS[name]
            batch = args.batch_size or workload.batch_size
            variants = [False, True] if args.compile else [False]
            benches = [
                TorchTrainStep(workload, precision, batch, c, not args.no_channels_last, args.device) for c in variants
            ]
            for m in measure_interleaved(benches, args.windows, args.window_seconds):
                print(
                    f"| {name} | {precision} | {batch} | {m.label} | {m.median:.1f} | {m.spread()} | "
                    f"{m.steps_per_window} x {args.windows} | {m.first_step_s:.1f} |",
                    flush=True,
                )
    print(f"load average: {load_average()}")


if __name__ == "__main__":
    main()
