"""Benchmark: K seeds of ResNet-20 (CIFAR-10) trained as one vmapped program vs K separate runs, on this machine.

Each variant is timed as a user runs it (`python main.py ...`, start-up, data, compilation, training, validation
and the 10,000-image test evaluation included), on a small budget: a stratified 2,560-image training subset
(20 steps of 128), 1,000 validation images, two epochs (the second, compiled already, is the steady-state
training time). Writes experiments/vmap_seeds_benchmark.{json,png}.

    python experiments/vmap_seeds_benchmark.py            # K = 1, 2, 4
"""

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BUDGET = [
    "--config=configs/resnet20_cifar.py",
    "--config.data.max_train_examples=2560",
    "--config.data.val_fraction=0.02",
    "--config.num_epochs=2",
    "--config.schedule.warmup_epochs=0.0",
]


def timed_run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "main.py", *BUDGET, *args], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def train_seconds(workdir: pathlib.Path) -> float:
    """The last epoch's training time from history.csv: no start-up, no compilation, no evaluation."""
    lines = (workdir / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    return float(lines[-1].split(",")[header.index("epoch_seconds")])


def measure(k: int, root: pathlib.Path) -> dict:
    sequential = [timed_run([f"--workdir={root}/seq{k}_{s}", f"--config.seed={s}"]) for s in range(k)]
    seq_train = sum(train_seconds(root / f"seq{k}_{s}") for s in range(k))
    vmapped = timed_run([f"--workdir={root}/vmap{k}", f"--config.vmap_seeds={k}"]) if k > 1 else sequential[0]
    vmap_train = train_seconds(root / f"vmap{k}" / "seed=0") if k > 1 else seq_train
    return {
        "k": k,
        "sequential_s": sum(sequential),
        "vmapped_s": vmapped,
        "seq_train_s": seq_train,
        "vmap_train_s": vmap_train,
    }


def plot(results: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ks = [r["k"] for r in results]
    x = np.arange(len(ks))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (seq, vm, title) in zip(
        axes,
        [
            ("sequential_s", "vmapped_s", "wall time of the whole command(s)"),
            ("seq_train_s", "vmap_train_s", "one training epoch, compiled (20 steps per seed)"),
        ],
        strict=True,
    ):
        ax.bar(x - 0.2, [r[seq] for r in results], 0.4, label="K separate runs")
        ax.bar(x + 0.2, [r[vm] for r in results], 0.4, label="one vmapped run")
        ax.set(xticks=x, xticklabels=[f"K={k}" for k in ks], ylabel="seconds", title=title)
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("ResNet-20 on a CIFAR-10 subset, 2-core CPU: K seeds vmapped vs one after another")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ks = [int(a) for a in sys.argv[1:]] or [1, 2, 4]
    root = pathlib.Path(tempfile.mkdtemp(prefix="vmap_bench_"))
    try:
        results = []
        for k in ks:
            results.append(measure(k, root))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = REPO / "experiments" / "vmap_seeds_benchmark"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
