"""Readers for the files that `--mode=eval_detection|eval_segmentation|eval_tracking|eval_regression` score: COCO
JSON, folders of PNG masks, MOTChallenge text files, CSV. Each checks what it reads and raises `ConfigError` with one
line naming the file and the row, id or size at fault, which main.py prints as `error: ...` (exit status 1), rather
than a metric silently computed on something else (pycocotools, for one, drops a detection of an unknown category).
"""

import csv
import dataclasses
import json
import pathlib
from collections.abc import Iterator

import numpy as np

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.evaluate.detection import Boxes, box_iou
from dl4cv_jax.evaluate.tracking import TrackSequence, relabel

# MOT17/MOT20 ground-truth classes: 1 pedestrian (scored); boxes matched to these are removed from the tracker's.
MOT_DISTRACTOR_CLASSES = (2, 7, 8, 12)


def _existing(path: str | pathlib.Path | None, flag: str) -> pathlib.Path:
    if not path:
        raise ConfigError(f"--{flag} is required for this mode")
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"--{flag}={path}: no such file or folder")
    return path


def _json(path: pathlib.Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None


def _box(value, where: str) -> list[float]:
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        box = []
    if len(box) != 4 or not np.all(np.isfinite(box)) or box[2] < 0 or box[3] < 0:
        raise ConfigError(f"{where}: bbox must be 4 finite numbers [x, y, width >= 0, height >= 0], got {value!r}")
    return box


@dataclasses.dataclass(frozen=True)
class CocoFiles:
    gt: Boxes
    dets: Boxes
    image_ids: np.ndarray
    category_names: dict[int, str]


def read_coco(gt_path: str | pathlib.Path | None, pred_path: str | pathlib.Path | None) -> CocoFiles:
    """COCO instances JSON (images, annotations, categories) and a results JSON (a list of {image_id, category_id,
    bbox, score}, or a dict holding it under "annotations"). Every result must name an image and a category of the
    ground truth."""
    gt_file, pred_file = _existing(gt_path, "gt"), _existing(pred_path, "pred")
    dataset = _json(gt_file)
    if not isinstance(dataset, dict) or not all(key in dataset for key in ("images", "annotations", "categories")):
        raise ConfigError(f"{gt_file}: a COCO ground truth is an object with images, annotations and categories")
    try:
        image_ids = np.asarray([int(image["id"]) for image in dataset["images"]], np.int64)
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in dataset["categories"]}
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{gt_file}: every image and category needs an integer id ({error!r})") from None
    known_images = set(image_ids.tolist())
    rows = []
    for number, ann in enumerate(dataset["annotations"]):
        where = f"{gt_file}: annotation {number} (id {ann.get('id', '?') if isinstance(ann, dict) else '?'})"
        if not isinstance(ann, dict) or "bbox" not in ann:
            raise ConfigError(f"{where}: needs image_id, category_id and bbox")
        image, category = _ids(ann, where, known_images, names, gt_file)
        box = _box(ann["bbox"], where)
        rows.append((image, category, *box, float(ann.get("area", box[2] * box[3])), bool(ann.get("iscrowd", 0))))
    table = np.asarray(rows, float).reshape(-1, 8)
    gt = Boxes(
        table[:, 0].astype(np.int64),
        table[:, 1].astype(np.int64),
        table[:, 2:6],
        area=table[:, 6],
        iscrowd=table[:, 7].astype(bool),
    )
    results = _json(pred_file)
    if isinstance(results, dict):
        results = results.get("annotations")
    if not isinstance(results, list):
        raise ConfigError(f"{pred_file}: COCO results are a list of {{image_id, category_id, bbox, score}}")
    det_rows = []
    for number, det in enumerate(results):
        where = f"{pred_file}: result {number}"
        if not isinstance(det, dict) or "bbox" not in det or "score" not in det:
            raise ConfigError(f"{where}: needs image_id, category_id, bbox and score")
        image, category = _ids(det, where, known_images, names, gt_file)
        try:
            score = float(det["score"])
        except (TypeError, ValueError):
            score = float("nan")
        if not np.isfinite(score):
            raise ConfigError(f"{where}: score must be a finite number, got {det['score']!r}")
        det_rows.append((image, category, *_box(det["bbox"], where), score))
    dets = np.asarray(det_rows, float).reshape(-1, 7)
    boxes = Boxes(dets[:, 0].astype(np.int64), dets[:, 1].astype(np.int64), dets[:, 2:6], score=dets[:, 6])
    return CocoFiles(gt, boxes, image_ids, names)


def _ids(entry: dict, where: str, images: set[int], categories: dict[int, str], gt_file) -> tuple[int, int]:
    try:
        image, category = int(entry["image_id"]), int(entry["category_id"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where}: needs integer image_id and category_id") from None
    if image not in images:
        raise ConfigError(f"{where}: image_id {image} is not an image of {gt_file}")
    if category not in categories:
        raise ConfigError(f"{where}: category_id {category} is not a category of {gt_file}")
    return image, category


def mask_pairs(
    gt_dir: str | pathlib.Path | None, pred_dir: str | pathlib.Path | None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, truth, prediction) per PNG of `gt_dir` (searched recursively) and the file of the same relative path
    in `pred_dir`, as class-index arrays; 8-bit single-channel masks only (mode L or P: the index, not a colour)."""
    from PIL import Image

    gt_root, pred_root = _existing(gt_dir, "gt"), _existing(pred_dir, "pred")
    names = sorted(p.relative_to(gt_root) for p in gt_root.rglob("*.png"))
    if not names:
        raise ConfigError(f"--gt={gt_root}: no .png masks found")
    extra = sorted({p.relative_to(pred_root) for p in pred_root.rglob("*.png")} - set(names))
    if extra:
        raise ConfigError(f"{pred_root / extra[0]}: a predicted mask with no ground truth in {gt_root}")

    def load(path: pathlib.Path) -> np.ndarray:
        if not path.exists():
            raise ConfigError(f"{path}: missing (every mask of --gt needs a prediction of the same name)")
        try:
            with Image.open(path) as image:
                if image.mode not in ("L", "P"):
                    raise ConfigError(f"{path}: mode {image.mode}; masks are 8-bit class indices (mode L or P)")
                return np.asarray(image)
        except OSError as error:
            raise ConfigError(f"{path}: not a readable PNG ({error})") from None

    for name in names:
        truth, prediction = load(gt_root / name), load(pred_root / name)
        if truth.shape != prediction.shape:
            raise ConfigError(
                f"{pred_root / name}: {prediction.shape[1]}x{prediction.shape[0]} pixels, but the ground truth "
                f"{gt_root / name} is {truth.shape[1]}x{truth.shape[0]}"
            )
        yield str(name), truth, prediction


def read_mot_rows(path: pathlib.Path, minimum: int = 6) -> np.ndarray:
    """A MOTChallenge text file as a float array, one row per line (frame, id, x, y, w, h, conf, ...)."""
    rows, width = [], None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.replace(",", " ").split()
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) < minimum or not np.all(np.isfinite(values)) or values[0] < 1 or values[0] != int(values[0]):
            raise ConfigError(
                f"{path}: row {number}: expected frame (>= 1), id, x, y, width, height[, ...] as numbers, "
                f"got {line.strip()[:80]!r}"
            )
        width = len(values) if width is None else min(width, len(values))
        rows.append(values)
    return np.asarray([r[: width or minimum] for r in rows], float).reshape(-1, width or minimum)


def _sequence_files(root: pathlib.Path, flag: str) -> dict[str, pathlib.Path]:
    """{sequence: file}: one .txt file, a folder of <seq>.txt, or MOTChallenge's <seq>/gt/gt.txt layout."""
    if root.is_file():
        return {root.stem: root}
    found = {p.parent.parent.name: p for p in sorted(root.glob("*/gt/gt.txt"))}
    found.update({p.stem: p for p in sorted(root.glob("*.txt")) if p.stem not in ("seqmap", "seqmaps")})
    if not found:
        raise ConfigError(f"--{flag}={root}: no <sequence>.txt files (nor <sequence>/gt/gt.txt)")
    return found


def read_mot(gt_path, pred_path) -> dict[str, TrackSequence]:
    """Ground-truth and tracker files of each sequence as TrackSequences, with MOTChallenge's preprocessing when
    the ground truth has its columns: rows with conf (column 7) 0 are not scored; with a class column (8), only
    class 1 (pedestrian) is, and tracker boxes that match (IoU >= 0.5, Hungarian) a distractor (classes 2, 7, 8, 12)
    are removed first, as TrackEval does for MOT17/MOT20."""
    from scipy.optimize import linear_sum_assignment

    gt_root, pred_root = _existing(gt_path, "gt"), _existing(pred_path, "pred")
    gt_files, pred_files = _sequence_files(gt_root, "gt"), _sequence_files(pred_root, "pred")
    if gt_root.is_file() and pred_root.is_file():
        pred_files = {gt_root.stem: pred_root}
    unknown = sorted(set(pred_files) - set(gt_files))
    if unknown:
        raise ConfigError(f"{pred_files[unknown[0]]}: sequence {unknown[0]!r} is not in --gt={gt_root}")
    sequences = {}
    for name, gt_file in gt_files.items():
        if name not in pred_files:
            raise ConfigError(f"--pred={pred_root}: no tracker file for sequence {name!r} ({name}.txt)")
        gt, trk = read_mot_rows(gt_file), read_mot_rows(pred_files[name])
        frames = int(max(gt[:, 0].max(initial=0), trk[:, 0].max(initial=0)))
        gt_ids, trk_ids, sims = [], [], []
        for frame in range(1, frames + 1):
            g, t = gt[gt[:, 0] == frame], trk[trk[:, 0] == frame]
            for rows, file in ((g, gt_file), (t, pred_files[name])):
                ids, counts = np.unique(rows[:, 1], return_counts=True)
                if np.any(counts > 1):
                    raise ConfigError(f"{file}: frame {frame}: id {int(ids[counts > 1][0])} appears twice")
            sim = (
                box_iou(g[:, 2:6], t[:, 2:6], np.zeros(len(t), bool))
                if len(g) and len(t)
                else np.zeros((len(g), len(t)))
            )
            keep_gt = np.ones(len(g), bool)
            if g.shape[1] >= 7:
                keep_gt &= g[:, 6] != 0
            if g.shape[1] >= 8:
                score = np.where(sim >= 0.5 - np.finfo(float).eps, sim, 0.0)
                rows, cols = linear_sum_assignment(-score)
                matched = score[rows, cols] > np.finfo(float).eps
                drop = cols[matched][np.isin(g[rows[matched], 7], MOT_DISTRACTOR_CLASSES)]
                t, sim = np.delete(t, drop, 0), np.delete(sim, drop, 1)
                keep_gt &= g[:, 7] == 1
            gt_ids.append(g[keep_gt, 1].astype(np.int64))
            trk_ids.append(t[:, 1].astype(np.int64))
            sims.append(sim[keep_gt])
        sequences[name] = TrackSequence(relabel(gt_ids), relabel(trk_ids), sims)
    return sequences


def read_regression(gt_path, pred_path) -> tuple[np.ndarray, np.ndarray]:
    """(targets, predictions) from `--pred` (a CSV with `target` and `prediction` columns), or from `--gt` (id,
    target) and `--pred` (id, prediction) joined by id."""
    pred_file = _existing(pred_path, "pred")
    pred = _csv_columns(pred_file, ("id", "prediction") if gt_path else ("target", "prediction"))
    if not gt_path:
        return pred["target"], pred["prediction"]
    gt_file = _existing(gt_path, "gt")
    gt = _csv_columns(gt_file, ("id", "target"))
    index = {key: k for k, key in enumerate(gt["id"])}
    if len(index) != len(gt["id"]):
        raise ConfigError(f"{gt_file}: ids must be unique")
    order = []
    for key in pred["id"]:
        if key not in index:
            raise ConfigError(f"{pred_file}: id {str(key)!r} is not in {gt_file}")
        order.append(index[key])
    missing = len(index) - len(set(order))
    if missing:
        raise ConfigError(f"{pred_file}: {missing} ids of {gt_file} have no prediction")
    return gt["target"][order], pred["prediction"]


def _csv_columns(path: pathlib.Path, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path}: needs the columns {', '.join(columns)} (header), missing {', '.join(missing)}")
        values = {c: [] for c in columns}
        for row in reader:
            for column in columns:
                if column == "id":
                    values[column].append(row[column])
                    continue
                try:
                    values[column].append(float(row[column]))
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"{path}: row {reader.line_num}: {column} {row[column]!r} is not a number"
                    ) from None
    return {c: np.asarray(v) if c == "id" else np.asarray(v, float) for c, v in values.items()}
