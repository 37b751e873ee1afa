"""Tracking metrics (dl4cv_jax/evaluate/tracking.py) against trackeval 1.3.0 (HOTA, CLEAR, Identity: every field,
per sequence and combined) and motmetrics 1.4.0 (CLEAR, IDF1), and the MOTChallenge file reading against
trackeval's own MOT17 reader and preprocessing (distractors, zero-marked boxes)."""

import contextlib
import io

import numpy as np
import pytest

from dl4cv_jax.evaluate.task_files import read_mot
from dl4cv_jax.evaluate.tracking import evaluate_sequences
from tests.evaluate.task_file_fixtures import mot_folders
from tests.evaluate.tracking_fixtures import motmetrics_summary, sequence_from_rows, synthetic_rows, trackeval_results

pytest.importorskip("trackeval")

FIELDS = {  # our name -> trackeval's (HOTA family: mean over the 19 alphas, as trackeval's summaries report)
    **{name: name for name in ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "HOTA(0)")},
    **{name: name for name in ("MOTA", "MOTP", "MODA", "CLR_Re", "CLR_Pr", "MTR", "PTR", "MLR", "IDF1", "IDP", "IDR")},
    **{name: name for name in ("CLR_TP", "CLR_FN", "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag", "IDTP", "IDFN", "IDFP")},
}


def _largest_difference(ours: dict, theirs: dict) -> float:
    worst = 0.0
    for name, other in FIELDS.items():
        value = theirs[other]
        value = float(np.mean(value)) if np.ndim(value) else float(value)
        worst = max(worst, abs(ours[name] - value))
    return worst


def test_equal_to_trackeval_per_sequence_and_combined():
    rows = {f"seq{seed}": synthetic_rows(seed) for seed in range(3)}
    sequences = {name: sequence_from_rows(gt, trk, 30) for name, (gt, trk) in rows.items()}
    ours, theirs = evaluate_sequences(sequences), trackeval_results(sequences)
    for name in ours:
        assert _largest_difference(ours[name], theirs[name]) < 1e-9, name
    combined = ours["COMBINED"]
    assert combined["IDSW"] > 0 and combined["Frag"] > 0 and 0.2 < combined["HOTA"] < 0.9  # discriminating data


def test_clear_and_idf1_equal_motmetrics():
    rows = {f"seq{seed}": synthetic_rows(seed) for seed in range(3)}
    ours = evaluate_sequences({name: sequence_from_rows(gt, trk, 30) for name, (gt, trk) in rows.items()})
    summary = motmetrics_summary(rows)
    for name, key in [*((n, n) for n in rows), ("COMBINED", "OVERALL")]:
        row = summary.loc[key]
        assert ours[name]["MOTA"] == pytest.approx(row["mota"], abs=1e-9)
        assert ours[name]["MOTP"] == pytest.approx(1 - row["motp"], abs=1e-9)  # motmetrics: distance = 1 - IoU
        assert ours[name]["IDF1"] == pytest.approx(row["idf1"], abs=1e-9)
        assert ours[name]["IDSW"] == row["num_switches"]
        assert (ours[name]["MT"], ours[name]["ML"]) == (row["mostly_tracked"], row["mostly_lost"])


def _add_distractors_and_zero_marked(gt_file, trk_file):
    """A static person (class 7) with a tracker box on it, which MOT17 removes from the tracker's output, and a
    pedestrian marked conf 0, which it does not score."""
    gt_lines, trk_lines = [], []
    for frame in range(1, 31):
        gt_lines.append(f"{frame},900,500,300,40,80,1,7,1.0")
        trk_lines.append(f"{frame},950,501,301,40,80,1,-1,-1,-1")
        gt_lines.append(f"{frame},901,20,300,40,80,0,1,1.0")
    with gt_file.open("a") as handle:
        handle.write("\n".join(gt_lines) + "\n")
    with trk_file.open("a") as handle:
        handle.write("\n".join(trk_lines) + "\n")


def test_mot_files_read_as_trackeval_reads_mot17(tmp_path):
    from trackeval.datasets import MotChallenge2DBox
    from trackeval.metrics import CLEAR, HOTA, Identity

    gt_dir, pred_dir = mot_folders(tmp_path, seeds=(0, 1))
    tracker_dir = tmp_path / "trackers" / "mine" / "data"
    tracker_dir.mkdir(parents=True)
    plain = evaluate_sequences(read_mot(gt_dir, pred_dir))
    for path in sorted(pred_dir.glob("*.txt")):
        _add_distractors_and_zero_marked(gt_dir / path.stem / "gt" / "gt.txt", path)
        (tracker_dir / path.name).write_text(path.read_text())
    ours = evaluate_sequences(read_mot(gt_dir, tracker_dir))
    config = {"GT_FOLDER": str(gt_dir), "TRACKERS_FOLDER": str(tmp_path / "trackers"), "SKIP_SPLIT_FOL": True,
              "SEQ_INFO": {"SEQ-00": 30, "SEQ-01": 30}, "PRINT_CONFIG": False, "BENCHMARK": "MOT17"}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = MotChallenge2DBox(config)
        for name in ("SEQ-00", "SEQ-01"):
            data = dataset.get_preprocessed_seq_data(dataset.get_raw_seq_data("mine", name), "pedestrian")
            theirs = {}
            for metric in (HOTA(), CLEAR(), Identity()):
                theirs.update(metric.eval_sequence(data))
            assert _largest_difference(ours[name], theirs) < 1e-9, name
    for name in ("SEQ-00", "SEQ-01"):  # the boxes on the distractor are dropped, the zero-marked object unscored
        assert [ours[name][k] for k in ("CLR_TP", "CLR_FN", "CLR_FP")] == [
            plain[name][k] for k in ("CLR_TP", "CLR_FN", "CLR_FP")
        ]


def test_a_continuing_pair_outweighs_a_better_iou():
    # Frame 2: each tracker box overlaps the *other* object slightly more, both above 0.5. CLEAR keeps last
    # frame's pairs (no identity switch); matching on IoU alone would swap both.
    a, b = [0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 10.0, 10.0]
    gt = np.array([[1, 1, *a], [1, 2, 30, 0, 10, 10], [2, 1, *a], [2, 2, *b]], float)
    trk = np.array([[1, 7, *a], [1, 8, 30, 0, 10, 10], [2, 7, 3.0, 0, 10, 10], [2, 8, 1.0, 0, 10, 10]], float)
    sequence = sequence_from_rows(gt, trk, 2)
    ours = evaluate_sequences({"s": sequence})["s"]
    assert ours["IDSW"] == 0 and ours["CLR_TP"] == 4
    assert _largest_difference(ours, trackeval_results({"s": sequence})["s"]) < 1e-9
