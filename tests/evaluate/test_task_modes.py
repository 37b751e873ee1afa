"""`main.py --mode=eval_detection|eval_segmentation|eval_tracking|eval_regression`: from files to report.md,
metrics.json and pictures, with the same numbers as the metric functions; bad input stops in one `error:` line
naming the file, row or id (in-process through main.run_mode, and three times through main.py itself)."""

import json

import numpy as np
import pytest
from PIL import Image

from dl4cv_jax.evaluate import task_files
from dl4cv_jax.evaluate.detection import evaluate_coco
from dl4cv_jax.evaluate.tracking import evaluate_sequences
from tests.bad_input_checks import assert_one_line, exit_line, run_main, stderr_line
from tests.evaluate.eval_checks import assert_picture
from tests.evaluate.task_file_fixtures import coco_files, mask_folders, mot_folders, regression_csv


def _run(mode, tmp_path, **fields):
    import main

    out = tmp_path / "out"
    assert main.run_mode(mode, main.Command(workdir=out, **fields)) is None
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "report.md").read_text().startswith("# ")
    return out, metrics


def test_detection_mode_writes_the_coco_numbers_and_curves(tmp_path):
    gt, pred = coco_files(tmp_path / "files")
    out, metrics = _run("eval_detection", tmp_path, gt=str(gt), pred=str(pred))
    files = task_files.read_coco(gt, pred)
    expected = evaluate_coco(files.gt, files.dets, files.image_ids, list(files.category_names)).stats
    assert {k: metrics[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert metrics["per_category"]["class5"]["AP"] == -1 and metrics["per_category"]["class3"]["AP"] == 0
    assert "| AP50 |" in (out / "report.md").read_text()
    assert_picture(out / "pr_curves_iou50.png")


def test_segmentation_mode_writes_iou_bars_and_confusion(tmp_path):
    gt, pred = mask_folders(tmp_path / "files")
    out, metrics = _run("eval_segmentation", tmp_path, gt=str(gt), pred=str(pred))
    assert metrics["num_classes"] == 5 and metrics["num_masks"] == 3
    assert metrics["per_class"]["class 3"]["iou"] is None  # NaN in JSON: absent from both
    assert 0.4 < metrics["mean_iou"] < 0.9
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["num_pixels"]
    assert_picture(out / "iou_per_class.png", min_side=150)
    assert_picture(out / "confusion_matrix.png")


def test_tracking_mode_writes_the_per_sequence_table(tmp_path):
    gt, pred = mot_folders(tmp_path / "files")
    out, metrics = _run("eval_tracking", tmp_path, gt=str(gt), pred=str(pred))
    expected = evaluate_sequences(task_files.read_mot(gt, pred))
    for name, row in expected.items():
        assert metrics["per_sequence"][name] == pytest.approx(row), name
    assert metrics["HOTA"] == pytest.approx(expected["COMBINED"]["HOTA"])
    report = (out / "report.md").read_text()
    assert "| SEQ-00 |" in report and "| SEQ-01 |" in report and "| COMBINED |" in report
    assert_picture(out / "sequences.png")


def test_regression_mode(tmp_path):
    path = regression_csv(tmp_path / "files")
    out, metrics = _run("eval_regression", tmp_path, pred=str(path))
    assert metrics["num_examples"] == 50 and 0.8 < metrics["r2"] < 1
    assert (out / "scatter.png").exists()


def test_bad_input_is_one_line_naming_the_culprit(tmp_path):
    gt, pred = coco_files(tmp_path / "coco")
    results = json.loads(pred.read_text())
    results[7]["image_id"] = 424242
    bad = tmp_path / "bad_image.json"
    bad.write_text(json.dumps(results))
    assert_one_line(exit_line("eval_detection", gt=str(gt), pred=str(bad)), str(bad), "result 7", "424242")
    results[7]["image_id"], results[9]["category_id"] = results[6]["image_id"], 99
    bad.write_text(json.dumps(results))
    assert_one_line(exit_line("eval_detection", gt=str(gt), pred=str(bad)), "result 9", "category_id 99")
    bad.write_text("[{")
    assert_one_line(exit_line("eval_detection", gt=str(gt), pred=str(bad)), str(bad), "not valid JSON")
    # Masks of different sizes
    gt_dir, pred_dir = mask_folders(tmp_path / "seg")
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(pred_dir / "sub" / "1.png")
    line = exit_line("eval_segmentation", gt=str(gt_dir), pred=str(pred_dir))
    assert_one_line(line, str(pred_dir / "sub" / "1.png"), "10x10", "32x24")
    (pred_dir / "sub" / "1.png").unlink()
    assert_one_line(exit_line("eval_segmentation", gt=str(gt_dir), pred=str(pred_dir)), "1.png", "missing")
    # Tracking: a malformed row, a duplicate id in a frame
    mot_gt, mot_pred = mot_folders(tmp_path / "mot")
    lines = (mot_pred / "SEQ-01.txt").read_text().splitlines()
    lines[4] = "5,3,12.0,oops,4,4,1,-1,-1,-1"
    (mot_pred / "SEQ-01.txt").write_text("\n".join(lines) + "\n")
    line = exit_line("eval_tracking", gt=str(mot_gt), pred=str(mot_pred))
    assert_one_line(line, str(mot_pred / "SEQ-01.txt"), "row 5", "oops")
    lines[4] = lines[3]
    (mot_pred / "SEQ-01.txt").write_text("\n".join(lines) + "\n")
    assert_one_line(exit_line("eval_tracking", gt=str(mot_gt), pred=str(mot_pred)), "SEQ-01.txt", "twice")
    # Regression: a cell that is not a number; a file that does not exist
    path = regression_csv(tmp_path / "reg")
    path.write_text(path.read_text().replace("\n", "\n1.0,abc\n", 1))
    assert_one_line(exit_line("eval_regression", pred=str(path)), str(path), "row 2", "abc")
    missing = tmp_path / "nowhere.json"
    assert_one_line(exit_line("eval_detection", gt=str(gt), pred=str(missing)), str(missing), "no such file")


def test_main_py_bad_input_one_line_exit_1(tmp_path):
    gt, pred = coco_files(tmp_path / "coco")
    results = json.loads(pred.read_text())
    results[3]["category_id"] = 77
    pred.write_text(json.dumps(results))
    result = run_main("--mode=eval_detection", f"--gt={gt}", f"--pred={pred}", f"--workdir={tmp_path / 'out'}")
    stderr_line(result, str(pred), "result 3", "category_id 77")
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_main_py_segmentation_sizes_and_a_misplaced_flag(tmp_path):
    gt_dir, pred_dir = mask_folders(tmp_path / "seg")
    Image.fromarray(np.zeros((5, 7), np.uint8), mode="L").save(pred_dir / "sub" / "0.png")
    result = run_main("--mode=eval_segmentation", f"--gt={gt_dir}", f"--pred={pred_dir}", f"--workdir={tmp_path}/o")
    stderr_line(result, "0.png", "7x5", "32x24")


def test_a_task_flag_on_another_mode_is_refused():
    from absl import app

    import main

    with pytest.raises(app.UsageError, match="--ignore_index applies to --mode=eval_segmentation"):
        main.check_mode_flags("eval_tracking", {"ignore_index"})
    with pytest.raises(app.UsageError, match="--gt applies to --mode=eval_detection"):
        main.check_mode_flags("train", {"gt"})


def test_regression_join_by_id_and_segmentation_class_count(tmp_path):
    gt = tmp_path / "targets.csv"
    gt.write_text("id,target\na,1.0\nb,2.0\nc,4.0\n")
    pred = tmp_path / "preds.csv"
    pred.write_text("id,prediction\nc,4.0\na,1.5\nb,2.0\n")
    _, metrics = _run("eval_regression", tmp_path, gt=str(gt), pred=str(pred))
    assert metrics["mae"] == pytest.approx(0.5 / 3) and metrics["max_error"] == 0.5  # joined by id, not by row
    pred.write_text("id,prediction\nc,4.0\nzz,1.5\nb,2.0\n")
    assert_one_line(exit_line("eval_regression", gt=str(gt), pred=str(pred)), str(pred), "id 'zz'")
    gt_dir, pred_dir = mask_folders(tmp_path / "seg")
    line = exit_line("eval_segmentation", gt=str(gt_dir), pred=str(pred_dir), num_classes=2)
    assert_one_line(line, "--num_classes=2", "class 2")
