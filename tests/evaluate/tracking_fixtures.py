"""Synthetic tracking sequences (objects moving, a tracker that drops, swaps and invents boxes) and the reference
toolkits' numbers on them: trackeval 1.3.0 (HOTA, CLEAR, Identity) and motmetrics 1.4.0 (CLEAR, IDF1)."""

import contextlib
import io

import numpy as np

from dl4cv_jax.evaluate.detection import box_iou
from dl4cv_jax.evaluate.tracking import TrackSequence, relabel


def synthetic_rows(seed: int, frames: int = 30, objects: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """MOTChallenge-like rows (frame, id, x, y, w, h) of ground truth and of a tracker's output.

    The tracker misses boxes, jitters them, swaps two identities half-way, breaks one track into two ids, reports
    false boxes, and sees nothing in a few frames; objects enter and leave, and one frame has no object at all."""
    rng = np.random.default_rng(seed)
    gt, trk = [], []
    start = rng.uniform(0, 400, (objects, 2))
    velocity = rng.normal(0, 6, (objects, 2))
    size = rng.uniform(20, 80, (objects, 2))
    life = [(int(rng.integers(1, frames // 3)), int(rng.integers(frames // 2, frames + 1))) for _ in range(objects)]
    blind = set(rng.choice(np.arange(1, frames + 1), 2, replace=False).tolist())
    for frame in range(1, frames + 1):
        if frame == frames // 3 + 1:
            continue  # a frame without objects (the tracker reports a ghost there)
        for k in range(objects):
            if not life[k][0] <= frame <= life[k][1]:
                continue
            x, y = start[k] + velocity[k] * frame
            gt.append((frame, k + 1, x, y, *size[k]))
            if frame in blind or rng.random() < 0.15:
                continue
            ident = 101 + k
            if k < 2 and frame > frames // 2:
                ident = 101 + (1 - k)  # identity swap
            if k == 2 and frame > 2 * frames // 3:
                ident = 150  # a broken track
            jitter = rng.normal(0, 0.08, 4) * np.r_[size[k], size[k]]
            trk.append((frame, ident, x + jitter[0], y + jitter[1], size[k][0] + jitter[2], size[k][1] + jitter[3]))
        if rng.random() < 0.3:
            trk.append((frame, 200 + frame % 3, *rng.uniform(0, 400, 2), 30.0, 30.0))
    if frames // 3 + 1 > 0:
        trk.append((frames // 3 + 1, 300, 10.0, 10.0, 20.0, 20.0))
    return np.asarray(gt, float).reshape(-1, 6), np.asarray(trk, float).reshape(-1, 6)


def sequence_from_rows(gt: np.ndarray, trk: np.ndarray, num_frames: int) -> TrackSequence:
    """Per-frame ids and IoUs of two row arrays (frame, id, x, y, w, h), frames 1..num_frames."""
    gt_ids, trk_ids, sims = [], [], []
    for frame in range(1, num_frames + 1):
        g, t = gt[gt[:, 0] == frame], trk[trk[:, 0] == frame]
        gt_ids.append(g[:, 1].astype(int))
        trk_ids.append(t[:, 1].astype(int))
        sims.append(
            box_iou(g[:, 2:6], t[:, 2:6], np.zeros(len(t), bool)) if len(g) and len(t) else np.zeros((len(g), len(t)))
        )
    return TrackSequence(relabel(gt_ids), relabel(trk_ids), sims)


def trackeval_data(seq: TrackSequence) -> dict:
    """trackeval's preprocessed-sequence dict for its metrics' eval_sequence."""
    return {
        "num_timesteps": len(seq.gt_ids),
        "num_gt_ids": seq.num_gt_ids,
        "num_tracker_ids": seq.num_tracker_ids,
        "num_gt_dets": sum(len(f) for f in seq.gt_ids),
        "num_tracker_dets": sum(len(f) for f in seq.tracker_ids),
        "gt_ids": seq.gt_ids,
        "tracker_ids": seq.tracker_ids,
        "similarity_scores": seq.similarity,
    }


def trackeval_results(sequences: dict[str, TrackSequence]) -> dict[str, dict]:
    """trackeval's HOTA, CLEAR and Identity fields per sequence and combined ("COMBINED")."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for metric in (HOTA(), CLEAR(), Identity()):
            per_seq = {name: metric.eval_sequence(trackeval_data(seq)) for name, seq in sequences.items()}
            per_seq["COMBINED"] = metric.combine_sequences(per_seq)
            for name, fields in per_seq.items():
                out.setdefault(name, {}).update(fields)
    return out


def motmetrics_summary(sequences_rows: dict[str, tuple[np.ndarray, np.ndarray]]):
    """motmetrics' mota, motp (as 1 - IoU distance), idf1, num_switches per sequence and OVERALL."""
    import motmetrics as mm

    accumulators, names = [], []
    for name, (gt, trk) in sequences_rows.items():
        acc = mm.MOTAccumulator(auto_id=False)
        for frame in range(1, int(max(gt[:, 0].max(), trk[:, 0].max())) + 1):
            g, t = gt[gt[:, 0] == frame], trk[trk[:, 0] == frame]
            # motmetrics 1.4.0's own mm.distances.iou_matrix calls np.asfarray, gone in numpy 2: the same matrix
            iou = box_iou(g[:, 2:6], t[:, 2:6], np.zeros(len(t), bool))
            distance = np.where(iou >= 0.5, 1 - iou, np.nan)
            acc.update(g[:, 1].astype(int).tolist(), t[:, 1].astype(int).tolist(), distance, frameid=frame)
        accumulators.append(acc)
        names.append(name)
    host = mm.metrics.create()
    fields = ["mota", "motp", "idf1", "num_switches", "mostly_tracked", "mostly_lost"]
    return host.compute_many(accumulators, metrics=fields, names=names, generate_overall=True)
