"""COCO detection metrics (dl4cv_jax/evaluate/detection.py) against pycocotools' COCOeval on generated data with
the protocol's edge cases, and on small cases whose answer is known by hand."""

import numpy as np
import pytest

from dl4cv_jax.evaluate.detection import Boxes, box_iou, evaluate_coco, per_category_ap
from tests.evaluate.coco_fixtures import generated_coco, pycocotools_eval, reference_stats, to_boxes

pytest.importorskip("pycocotools")


def ours(dataset: dict, results: list[dict]):
    return evaluate_coco(
        to_boxes(dataset["annotations"], detections=False),
        to_boxes(results, detections=True),
        [image["id"] for image in dataset["images"]],
        [category["id"] for category in dataset["categories"]],
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twelve_numbers_and_curves_equal_pycocotools(seed):
    dataset, results = generated_coco(seed)
    reference = pycocotools_eval(dataset, results)
    mine = ours(dataset, results)
    expected = reference_stats(reference)
    for name, value in expected.items():
        assert mine.stats[name] == pytest.approx(value, abs=1e-6), name
    # The whole accumulated tables, not just their means: every (IoU, recall point, class, area, max dets) cell.
    np.testing.assert_allclose(mine.precision, reference.eval["precision"], atol=1e-12)
    np.testing.assert_allclose(mine.recall, reference.eval["recall"], atol=1e-12)
    assert -1 < expected["AP"] < 1 and expected["AR100"] > expected["AR1"]  # a fixture that discriminates


def test_fixture_has_the_edge_cases():
    dataset, results = generated_coco(0)
    annotations = dataset["annotations"]
    assert any(a["iscrowd"] for a in annotations)
    annotated = {a["image_id"] for a in annotations}
    assert any(image["id"] not in annotated for image in dataset["images"])
    assert {3} <= {a["category_id"] for a in annotations} - {r["category_id"] for r in results}
    assert 5 in {r["category_id"] for r in results} - {a["category_id"] for a in annotations}
    scores = [r["score"] for r in results]
    assert len(set(scores)) < len(scores) / 10  # ties everywhere


def _one_image(gt_boxes, det_boxes, scores, crowd=None):
    n = len(gt_boxes)
    gt = Boxes(np.ones(n, int), np.ones(n, int), np.asarray(gt_boxes, float).reshape(-1, 4),
               iscrowd=np.asarray(crowd if crowd is not None else [0] * n, bool))  # fmt: skip
    m = len(det_boxes)
    dets = Boxes(np.ones(m, int), np.ones(m, int), np.asarray(det_boxes, float).reshape(-1, 4),
                 score=np.asarray(scores, float))  # fmt: skip
    return evaluate_coco(gt, dets, [1], [1])


def test_perfect_detections_score_one_and_a_crowd_region_absorbs_detections():
    boxes = [[0, 0, 50, 50], [100, 100, 40, 60]]
    assert _one_image(boxes, boxes, [0.9, 0.8]).stats["AP"] == pytest.approx(1.0)
    # Three detections inside a crowd region: neither true nor false positives, so AP stays 1.
    crowd_region = [[200, 0, 200, 200]]
    extra = [[210, 10, 20, 20], [250, 50, 30, 30], [300, 100, 10, 10]]
    result = _one_image(boxes + crowd_region, boxes + extra, [0.9, 0.8, 0.95, 0.94, 0.93], crowd=[0, 0, 1])
    assert result.stats["AP"] == pytest.approx(1.0)


def test_half_right_ranking_gives_the_interpolated_area():
    # Two objects; detections by score: hit, miss, hit -> precision 1 up to recall .5, then 2/3 up to recall 1.
    gt = [[0, 0, 10, 10], [50, 50, 10, 10]]
    dets = [[0, 0, 10, 10], [200, 200, 10, 10], [50, 50, 10, 10]]
    ap50 = _one_image(gt, dets, [0.9, 0.8, 0.7]).stats["AP50"]
    assert ap50 == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)


def test_crowd_iou_is_over_the_detection_area():
    det = np.array([[10.0, 10.0, 10.0, 10.0]])
    region = np.array([[0.0, 0.0, 100.0, 100.0]])
    assert box_iou(det, region, np.array([True]))[0, 0] == 1.0
    assert box_iou(det, region, np.array([False]))[0, 0] == pytest.approx(0.01)


def test_classes_without_objects_are_absent_not_zero():
    dataset, results = generated_coco(1)
    per_class = per_category_ap(ours(dataset, results))
    assert per_class[5] == -1 and per_class[7] == -1  # no objects: left out of the mean
    assert per_class[3] == 0.0  # objects but no detections: counts as 0
