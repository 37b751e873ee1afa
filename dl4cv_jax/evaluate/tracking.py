"""Multi-object tracking metrics: CLEAR MOT (MOTA, MOTP, mostly tracked / partially tracked / mostly lost, identity
switches, fragmentations), the identity metrics (IDF1, IDP, IDR) and HOTA (with DetA, AssA, LocA), as TrackEval
defines them, so our numbers equal the ones MOTChallenge publishes (tests/evaluate/test_tracking_metrics.py checks
them against trackeval 1.3.0, and CLEAR/IDF1 against motmetrics 1.4.0 too).

A sequence is per frame: the ground-truth ids, the tracker's ids, and their similarity matrix (box IoU).
Conventions (TrackEval's):
- CLEAR: per frame, Hungarian matching on IoU >= 0.5, where keeping last frame's pairing outweighs any IoU
  (a pair that continues scores 1000 + IoU); an identity switch is a ground-truth object matched to another
  tracker id than the one it was last matched to, however long ago. MT: tracked > 80% of its frames, ML: < 20%.
- Identity: one global Hungarian assignment of ground-truth to tracker trajectories that maximises the frames
  where the two overlap with IoU >= 0.5 (IDTP); IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN).
- HOTA at each alpha in 0.05:0.05:0.95: per frame, Hungarian matching on (global alignment of the two ids) x IoU,
  matches with IoU >= alpha count; DetA = TP / (TP + FN + FP), AssA = mean over TPs of the TP's pair's
  association IoU, HOTA = sqrt(DetA x AssA). Reported numbers are means over the 19 alphas.
- Over several sequences, counts add up; AssA and LocA are averages weighted by each sequence's TPs.
"""

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment

ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo(float).eps


@dataclasses.dataclass(frozen=True)
class TrackSequence:
    """One sequence after preprocessing: ids relabelled 0..n-1, per frame id arrays and [gt, tracker] IoUs."""

    gt_ids: list[np.ndarray]
    tracker_ids: list[np.ndarray]
    similarity: list[np.ndarray]

    @property
    def num_gt_ids(self) -> int:
        return int(max((ids.max() + 1 for ids in self.gt_ids if len(ids)), default=0))

    @property
    def num_tracker_ids(self) -> int:
        return int(max((ids.max() + 1 for ids in self.tracker_ids if len(ids)), default=0))


def relabel(ids: list[np.ndarray]) -> list[np.ndarray]:
    """Ids of every frame mapped to 0..n-1 in increasing order of the original id."""
    unique = np.unique(np.concatenate([np.asarray(f, np.int64) for f in ids] or [np.zeros(0, np.int64)]))
    return [np.searchsorted(unique, np.asarray(f, np.int64)) for f in ids]


def _assign(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment maximising `score`; only pairs with a positive score count as matched."""
    rows, cols = linear_sum_assignment(-score)
    positive = score[rows, cols] > _EPS
    return rows[positive], cols[positive]


def clear_counts(seq: TrackSequence, threshold: float = 0.5) -> dict[str, float]:
    """The summable CLEAR counts of one sequence: TP, FN, FP, IDSW, MT, PT, ML, Frag, MOTP_sum, frames."""
    num_gt = seq.num_gt_ids
    counts = dict.fromkeys(("CLR_TP", "CLR_FN", "CLR_FP", "IDSW", "MOTP_sum", "MT", "PT", "ML", "Frag"), 0.0)
    counts["CLR_Frames"] = len(seq.gt_ids)
    present, tracked, runs = np.zeros(num_gt), np.zeros(num_gt), np.zeros(num_gt)
    last_partner = np.full(num_gt, -1)  # the tracker id each object was last matched to, ever
    previous = np.full(num_gt, -1)  # ... in the previous frame only (-1: not matched then)
    for gt, trk, sim in zip(seq.gt_ids, seq.tracker_ids, seq.similarity, strict=True):
        if len(gt) == 0 or len(trk) == 0:  # TrackEval keeps last frame's pairing through such a frame
            counts["CLR_FP"] += len(trk)
            counts["CLR_FN"] += len(gt)
            present[gt] += 1
            continue
        score = 1000.0 * (trk[None, :] == previous[gt][:, None]) + sim
        score[sim < threshold - _EPS] = 0
        rows, cols = _assign(score)
        g, t = gt[rows], trk[cols]
        counts["IDSW"] += int(np.sum((last_partner[g] >= 0) & (last_partner[g] != t)))
        present[gt] += 1
        tracked[g] += 1
        was_tracked = previous >= 0
        last_partner[g] = t
        previous[:] = -1
        previous[g] = t
        runs += ~was_tracked & (previous >= 0)
        counts["CLR_TP"] += len(g)
        counts["CLR_FN"] += len(gt) - len(g)
        counts["CLR_FP"] += len(trk) - len(g)
        counts["MOTP_sum"] += float(sim[rows, cols].sum())
    ratio = tracked[present > 0] / present[present > 0]
    counts["MT"] = float(np.sum(ratio > 0.8))
    counts["PT"] = float(np.sum(ratio >= 0.2)) - counts["MT"]
    counts["ML"] = num_gt - counts["MT"] - counts["PT"]
    counts["Frag"] = float(np.sum(runs[runs > 0] - 1))
    return counts


def identity_counts(seq: TrackSequence, threshold: float = 0.5) -> dict[str, float]:
    """IDTP, IDFN, IDFP of one sequence from the best one-to-one assignment of trajectories."""
    num_gt, num_trk = seq.num_gt_ids, seq.num_tracker_ids
    gt_frames, trk_frames = np.zeros(num_gt), np.zeros(num_trk)
    overlap = np.zeros((num_gt, num_trk))
    for gt, trk, sim in zip(seq.gt_ids, seq.tracker_ids, seq.similarity, strict=True):
        rows, cols = np.nonzero(sim >= threshold)
        np.add.at(overlap, (gt[rows], trk[cols]), 1)
        gt_frames[gt] += 1
        trk_frames[trk] += 1
    if num_gt == 0 or num_trk == 0:
        return {"IDTP": 0.0, "IDFN": float(gt_frames.sum()), "IDFP": float(trk_frames.sum())}
    # Matching gt i to tracker j leaves (frames of i - overlap) missed and (frames of j - overlap) false: minimise
    # the sum, each trajectory also free to stay unmatched (its own dummy partner, costing all its frames).
    cost = np.full((num_gt + num_trk, num_trk + num_gt), 0.0)
    cost[:num_gt, :num_trk] = gt_frames[:, None] + trk_frames[None, :] - 2 * overlap
    cost[:num_gt, num_trk:] = 1e10
    cost[np.arange(num_gt), num_trk + np.arange(num_gt)] = gt_frames
    cost[num_gt:, :num_trk] = 1e10
    cost[num_gt + np.arange(num_trk), np.arange(num_trk)] = trk_frames
    rows, cols = linear_sum_assignment(cost)
    pair = (rows < num_gt) & (cols < num_trk)
    idtp = float(overlap[rows[pair], cols[pair]].sum())
    return {"IDTP": idtp, "IDFN": float(gt_frames.sum() - idtp), "IDFP": float(trk_frames.sum() - idtp)}


def hota_counts(seq: TrackSequence) -> dict[str, np.ndarray]:
    """Per-alpha HOTA TP/FN/FP, the AssA/AssRe/AssPr averages and LocA of one sequence (arrays over ALPHAS)."""
    num_a = len(ALPHAS)
    out = {key: np.zeros(num_a) for key in ("TP", "FN", "FP", "AssA", "AssRe", "AssPr", "LocA")}
    num_gt_dets = sum(len(f) for f in seq.gt_ids)
    num_trk_dets = sum(len(f) for f in seq.tracker_ids)
    if num_gt_dets == 0 or num_trk_dets == 0:
        out["FN"][:], out["FP"][:], out["LocA"][:] = num_gt_dets, num_trk_dets, 1.0
        return out
    num_gt, num_trk = seq.num_gt_ids, seq.num_tracker_ids
    soft_matches = np.zeros((num_gt, num_trk))
    gt_count, trk_count = np.zeros((num_gt, 1)), np.zeros((1, num_trk))
    for gt, trk, sim in zip(seq.gt_ids, seq.tracker_ids, seq.similarity, strict=True):
        union = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        soft = np.where(union > _EPS, sim / np.where(union > _EPS, union, 1.0), 0.0)
        soft_matches[gt[:, None], trk[None, :]] += soft
        gt_count[gt] += 1
        trk_count[0, trk] += 1
    alignment = soft_matches / (gt_count + trk_count - soft_matches)
    pair_matches = np.zeros((num_a, num_gt, num_trk))
    for gt, trk, sim in zip(seq.gt_ids, seq.tracker_ids, seq.similarity, strict=True):
        if len(gt) == 0 or len(trk) == 0:
            out["FP"] += len(trk)
            out["FN"] += len(gt)
            continue
        rows, cols = linear_sum_assignment(-(alignment[gt[:, None], trk[None, :]] * sim))
        for a, alpha in enumerate(ALPHAS):
            keep = sim[rows, cols] >= alpha - _EPS
            hits = int(keep.sum())
            out["TP"][a] += hits
            out["FN"][a] += len(gt) - hits
            out["FP"][a] += len(trk) - hits
            if hits:
                out["LocA"][a] += sim[rows[keep], cols[keep]].sum()
                pair_matches[a, gt[rows[keep]], trk[cols[keep]]] += 1
    tp = np.maximum(1, out["TP"])
    union = np.maximum(1, gt_count[None] + trk_count[None] - pair_matches)
    out["AssA"] = np.sum(pair_matches * pair_matches / union, axis=(1, 2)) / tp
    out["AssRe"] = np.sum(pair_matches * pair_matches / np.maximum(1, gt_count[None]), axis=(1, 2)) / tp
    out["AssPr"] = np.sum(pair_matches * pair_matches / np.maximum(1, trk_count[None]), axis=(1, 2)) / tp
    out["LocA"] = np.maximum(1e-10, out["LocA"]) / np.maximum(1e-10, out["TP"])
    return out


def combine(per_sequence: list[dict]) -> dict:
    """Counts of several sequences as one: sums, and TP-weighted averages for AssA/AssRe/AssPr/LocA."""
    total = {}
    for key in per_sequence[0]:
        if key in ("AssA", "AssRe", "AssPr", "LocA"):
            continue
        total[key] = sum(s[key] for s in per_sequence)
    if "TP" in total:
        for key in ("AssA", "AssRe", "AssPr"):
            total[key] = sum(s[key] * s["TP"] for s in per_sequence) / np.maximum(1.0, total["TP"])
        located = sum(s["LocA"] * s["TP"] for s in per_sequence)
        total["LocA"] = np.maximum(1e-10, located) / np.maximum(1e-10, total["TP"])
    return total


def tracking_scores(clear: dict, identity: dict, hota: dict) -> dict[str, float]:
    """The reported numbers from (possibly combined) counts: MOTA, MOTP, IDF1, HOTA, DetA, AssA, ... (HOTA family
    as the mean over alphas, and HOTA(0) at the lowest alpha)."""
    tp, fn, fp, idsw = clear["CLR_TP"], clear["CLR_FN"], clear["CLR_FP"], clear["IDSW"]
    objects = clear["MT"] + clear["PT"] + clear["ML"]
    det_a = hota["TP"] / np.maximum(1, hota["TP"] + hota["FN"] + hota["FP"])
    det_re = hota["TP"] / np.maximum(1, hota["TP"] + hota["FN"])
    det_pr = hota["TP"] / np.maximum(1, hota["TP"] + hota["FP"])
    hota_alpha = np.sqrt(det_a * hota["AssA"])
    idtp, idfn, idfp = identity["IDTP"], identity["IDFN"], identity["IDFP"]
    scores = {
        "HOTA": hota_alpha.mean(),
        "DetA": det_a.mean(),
        "AssA": hota["AssA"].mean(),
        "DetRe": det_re.mean(),
        "DetPr": det_pr.mean(),
        "AssRe": hota["AssRe"].mean(),
        "AssPr": hota["AssPr"].mean(),
        "LocA": hota["LocA"].mean(),
        "HOTA(0)": hota_alpha[0],
        "MOTA": (tp - fp - idsw) / max(1.0, tp + fn),
        "MOTP": clear["MOTP_sum"] / max(1.0, tp),
        "MODA": (tp - fp) / max(1.0, tp + fn),
        "CLR_Re": tp / max(1.0, tp + fn),
        "CLR_Pr": tp / max(1.0, tp + fp),
        "MTR": clear["MT"] / max(1.0, objects),
        "PTR": clear["PT"] / max(1.0, objects),
        "MLR": clear["ML"] / max(1.0, objects),
        "IDF1": idtp / max(1.0, idtp + 0.5 * idfp + 0.5 * idfn),
        "IDP": idtp / max(1.0, idtp + idfp),
        "IDR": idtp / max(1.0, idtp + idfn),
    }
    counts = {k: clear[k] for k in ("CLR_TP", "CLR_FN", "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag")}
    counts.update(IDTP=idtp, IDFN=idfn, IDFP=idfp)
    return {**{k: float(v) for k, v in scores.items()}, **{k: int(v) for k, v in counts.items()}}


def evaluate_sequences(sequences: dict[str, TrackSequence], threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """Scores of each sequence and of all of them together (key "COMBINED"), as TrackEval's per-sequence table."""
    counted = {
        name: (clear_counts(s, threshold), identity_counts(s, threshold), hota_counts(s))
        for name, s in sequences.items()
    }
    table = {name: tracking_scores(*c) for name, c in counted.items()}
    parts = list(counted.values())
    table["COMBINED"] = tracking_scores(*(combine([p[i] for p in parts]) for i in range(3)))
    return table
