"""COCO-style object-detection metrics (AP and AR over IoU 0.50:0.05:0.95, areas, 1/10/100 detections), our own
implementation of the protocol of pycocotools' `COCOeval` (iouType="bbox"), equal to it to 1e-6 on the 12 summary
numbers (tests/evaluate/test_detection_metrics.py). Why our own: the numbers people publish come from that
protocol, but pycocotools is a C extension with a Python loop per detection, threshold and area range; here the
greedy matching runs once per detection *rank*, vectorised over every (image, category) pair, threshold and area.

Conventions, as in COCOeval:
- Boxes are `[x, y, width, height]`. A detection's area is width*height; a ground-truth box's area is its
  annotation's `area` (the segment's area in COCO files), not its box's.
- Per (image, category), detections are taken by descending score (ties keep file order: stable sorts throughout),
  at most `max(max_dets)` of them; each greedily takes the unmatched ground truth with the highest IoU >= t
  (ties: the later annotation), preferring a non-ignored one over an ignored one.
- Ignored ground truth: crowd boxes (`iscrowd=1`) and boxes whose area lies outside the area range. A detection
  matched to an ignored box, or unmatched and itself outside the area range, is neither TP nor FP. A crowd box's
  IoU is intersection / detection area, and a crowd box may absorb any number of detections.
- Precision is interpolated at 101 recall points (0:0.01:1), made monotone from the right; a (category, area)
  with no non-ignored ground truth is -1 ("absent") and left out of every mean, so a class without objects does
  not count as 0, while a class with objects and no detections does.
One difference in pycocotools that we do not copy: a ground-truth annotation with `id` 0 there never counts as
matched (it stores the id as the match flag). COCO ids start at 1, so real files never meet it.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = {"all": (0.0, 1e5**2), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e5**2)}
MAX_DETS = (1, 10, 100)
SUMMARY_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)
_CHUNK_ELEMENTS = 4_000_000  # pairs x thresholds x areas x boxes per matching chunk (~tens of MB of booleans)


@dataclasses.dataclass(frozen=True)
class Boxes:
    """Boxes of one kind (ground truth or detections) over a whole data set, one row each, in file order.

    `score` is for detections, `area` and `iscrowd` for ground truth (default: box area, not crowd).
    """

    image_id: np.ndarray  # [N] int
    category_id: np.ndarray  # [N] int
    box: np.ndarray  # [N, 4] float, x, y, width, height
    score: np.ndarray | None = None  # [N] float
    area: np.ndarray | None = None  # [N] float
    iscrowd: np.ndarray | None = None  # [N] bool

    def __len__(self) -> int:
        return len(self.image_id)


@dataclasses.dataclass(frozen=True)
class CocoEvaluation:
    """COCOeval's `eval` (precision [T, R, K, A, M], recall [T, K, A, M], -1 = absent) and its 12 `stats`."""

    precision: np.ndarray
    recall: np.ndarray
    stats: dict[str, float]
    category_ids: np.ndarray


def box_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU [..., D, G] of xywh boxes [..., D, 4] and [..., G, 4]; against a crowd box, intersection over the
    detection's area (so a detection inside a crowd region scores 1 whatever the region's size)."""
    d, g = dets[..., :, None, :], gts[..., None, :, :]
    width = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    height = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.where((width > 0) & (height > 0), width * height, 0.0)
    d_area, g_area = d[..., 2] * d[..., 3], g[..., 2] * g[..., 3]
    union = np.where(crowd[..., None, :], d_area, d_area + g_area - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _ranks(group: np.ndarray) -> np.ndarray:
    """Position of each row within its run of equal `group` values (rows sorted by group)."""
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    counts = np.diff(np.r_[starts, len(group)])
    return np.arange(len(group)) - np.repeat(starts, counts)


def _padded(values: np.ndarray, pair: np.ndarray, rank: np.ndarray, pairs: np.ndarray, width: int, fill) -> np.ndarray:
    """values[i] placed at [index of pair[i] in `pairs`, rank[i]] of a [len(pairs), width, ...] array."""
    out = np.full((len(pairs), width, *values.shape[1:]), fill, dtype=values.dtype)
    where = np.searchsorted(pairs, pair)
    inside = (where < len(pairs)) & (pairs[np.minimum(where, len(pairs) - 1)] == pair)
    out[where[inside], rank[inside]] = values[inside]
    return out


def _match_chunk(det_box, det_ok, gt_box, gt_ok, gt_area, crowd, areas, thresholds):
    """Greedy COCO matching for a chunk of pairs: (det matched [P, A, T, D], det on an ignored gt [P, A, T, D]).

    Loops over detection ranks only; every pair, area range and threshold moves at once.
    """
    iou = box_iou(det_box, gt_box, crowd)  # [P, D, G]
    lo, hi = areas[:, 0][None, :, None], areas[:, 1][None, :, None]
    ignored = (crowd[:, None, :] | (gt_area[:, None, :] < lo) | (gt_area[:, None, :] > hi))[:, :, None, :]
    num_pairs, num_dets, num_gts = iou.shape
    shape = (num_pairs, len(areas), len(thresholds))
    taken = np.zeros((*shape, num_gts), bool)
    matched = np.zeros((*shape, num_dets), bool)
    on_ignored = np.zeros((*shape, num_dets), bool)
    limit = np.minimum(thresholds, 1 - 1e-10)[None, None, :, None]
    reverse = np.arange(num_gts)[::-1]
    for d in range(num_dets):
        overlap = iou[:, d][:, None, None, :]  # [P, 1, 1, G]
        free = (~taken | crowd[:, None, None, :]) & gt_ok[:, None, None, :] & (overlap >= limit)
        preferred = free & ~ignored
        candidates = np.where(preferred.any(-1, keepdims=True), preferred, free)
        scored = np.where(candidates, overlap, -1.0)[..., reverse]
        best = num_gts - 1 - scored.argmax(-1)  # the last of equal IoUs, as COCOeval's `>=` scan keeps it
        hit = candidates.any(-1) & det_ok[:, d][:, None, None]
        matched[..., d] = hit
        on_ignored[..., d] = (
            hit & np.take_along_axis(np.broadcast_to(ignored, taken.shape), best[..., None], -1)[..., 0]
        )
        index = best[..., None]
        np.put_along_axis(taken, index, np.take_along_axis(taken, index, -1) | hit[..., None], -1)
    return matched, on_ignored


def evaluate_coco(
    gt: Boxes,
    dets: Boxes,
    image_ids: Sequence[int] | np.ndarray,
    category_ids: Sequence[int] | np.ndarray,
    *,
    iou_thresholds: np.ndarray = IOU_THRESHOLDS,
    max_dets: Sequence[int] = MAX_DETS,
    area_ranges: dict[str, tuple[float, float]] | None = None,
) -> CocoEvaluation:
    """COCO bbox evaluation of `dets` against `gt` over every image of `image_ids` (images without objects
    included: their detections are false positives) and every category of `category_ids`.

    Every id in `gt` and `dets` must be among `image_ids` / `category_ids` (the file readers check this and
    name the culprit). `area_ranges` defaults to COCO's all/small/medium/large, in that order; the 12 stats need it.
    """
    areas_by_name = area_ranges or AREA_RANGES
    areas = np.asarray(list(areas_by_name.values()), float)
    thresholds = np.asarray(iou_thresholds, float)
    images, cats = np.sort(np.unique(image_ids)), np.sort(np.unique(category_ids))
    num_k, top = len(cats), max(max_dets)

    def pair_of(boxes: Boxes) -> np.ndarray:
        return np.searchsorted(images, boxes.image_id).astype(np.int64) * num_k + np.searchsorted(
            cats, boxes.category_id
        )

    gt_pair = pair_of(gt)
    gt_order = np.argsort(gt_pair, kind="stable")
    gt_pair = gt_pair[gt_order]
    gt_rank = _ranks(gt_pair)
    gt_box = np.asarray(gt.box, float).reshape(-1, 4)[gt_order]
    gt_area = (np.asarray(gt.area, float) if gt.area is not None else gt_box[:, 2] * gt_box[:, 3])[gt_order]
    gt_crowd = (np.asarray(gt.iscrowd, bool) if gt.iscrowd is not None else np.zeros(len(gt), bool))[gt_order]

    det_pair = pair_of(dets)
    score = np.asarray(dets.score, float)
    det_order = np.lexsort((-score, det_pair))  # by pair, then descending score; stable for ties
    det_pair, score = det_pair[det_order], score[det_order]
    det_rank = _ranks(det_pair)
    keep = det_rank < top
    det_pair, score, det_rank = det_pair[keep], score[keep], det_rank[keep]
    det_box = np.asarray(dets.box, float).reshape(-1, 4)[det_order][keep]
    det_area = det_box[:, 2] * det_box[:, 3]

    # Matching, in chunks of pairs of similar sizes (sorted by detection count) to keep the padding small.
    pairs = np.unique(np.r_[gt_pair, det_pair])
    dets_per_pair = np.bincount(np.searchsorted(pairs, det_pair), minlength=len(pairs))
    gts_per_pair = np.bincount(np.searchsorted(pairs, gt_pair), minlength=len(pairs))
    order = np.lexsort((gts_per_pair, dets_per_pair))
    det_matched = np.zeros((len(areas), len(thresholds), len(det_pair)), bool)
    det_ignored = np.zeros_like(det_matched)
    start = 0
    while start < len(order):
        stop, widest = start + 1, max(1, dets_per_pair[order[start]], gts_per_pair[order[start]])
        while stop < len(order):  # grow the chunk while its padded size stays under the budget
            wider = max(widest, dets_per_pair[order[stop]], gts_per_pair[order[stop]])
            if (stop + 1 - start) * len(areas) * len(thresholds) * wider * 2 > _CHUNK_ELEMENTS:
                break
            stop, widest = stop + 1, wider
        chunk = np.sort(pairs[order[start:stop]])
        width_d = max(1, dets_per_pair[order[start:stop]].max())
        width_g = max(1, gts_per_pair[order[start:stop]].max())
        box_d = _padded(det_box, det_pair, det_rank, chunk, width_d, 0.0)
        ok_d = _padded(np.ones(len(det_pair), bool), det_pair, det_rank, chunk, width_d, False)
        box_g = _padded(gt_box, gt_pair, gt_rank, chunk, width_g, 0.0)
        ok_g = _padded(np.ones(len(gt_pair), bool), gt_pair, gt_rank, chunk, width_g, False)
        area_g = _padded(gt_area, gt_pair, gt_rank, chunk, width_g, 0.0)
        crowd_g = _padded(gt_crowd, gt_pair, gt_rank, chunk, width_g, False)
        matched, ignored = _match_chunk(box_d, ok_d, box_g, ok_g, area_g, crowd_g, areas, thresholds)
        where = np.searchsorted(chunk, det_pair)
        inside = (where < len(chunk)) & (chunk[np.minimum(where, len(chunk) - 1)] == det_pair)
        rows = np.flatnonzero(inside)
        det_matched[:, :, rows] = matched[where[rows], :, :, det_rank[rows]].transpose(1, 2, 0)
        det_ignored[:, :, rows] = ignored[where[rows], :, :, det_rank[rows]].transpose(1, 2, 0)
        start = stop
    # An unmatched detection outside the area range is not counted against the detector.
    outside = (det_area[None] < areas[:, :1]) | (det_area[None] > areas[:, 1:])  # [A, N]
    det_ignored |= ~det_matched & outside[:, None, :]

    precision, recall = _accumulate(
        det_pair % num_k,
        det_rank,
        score,
        det_matched,
        det_ignored,
        gt_pair % num_k,
        gt_area,
        gt_crowd,
        areas,
        thresholds,
        num_k,
        max_dets,
    )
    stats = summarize(precision, recall, thresholds, list(areas_by_name), list(max_dets))
    return CocoEvaluation(precision, recall, stats, cats)


def _accumulate(
    det_cat, det_rank, score, det_matched, det_ignored, gt_cat, gt_area, gt_crowd, areas, thresholds, num_k, max_dets
):
    """COCOeval.accumulate: per (category, area, max dets), precision at the recall points and final recall."""
    num_t, num_r, num_a = len(thresholds), len(RECALL_THRESHOLDS), len(areas)
    precision = -np.ones((num_t, num_r, num_k, num_a, len(max_dets)))
    recall = -np.ones((num_t, num_k, num_a, len(max_dets)))
    gt_kept = ~gt_crowd[None] & (gt_area[None] >= areas[:, :1]) & (gt_area[None] <= areas[:, 1:])  # [A, G]
    for k in range(num_k):
        in_k = det_cat == k  # dets are ordered by image, then score: the order COCOeval concatenates them in
        positives = gt_kept[:, gt_cat == k].sum(-1)
        for m, limit in enumerate(max_dets):
            rows = np.flatnonzero(in_k & (det_rank < limit))
            rows = rows[np.argsort(-score[rows], kind="stable")]
            for a in range(num_a):
                if positives[a] == 0:
                    continue
                counted = ~det_ignored[a][:, rows]
                tp = np.cumsum(det_matched[a][:, rows] & counted, axis=1, dtype=float)
                fp = np.cumsum(~det_matched[a][:, rows] & counted, axis=1, dtype=float)
                if len(rows) == 0:
                    recall[:, k, a, m] = 0.0
                    precision[:, :, k, a, m] = 0.0
                    continue
                rc = tp / positives[a]
                pr = tp / (fp + tp + np.spacing(1))
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # monotone from the right
                recall[:, k, a, m] = rc[:, -1]
                for t in range(num_t):
                    at = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    precision[t, :, k, a, m] = np.where(at < len(rows), pr[t][np.minimum(at, len(rows) - 1)], 0.0)
    return precision, recall


def _mean_present(values: np.ndarray) -> float:
    present = values[values > -1]
    return float(np.mean(present)) if present.size else -1.0


def summarize(
    precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray, area_names: list[str], max_dets: list[int]
) -> dict[str, float]:
    """The 12 numbers of COCOeval.summarize (AP, AP50, AP75, AP by area at 100 dets, AR at 1/10/100, AR by area),
    each a mean over the present (> -1) entries; -1 when none is present."""
    last = len(max_dets) - 1

    def ap(area: str = "all", at: float | None = None) -> float:
        chosen = precision if at is None else precision[np.where(at == thresholds)[0]]
        return _mean_present(chosen[:, :, :, area_names.index(area), last])

    def ar(area: str = "all", m: int = last) -> float:
        return _mean_present(recall[:, :, area_names.index(area), m])

    values = [ap(), ap(at=0.5), ap(at=0.75), ap("small"), ap("medium"), ap("large")]
    values += [ar(m=0), ar(m=min(1, last)), ar(), ar("small"), ar("medium"), ar("large")]
    return dict(zip(SUMMARY_NAMES, values, strict=True))


def pr_curves(evaluation: CocoEvaluation, iou_threshold: float = 0.5) -> dict[int, np.ndarray]:
    """Interpolated precision at each of the 101 recall points per category (area all, most detections), at one
    IoU threshold: what a precision-recall plot per class draws. Absent categories are left out."""
    t = int(np.argmin(np.abs(IOU_THRESHOLDS - iou_threshold)))
    curves = evaluation.precision[t, :, :, 0, -1]
    return {int(c): curves[:, k] for k, c in enumerate(evaluation.category_ids) if curves[0, k] > -1}


def per_category_ap(evaluation: CocoEvaluation) -> dict[int, float]:
    """AP (0.50:0.95, all areas, most detections) of each category; -1 where it has no ground truth."""
    return {int(c): _mean_present(evaluation.precision[:, :, k, 0, -1]) for k, c in enumerate(evaluation.category_ids)}
