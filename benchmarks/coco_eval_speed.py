"""COCO-style box evaluation of 5,000 images x 100 detections: ours (dl4cv_jax/evaluate/detection.py) against
pycocotools' COCOeval (evaluate + accumulate + summarize), on the same generated data in the same run, and whether
the 12 summary numbers agree.

    .venv/bin/pip install -e '.[test]'   # pycocotools
    .venv/bin/python benchmarks/coco_eval_speed.py [--images 5000] [--detections 100] [--categories 20] [--rounds 1]

The ground truth has 1-12 objects per image over `--categories` classes (3% crowd, every area range, a tenth of
the images empty); each image gets exactly `--detections` detections: jittered copies of its objects plus
background boxes, scores rounded to 0.01 (ties). Rounds alternate ours / pycocotools, so both see the same load.
"""

import argparse
import contextlib
import datetime
import io
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dl4cv_jax.evaluate.detection import SUMMARY_NAMES, Boxes, evaluate_coco  # noqa: E402


def generate(images: int, detections: int, categories: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    anns, dets = [], []
    for image in range(1, images + 1):
        count = 0 if rng.random() < 0.1 else int(rng.integers(1, 13))
        side = rng.choice([12, 24, 48, 96, 160], count) * rng.uniform(0.7, 1.4, count)
        w, h = side * rng.uniform(0.6, 1.4, count), side * rng.uniform(0.6, 1.4, count)
        x, y = rng.uniform(0, 560, count), rng.uniform(0, 400, count)
        cat = rng.integers(1, categories + 1, count)
        crowd = rng.random(count) < 0.03
        for k in range(count):
            anns.append((image, cat[k], x[k], y[k], w[k], h[k], w[k] * h[k] * 0.8, crowd[k]))
        for k in range(detections):
            if count and k < 3 * count:
                j = k % count
                jitter = rng.normal(0, 0.08 * side[j], 4)
                box = (x[j] + jitter[0], y[j] + jitter[1], max(1.0, w[j] + jitter[2]), max(1.0, h[j] + jitter[3]))
                category = cat[j] if rng.random() < 0.9 else rng.integers(1, categories + 1)
            else:
                box = (*rng.uniform(0, 500, 2), *rng.uniform(4, 150, 2))
                category = rng.integers(1, categories + 1)
            dets.append((image, category, *box, round(float(rng.random()), 2)))
    return np.asarray(anns, float), np.asarray(dets, float)


def ours(anns: np.ndarray, dets: np.ndarray, images: int, categories: int) -> dict[str, float]:
    gt = Boxes(anns[:, 0].astype(int), anns[:, 1].astype(int), anns[:, 2:6], area=anns[:, 6], iscrowd=anns[:, 7] > 0)
    det = Boxes(dets[:, 0].astype(int), dets[:, 1].astype(int), dets[:, 2:6], score=dets[:, 6])
    return evaluate_coco(gt, det, np.arange(1, images + 1), np.arange(1, categories + 1)).stats


def pycocotools(anns: np.ndarray, dets: np.ndarray, images: int, categories: int) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset = {
        "images": [{"id": i} for i in range(1, images + 1)],
        "categories": [{"id": c} for c in range(1, categories + 1)],
        "annotations": [
            {"id": n + 1, "image_id": int(a[0]), "category_id": int(a[1]), "bbox": a[2:6].tolist(),
             "area": float(a[6]), "iscrowd": int(a[7])}
            for n, a in enumerate(anns)
        ],
    }  # fmt: skip
    results = [
        {"image_id": int(d[0]), "category_id": int(d[1]), "bbox": d[2:6].tolist(), "score": float(d[6])} for d in dets
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return dict(zip(SUMMARY_NAMES, map(float, evaluation.stats), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from importlib.metadata import version

    import pycocotools as reference_package

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"# COCO-style evaluation speed, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# machine: {platform.node()}, {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()}")
    print(f"# python {platform.python_version()}, numpy {np.__version__}, scipy {version('scipy')}, "
          f"pycocotools {version('pycocotools')} ({reference_package.__file__})")  # fmt: skip
    print(f"# command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    anns, dets = generate(args.images, args.detections, args.categories)
    print(f"# data: {args.images:,} images, {len(anns):,} objects, {len(dets):,} detections, {args.categories} classes")
    times: dict[str, list[float]] = {"ours": [], "pycocotools": []}
    stats = {}
    for _ in range(args.rounds):
        for name, function in (("ours", ours), ("pycocotools", pycocotools)):
            start = time.perf_counter()
            stats[name] = function(anns, dets, args.images, args.categories)
            times[name].append(time.perf_counter() - start)
    print("\n| implementation | seconds (median) | rounds | AP | AP50 | AR100 |")
    print("|---|---|---|---|---|---|")
    for name, seconds in times.items():
        s = stats[name]
        numbers = " | ".join(f"{s[k]:.6f}" for k in ("AP", "AP50", "AR100"))
        print(f"| {name} | {np.median(seconds):.2f} | {len(seconds)} | {numbers} |")
    difference = max(abs(stats["ours"][k] - stats["pycocotools"][k]) for k in SUMMARY_NAMES)
    ratio = np.median(times["pycocotools"]) / np.median(times["ours"])
    print(f"\nlargest difference over the 12 summary numbers: {difference:.3g}; ours is {ratio:.1f}x as fast")
    print(f"# load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
