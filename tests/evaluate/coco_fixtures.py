"""Generated COCO ground truth and detections with the edge cases the protocol has rules for, and pycocotools'
numbers on them (the reference; a test dependency only)."""

import contextlib
import io

import numpy as np

from dl4cv_jax.evaluate.detection import SUMMARY_NAMES, Boxes


def generated_coco(seed: int = 0, num_images: int = 40) -> tuple[dict, list[dict]]:
    """A COCO instances dict and a results list: boxes of every area range, crowd boxes, images without objects
    (some with false detections), a category without detections, one without objects but with detections,
    one with neither, scores rounded so that many tie, and an image with more than 100 detections of a class."""
    rng = np.random.default_rng(seed)
    categories = [{"id": c, "name": f"class{c}"} for c in (1, 2, 3, 5, 7)]  # 5: never annotated; 7: neither
    images = [{"id": 10 + 3 * i, "width": 640, "height": 480} for i in range(num_images)]
    annotations, results = [], []
    for number, image in enumerate(images):
        if number % 7 == 3:  # no objects; some false detections all the same
            for _ in range(number % 3):
                results.append(
                    {"image_id": image["id"], "category_id": 1, "bbox": [5.0, 5.0, 40.0, 30.0], "score": 0.5}
                )
            continue
        for _ in range(rng.integers(1, 8)):
            side = float(rng.choice([8, 20, 40, 70, 120, 200]) * rng.uniform(0.7, 1.3))
            w, h = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, 600 - w * 0.5), rng.uniform(0, 440 - h * 0.5)
            category = int(rng.choice([1, 2, 3]))
            crowd = int(rng.random() < 0.08)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h * rng.uniform(0.5, 1.0),
                    "iscrowd": crowd,
                }
            )
            if category == 3:
                continue  # category 3 has objects and no detections
            for _ in range(rng.integers(0, 4)):  # near-duplicates: several per object, one matches
                jitter = rng.normal(0, 0.07 * side, 4)
                box = [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])]
                results.append(
                    {
                        "image_id": image["id"],
                        "category_id": category,
                        "bbox": box,
                        "score": round(float(rng.random()), 1),
                    }
                )
        for _ in range(rng.integers(0, 3)):  # background detections, some of category 5 (no objects)
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.choice([1, 2, 5])),
                    "bbox": list(rng.uniform(0, 300, 2)) + list(rng.uniform(4, 150, 2)),
                    "score": round(float(rng.random()), 1),
                }
            )
    crowded = images[0]["id"]
    for k in range(120):  # more than max_dets=100 in one (image, category)
        results.append(
            {
                "image_id": crowded,
                "category_id": 2,
                "bbox": [k * 3.0, 50.0, 30.0, 30.0],
                "score": round(float(rng.random()), 1),
            }
        )
    return {"images": images, "annotations": annotations, "categories": categories}, results


def to_boxes(annotations: list[dict], detections: bool) -> Boxes:
    """Our array form of COCO annotation or result dicts."""
    box = np.asarray([a["bbox"] for a in annotations], float).reshape(-1, 4)
    common = {
        "image_id": np.asarray([a["image_id"] for a in annotations], int),
        "category_id": np.asarray([a["category_id"] for a in annotations], int),
        "box": box,
    }
    if detections:
        return Boxes(**common, score=np.asarray([a["score"] for a in annotations], float))
    return Boxes(
        **common,
        area=np.asarray([a["area"] for a in annotations], float),
        iscrowd=np.asarray([a.get("iscrowd", 0) for a in annotations], bool),
    )


def pycocotools_eval(dataset: dict, results: list[dict]):
    """pycocotools' COCOeval (bbox) on the same data: the evaluated object (for .eval and .stats)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {key: list(value) for key, value in dataset.items()}
        gt.createIndex()
        dt = gt.loadRes([dict(r) for r in results]) if results else COCO()
        evaluation = COCOeval(gt, dt, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def reference_stats(evaluation) -> dict[str, float]:
    return dict(zip(SUMMARY_NAMES, map(float, evaluation.stats), strict=True))
