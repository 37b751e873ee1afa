"""Transfer learning on a task of 200 images: full fine-tune vs linear probe vs from scratch (docs/pretrained.md).

Builds `runs/transfer_demo/task/{train,val,test}/{animal,vehicle}` from the CIFAR-10 JPEG folders (symlinks;
`make cifar10` first): 100 training and 100 validation images per class drawn evenly from CIFAR-10's training
classes, and the whole CIFAR-10 test split (6,000 animals, 4,000 vehicles) as the test set. Then runs main.py
three times with configs/transfer_resnet20.py and prints the three test accuracies as a Markdown table.

Note the pretrained ResNet-20 saw CIFAR-10's training images (with their 10 labels), never its test split.

    python experiments/transfer_demo.py [--cifar_dir ~/.cache/dl4cv/cifar10] [--out runs/transfer_demo]
"""

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import time

VEHICLES = ("airplane", "automobile", "ship", "truck")
ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")
VARIANTS = {  # workdir name -> (table label, flags)
    "full_finetune": ("full fine-tune", []),
    "linear_probe": ("linear probe (frozen backbone)", ["--config.finetune.freeze=^(?!fc/)"]),
    "from_scratch": ("from scratch", ["--config.model.pretrained=", "--config.optimizer.learning_rate=0.05"]),
}


def task_of(cifar_class: str) -> str:
    return "vehicle" if cifar_class in VEHICLES else "animal"


def build_task(cifar_dir: pathlib.Path, task_dir: pathlib.Path, per_class: int, seed: int = 0) -> None:
    """Symlinks: `per_class` train and val images per task class, evenly from its CIFAR classes; all of test."""
    rng = random.Random(seed)
    for split, count in (("train", per_class), ("val", per_class)):
        for task_class, sources in (("vehicle", VEHICLES), ("animal", ANIMALS)):
            (task_dir / split / task_class).mkdir(parents=True, exist_ok=True)
            for index, source in enumerate(sources):
                share = count // len(sources) + (index < count % len(sources))
                files = sorted((cifar_dir / "train" / source).iterdir())
                rng.shuffle(files)
                offset = 0 if split == "train" else len(files) // 2  # disjoint halves for train and val
                for path in files[offset : offset + share]:
                    os.symlink(path.resolve(), task_dir / split / task_class / f"{source}_{path.name}")
    for source in (*VEHICLES, *ANIMALS):
        (task_dir / "test" / task_of(source)).mkdir(parents=True, exist_ok=True)
        for path in sorted((cifar_dir / "test" / source).iterdir()):
            os.symlink(path.resolve(), task_dir / "test" / task_of(source) / f"{source}_{path.name}")


def run_variant(name: str, flags: list[str], task_dir: pathlib.Path, workdir: pathlib.Path) -> dict:
    command = [sys.executable, "main.py", "--config=configs/transfer_resnet20.py", f"--workdir={workdir}"]
    command += [f"--config.data.dir={task_dir}", *flags]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    metrics = json.loads((workdir / "test_metrics.json").read_text())
    return {"variant": name, "test_accuracy": metrics["accuracy"], "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar_dir", default="~/.cache/dl4cv/cifar10")
    parser.add_argument("--out", default="runs/transfer_demo")
    parser.add_argument("--per_class", type=int, default=100)
    args = parser.parse_args()
    out, cifar_dir = pathlib.Path(args.out), pathlib.Path(args.cifar_dir).expanduser()
    task_dir = out / "task"
    if not task_dir.exists():
        build_task(cifar_dir, task_dir, args.per_class)
    rows = [run_variant(label, flags, task_dir, out / name) for name, (label, flags) in VARIANTS.items()]
    print("| variant | test accuracy (10,000 images) | whole command |\n|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['test_accuracy']:.4f} | {row['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
