"""Benchmark: K seeds of ResNet-20 trained as one vmapped program (`--config.vmap_seeds=K`) vs K separate runs.

Each variant is timed as a user runs it (`python main.py ...`: start-up, data, compilation, training, validation
and test), on synthetic 32x32x3 data (the data does not matter for speed, and its small validation and test splits
keep evaluation from dominating): 1,280 training images = 10 steps of 128, two epochs, the second (compiled
already) giving the steady-state training time. The K separate runs are seeds 0..K-1 run one after another.
Writes experiments/vmap_seeds_benchmark.{json,png}.

    python experiments/vmap_seeds_benchmark.py         # K = 1, 2, 4
"""

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
KS = (1, 2, 4)
BUDGET = [
    "--config=configs/resnet20_cifar.py",
    "--config.data.source=synthetic",
    "--config.data.synthetic_examples=1280",
    "--config.data.augment=()",
    "--config.data.mean=()",
    "--config.data.std=()",
    "--config.num_epochs=2",
    "--config.schedule.warmup_epochs=0.0",
]


def timed_run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "main.py", *BUDGET, *args], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def epoch_seconds(workdir: pathlib.Path) -> float:
    """The last epoch's training time from history.csv: no start-up, no compilation, no evaluation."""
    lines = (workdir / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    return float(lines[-1].split(",")[header.index("epoch_seconds")])


def measure(root: pathlib.Path) -> list[dict]:
    """Seeds 0..max(K)-1 run separately once (the first K of them are 'K separate runs'), then each K > 1 vmapped."""
    separate = []
    for seed in range(max(KS)):
        seconds = timed_run([f"--workdir={root}/seed{seed}", f"--config.seed={seed}"])
        separate.append((seconds, epoch_seconds(root / f"seed{seed}")))
        print(f"separate seed {seed}: {separate[-1]}", flush=True)
    results = []
    for k in KS:
        if k == 1:
            vmapped, vmapped_epoch = separate[0]
        else:
            vmapped = timed_run([f"--workdir={root}/vmap{k}", f"--config.vmap_seeds={k}"])
            vmapped_epoch = epoch_seconds(root / f"vmap{k}" / "seed=0")
        results.append(
            {
                "k": k,
                "separate_s": sum(s for s, _ in separate[:k]),
                "vmapped_s": vmapped,
                "separate_epoch_s": sum(e for _, e in separate[:k]),
                "vmapped_epoch_s": vmapped_epoch,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    return results


def plot(results: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(results))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [
        ("separate_s", "vmapped_s", "whole command(s): start-up, compile, 2 epochs, eval"),
        ("separate_epoch_s", "vmapped_epoch_s", "one compiled training epoch (10 steps per seed)"),
    ]
    for ax, (separate, vmapped, title) in zip(axes, panels, strict=True):
        ax.bar(x - 0.2, [r[separate] for r in results], 0.4, label="K separate runs, one after another")
        ax.bar(x + 0.2, [r[vmapped] for r in results], 0.4, label="one run with vmap_seeds=K")
        ax.set(xticks=x, xticklabels=[f"K={r['k']}" for r in results], ylabel="seconds", title=title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("ResNet-20 (32x32x3, batch 128), 2-core CPU: K seeds vmapped vs K separate runs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    root = pathlib.Path(tempfile.mkdtemp(prefix="vmap_bench_"))
    try:
        results = measure(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = REPO / "experiments" / "vmap_seeds_benchmark"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
