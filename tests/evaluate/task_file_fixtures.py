"""Small files for the eval_<task> modes, written into a temporary folder: COCO JSON, PNG mask folders,
MOTChallenge text files and a regression CSV, from the same generators the metric tests use."""

import json
import pathlib

import numpy as np
from PIL import Image

from tests.evaluate.coco_fixtures import generated_coco
from tests.evaluate.tracking_fixtures import synthetic_rows


def coco_files(root: pathlib.Path, seed: int = 0) -> tuple[pathlib.Path, pathlib.Path]:
    dataset, results = generated_coco(seed, num_images=12)
    root.mkdir(parents=True, exist_ok=True)
    (root / "instances.json").write_text(json.dumps(dataset))
    (root / "results.json").write_text(json.dumps(results))
    return root / "instances.json", root / "results.json"


def random_masks(seed: int, count: int = 3, shape: tuple[int, int] = (24, 32)):
    """(truth, prediction) uint8 pairs: mostly right, some noise, 255 = ignore in the truth, class 4 never true
    (only predicted), class 3 neither true nor predicted."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        truth = rng.choice([0, 1, 2], size=shape, p=[0.5, 0.3, 0.2]).astype(np.uint8)
        prediction = np.where(rng.random(shape) < 0.75, truth, rng.choice([0, 1, 2, 4], size=shape)).astype(np.uint8)
        truth[rng.random(shape) < 0.05] = 255
        pairs.append((truth, prediction))
    return pairs


def mask_folders(root: pathlib.Path, seed: int = 0) -> tuple[pathlib.Path, pathlib.Path]:
    for k, (truth, prediction) in enumerate(random_masks(seed)):
        for folder, mask in (("gt", truth), ("pred", prediction)):
            (root / folder / "sub").mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask, mode="L").save(root / folder / "sub" / f"{k}.png")
    return root / "gt", root / "pred"


def mot_folders(root: pathlib.Path, seeds=(0, 1)) -> tuple[pathlib.Path, pathlib.Path]:
    """gt/<seq>/gt/gt.txt (MOTChallenge layout, conf 1, class 1, visibility 1) and pred/<seq>.txt."""
    for seed in seeds:
        gt, trk = synthetic_rows(seed)
        name = f"SEQ-{seed:02d}"
        (root / "gt" / name / "gt").mkdir(parents=True, exist_ok=True)
        (root / "pred").mkdir(parents=True, exist_ok=True)
        gt_lines = [f"{int(r[0])},{int(r[1])},{r[2]:.3f},{r[3]:.3f},{r[4]:.3f},{r[5]:.3f},1,1,1.0" for r in gt]
        trk_lines = [f"{int(r[0])},{int(r[1])},{r[2]:.3f},{r[3]:.3f},{r[4]:.3f},{r[5]:.3f},1,-1,-1,-1" for r in trk]
        (root / "gt" / name / "gt" / "gt.txt").write_text("\n".join(gt_lines) + "\n")
        (root / "pred" / f"{name}.txt").write_text("\n".join(trk_lines) + "\n")
    return root / "gt", root / "pred"


def regression_csv(root: pathlib.Path, seed: int = 0) -> pathlib.Path:
    rng = np.random.default_rng(seed)
    target = rng.normal(3, 2, 50)
    prediction = target + rng.normal(0, 0.5, 50)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "predictions.csv"
    path.write_text(
        "target,prediction\n" + "".join(f"{float(t)!r},{float(p)!r}\n" for t, p in zip(target, prediction, strict=True))
    )
    return path
