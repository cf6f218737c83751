"""DetectionProcessor against pycocotools' COCOeval (bbox, default parameters) on the same inputs.

Every case is random but seeded; each edge-case test first asserts that its case really contains the
situation it is named after. Expected numbers always come from pycocotools run inside the test.
"""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from processors.base import PROCESSORS
from processors.detection import COCO_STATS, DetectionPredictions, DetectionProcessor, box_iou

TOL = 1e-9
STAT_NAMES = [s[0] for s in COCO_STATS]
ODD_SIZES = [(32.0, 32.0), (96.0, 96.0), (16.0, 64.0), (48.0, 192.0), (0.0, 10.0)]  # on the area bounds


# --------------------------------------------------------------------------- random COCO cases


def _box(rng: np.random.Generator, width: float = 640, height: float = 480) -> list[float]:
    if rng.random() < 0.1:
        w, h = ODD_SIZES[rng.integers(len(ODD_SIZES))]
    elif rng.random() < 0.3:
        w, h = float(rng.integers(1, 150)), float(rng.integers(1, 150))
    else:
        w, h = (float(v) for v in np.exp(rng.uniform(np.log(2), np.log(300), size=2)))
    return [float(rng.uniform(0, width - min(w, width - 1))), float(rng.uniform(0, height - min(h, height - 1))), w, h]


def _jitter(rng: np.random.Generator, box: list[float], scale: float) -> list[float]:
    x, y, w, h = box
    return [x + float(rng.normal(0, scale * max(w, 1))), y + float(rng.normal(0, scale * max(h, 1))),
            w * float(np.exp(rng.normal(0, scale))), h * float(np.exp(rng.normal(0, scale)))]


def make_case(seed: int, n_images: int = 40, n_classes: int = 5, max_gt: int = 8, crowd_rate: float = 0.05,
              miss_rate: float = 0.2, max_background: int = 6, score_decimals: int | None = None,
              crowd_hits: int = 0, string_ids: bool = False) -> dict:
    """Images (ids shuffled, not in list order), COCO ground truth and detection results."""
    rng = np.random.default_rng(seed)
    categories = [{"id": 3 * k + 1, "name": f"class{k}", "supercategory": f"super{k % 3}"} for k in range(n_classes)]
    cat_ids = [c["id"] for c in categories]
    ids = (rng.permutation(n_images) * 7 + 5).tolist()
    if string_ids:  # as the pipeline's sample ids; sorted as strings, not numbers
        ids = [f"img-{i}" for i in ids]
    images = [{"id": i, "width": 640, "height": 480} for i in ids]
    annotations, results = [], []

    def score() -> float:
        s = float(rng.random())
        return round(s, score_decimals) if score_decimals is not None else s

    for img in ids:
        for _ in range(int(rng.integers(0, max_gt + 1))):
            box = _box(rng)
            crowd = int(rng.random() < crowd_rate)
            area = box[2] * box[3] * (1.0 if rng.random() < 0.5 else float(rng.uniform(0.4, 1.0)))
            cat = cat_ids[rng.integers(n_classes)]
            annotations.append({"id": len(annotations) + 1, "image_id": img, "category_id": cat,
                                "bbox": box, "area": area, "iscrowd": crowd})
            copies = 0 if rng.random() < miss_rate else 1 + int(rng.random() < 0.2)
            copies += crowd_hits if crowd else 0
            for _ in range(copies):
                label = cat if rng.random() < 0.85 else cat_ids[rng.integers(n_classes)]
                results.append({"image_id": img, "category_id": label, "score": score(),
                                "bbox": _jitter(rng, box, float(rng.choice([0.02, 0.1, 0.3])))})
        for _ in range(int(rng.integers(0, max_background + 1))):
            results.append({"image_id": img, "category_id": cat_ids[rng.integers(n_classes)],
                            "score": score(), "bbox": _box(rng)})
    order = rng.permutation(len(results))  # detections arrive in no particular order
    results = [results[i] for i in order]
    return {"images": images, "annotations": annotations, "results": results, "categories": categories}


# --------------------------------------------------------------------------- references


def coco_eval(case: dict, cat_ids: list[int] | None = None) -> COCOeval:
    """pycocotools' evaluation of a case (optionally restricted to some categories)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": case["images"], "annotations": copy.deepcopy(case["annotations"]),
                      "categories": case["categories"]}
        gt.createIndex()
        if case["results"]:
            dt = gt.loadRes(copy.deepcopy(case["results"]))
        else:  # loadRes cannot take an empty list
            dt = COCO()
            dt.dataset = {"images": case["images"], "annotations": [], "categories": case["categories"]}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def per_category_stats(ev: COCOeval, k: int) -> dict[str, float]:
    """The 12 stats of category index k from ``ev.eval``: mean over entries > -1, -1 if none."""
    p = ev.params
    area = {label: i for i, label in enumerate(p.areaRngLbl)}
    max_dets = {m: i for i, m in enumerate(p.maxDets)}
    out = {}
    for name, is_ap, iou_thr, area_label, md in COCO_STATS:
        t = slice(None) if iou_thr is None else np.flatnonzero(p.iouThrs == iou_thr)
        if is_ap:
            s = ev.eval["precision"][t, :, k, area[area_label], max_dets[md]]
        else:
            s = ev.eval["recall"][t, k, area[area_label], max_dets[md]]
        s = np.asarray(s)[np.asarray(s) > -1]
        out[name] = float(np.mean(s)) if s.size else -1.0
    return out


def reference_counts(ev: COCOeval) -> dict[int, dict[str, int]]:
    """TP / FP / FN per category id at IoU 0.5, area "all", maxDets 100, from ``ev.evalImgs``."""
    out = {c: {"tp": 0, "fp": 0, "fn": 0} for c in ev.params.catIds}
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0]:
            continue
        matched, ignored = e["dtMatches"][0] > 0, e["dtIgnore"][0].astype(bool)
        c = out[e["category_id"]]
        c["tp"] += int(np.count_nonzero(matched & ~ignored))
        c["fp"] += int(np.count_nonzero(~matched & ~ignored))
        c["fn"] += int(np.count_nonzero(e["gtIgnore"] == 0)) - int(np.count_nonzero(matched & ~ignored))
    return out


def evaluate(case: dict, batch_size: int | None = None, **kwargs) -> dict:
    """Our processor on a case, fed in batches of ``batch_size`` images (all at once by default)."""
    classes = [c["name"] for c in case["categories"]]
    supercategories = [c["supercategory"] for c in case["categories"]]
    cat_ids = [c["id"] for c in case["categories"]]
    proc = DetectionProcessor(classes, supercategories=supercategories, **kwargs)
    images = case["images"]
    step = batch_size or max(len(images), 1)
    for start in range(0, len(images), step):
        part = images[start:start + step]
        ids = {img["id"] for img in part}
        proc.update(DetectionPredictions.from_coco(
            part, [a for a in case["annotations"] if a["image_id"] in ids],
            [r for r in case["results"] if r["image_id"] in ids], cat_ids))
    return proc.compute()


def assert_matches_pycocotools(case: dict, result: dict | None = None) -> COCOeval:
    """Every overall and per-class stat and TP/FP/FN equal pycocotools' (to 1e-9)."""
    ev = coco_eval(case)
    result = result or evaluate(case)
    for i, name in enumerate(STAT_NAMES):
        assert result["overall"][name] == pytest.approx(float(ev.stats[i]), abs=TOL), f"overall {name}"
    counts = reference_counts(ev)
    for k, cat in enumerate(case["categories"]):
        ours = result["per_class"][cat["name"]]
        for name, expected in per_category_stats(ev, k).items():
            assert ours[name] == pytest.approx(expected, abs=TOL), f"{cat['name']} {name}"
        for name in ("tp", "fp", "fn"):
            assert ours[name] == counts[cat["id"]][name], f"{cat['name']} {name}"
    for name in ("tp", "fp", "fn"):
        assert result["overall"][name] == sum(c[name] for c in counts.values())
    return ev


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed, kwargs", [
    (0, {}),
    (1, {"n_images": 150, "n_classes": 12, "max_gt": 12, "crowd_rate": 0.1}),
    (2, {"n_images": 80, "n_classes": 3, "max_gt": 20, "miss_rate": 0.5, "max_background": 15}),
    (3, {"n_images": 120, "n_classes": 8, "score_decimals": 2, "crowd_rate": 0.15, "crowd_hits": 2}),
    (4, {"n_images": 400, "n_classes": 20, "max_gt": 10, "score_decimals": 3, "string_ids": True}),
])
def test_random_cases_equal_pycocotools(seed, kwargs):
    case = make_case(seed, **kwargs)
    ev = assert_matches_pycocotools(case)
    assert 0 < ev.stats[0] < 1  # a non-trivial case


def test_class_without_detections():
    case = make_case(10)
    case["results"] = [r for r in case["results"] if r["category_id"] != 1]
    assert any(a["category_id"] == 1 and not a["iscrowd"] for a in case["annotations"])
    result = evaluate(case)
    assert_matches_pycocotools(case, result)
    assert result["per_class"]["class0"]["AP"] == 0.0 and result["per_class"]["class0"]["tp"] == 0


def test_class_without_ground_truth():
    case = make_case(11)
    case["annotations"] = [a for a in case["annotations"] if a["category_id"] != 4]
    assert any(r["category_id"] == 4 for r in case["results"])
    result = evaluate(case)
    assert_matches_pycocotools(case, result)
    assert result["per_class"]["class1"]["AP"] == -1.0 and result["per_class"]["class1"]["fp"] > 0


def test_images_without_ground_truth_or_detections():
    case = make_case(12, n_images=60)
    ids = [img["id"] for img in case["images"]]
    no_gt, no_dets = set(ids[:15]), set(ids[10:30])  # ten images have neither
    case["annotations"] = [a for a in case["annotations"] if a["image_id"] not in no_gt]
    case["results"] = [r for r in case["results"] if r["image_id"] not in no_dets]
    assert any(r["image_id"] in no_gt for r in case["results"])
    assert any(a["image_id"] in no_dets for a in case["annotations"])
    assert_matches_pycocotools(case)


def test_no_detections_at_all_and_no_ground_truth_at_all():
    case = make_case(13)
    assert_matches_pycocotools({**case, "results": []})
    result = evaluate({**case, "annotations": []})
    assert_matches_pycocotools({**case, "annotations": []}, result)
    assert all(result["overall"][name] == -1.0 for name in STAT_NAMES)


def test_crowd_regions():
    case = make_case(14, n_images=60, crowd_rate=0.4, crowd_hits=3)
    assert sum(a["iscrowd"] for a in case["annotations"]) > 20
    ev = assert_matches_pycocotools(case)
    # detections on crowd regions were really ignored (matched to a crowd box) in pycocotools
    assert any((e["dtIgnore"][0] & (e["dtMatches"][0] > 0)).any() for e in ev.evalImgs if e is not None)


def test_tied_scores():
    case = make_case(15, n_images=80, score_decimals=1, max_background=10)
    scores = [r["score"] for r in case["results"]]
    assert len(set(scores)) <= 11 < len(scores)
    assert_matches_pycocotools(case)


def test_more_than_100_detections_per_image():
    case = make_case(16, n_images=10, n_classes=2, max_background=250, score_decimals=2)
    per_group: dict = {}
    for r in case["results"]:
        key = (r["image_id"], r["category_id"])
        per_group[key] = per_group.get(key, 0) + 1
    assert max(per_group.values()) > 100
    assert_matches_pycocotools(case)


def test_equal_iou_takes_the_last_ground_truth():
    """The best detection overlaps two boxes with IoU exactly 0.5; pycocotools' scan keeps the last one,
    which leaves the first one to the second detection (a different choice would make it a miss)."""
    case = {
        "images": [{"id": 1}],
        "categories": [{"id": 1, "name": "a", "supercategory": "s"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 5.0], "area": 50.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0.0, 5.0, 10.0, 5.0], "area": 50.0, "iscrowd": 0},
        ],
        "results": [{"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.9},
                    {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 5.0], "score": 0.8}],
    }
    ev = assert_matches_pycocotools(case)
    assert reference_counts(ev)[1]["tp"] == 2


def test_supercategories_equal_pycocotools_restricted_to_their_categories():
    case = make_case(17, n_images=60, n_classes=7)
    result = evaluate(case)
    for sc, entry in result["per_supercategory"].items():
        cats = [c for c in case["categories"] if c["supercategory"] == sc]
        assert entry["classes"] == [c["name"] for c in cats]
        ev = coco_eval(case, cat_ids=[c["id"] for c in cats])
        for i, name in enumerate(STAT_NAMES):
            assert entry[name] == pytest.approx(float(ev.stats[i]), abs=TOL), f"{sc} {name}"
    assert set(result["per_supercategory"]) == {"super0", "super1", "super2"}


def test_batches_and_merge_give_the_same_result():
    case = make_case(18, n_images=50, score_decimals=1)
    whole = evaluate(case)
    assert evaluate(case, batch_size=7) == whole
    classes = [c["name"] for c in case["categories"]]
    cat_ids = [c["id"] for c in case["categories"]]
    shards = []
    for part in (case["images"][:20], case["images"][20:]):
        ids = {img["id"] for img in part}
        proc = DetectionProcessor(classes, supercategories=[c["supercategory"] for c in case["categories"]])
        proc.update(DetectionPredictions.from_coco(
            part, [a for a in case["annotations"] if a["image_id"] in ids],
            [r for r in case["results"] if r["image_id"] in ids], cat_ids))
        shards.append(proc)
    shards[1].merge(shards[0])  # merged out of order: image ids decide the order, not arrival
    assert shards[1].compute() == whole


def test_misdetections_are_pycocotools_false_positives_and_misses():
    case = make_case(19, n_images=40, crowd_rate=0.2, crowd_hits=1)
    result = evaluate(case, max_misdetections=100_000)
    ev = coco_eval(case)
    names = {c["id"]: c["name"] for c in case["categories"]}
    false_positives, missed = [], []
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0]:
            continue
        ious = ev.ious[e["image_id"], e["category_id"]]
        gt_column = {g["id"]: j for j, g in enumerate(ev._gts[e["image_id"], e["category_id"]])}
        for d, det_id in enumerate(e["dtIds"]):
            if e["dtMatches"][0, d] == 0 and not e["dtIgnore"][0, d]:
                det = ev.cocoDt.anns[det_id]
                best = float(np.max(ious[d])) if len(ious) else 0.0
                false_positives.append(
                    (det["image_id"], names[det["category_id"]], tuple(det["bbox"]), det["score"], best))
        for g, gt_id in enumerate(e["gtIds"]):
            if e["gtMatches"][0, g] == 0 and not e["gtIgnore"][g]:
                gt = ev.cocoGt.anns[gt_id]
                best = float(np.max(ious[:, gt_column[gt_id]])) if len(ious) else 0.0
                missed.append((gt["image_id"], names[gt["category_id"]], tuple(gt["bbox"]), gt["area"], best))
    mis = result["misdetections"]
    ours_fp = [(r["image_id"], r["class"], tuple(r["bbox"]), r["confidence"], r["max_iou"])
               for r in mis["false_positives"]]
    ours_missed = [(r["image_id"], r["class"], tuple(r["bbox"]), r["area"], r["max_iou"]) for r in mis["missed"]]
    assert sorted(ours_fp) == sorted(false_positives) and len(ours_fp) == result["overall"]["fp"]
    assert sorted(ours_missed) == sorted(missed) and len(ours_missed) == result["overall"]["fn"]
    assert not mis["false_positives_truncated"] and not mis["missed_truncated"]

    capped = evaluate(case, batch_size=9, max_misdetections=10)["misdetections"]
    assert capped["false_positives_truncated"] and capped["missed_truncated"]
    most_confident = sorted((f[3] for f in false_positives), reverse=True)[:10]
    assert [r["confidence"] for r in capped["false_positives"]] == most_confident
    assert [r["area"] for r in capped["missed"]] == sorted((m[3] for m in missed), reverse=True)[:10]


def test_precision_recall_f1_from_counts():
    result = evaluate(make_case(20))
    for entry in [result["overall"], *result["per_class"].values()]:
        tp, fp, fn = entry["tp"], entry["fp"], entry["fn"]
        assert entry["precision"] == (tp / (tp + fp) if tp + fp else 0.0)
        assert entry["recall"] == (tp / (tp + fn) if tp + fn else 0.0)
        assert entry["f1"] == (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)


def test_box_iou_equals_pycocotools_bit_for_bit():
    rng = np.random.default_rng(21)
    dets = np.array([_jitter(rng, _box(rng, 60, 60), 0.5) for _ in range(40)])
    gts = np.array([_box(rng, 60, 60) for _ in range(30)])
    crowd = rng.random(30) < 0.3
    expected = mask_utils.iou(dets.tolist(), gts.tolist(), crowd.astype(np.uint8).tolist())
    ours = box_iou(dets, np.broadcast_to(gts, (40, 30, 4)), np.broadcast_to(crowd, (40, 30)))
    np.testing.assert_array_equal(ours, expected)


def test_registered_and_rejects_bad_input():
    assert PROCESSORS.get("detection") is DetectionProcessor
    proc = DetectionProcessor(["a", "b"])
    batch = DetectionPredictions.from_coco(
        [{"id": 1}], [{"image_id": 1, "category_id": 0, "bbox": [0, 0, 5, 5], "area": 25}],
        [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}], [0, 1])
    proc.update(batch)
    with pytest.raises(ValueError, match="seen twice"):
        proc.update(batch)
    with pytest.raises(ValueError, match="out of range"):
        DetectionProcessor(["a"]).update(batch)
    with pytest.raises(ValueError, match="non-negative"):
        DetectionProcessor(["a", "b"]).update(DetectionPredictions(
            [1], np.zeros(0), np.zeros((0, 4)), np.zeros(0), np.zeros(1), np.array([[0, 0, -1.0, 2]]),
            np.ones(1), np.zeros(1)))
    with pytest.raises(ValueError, match="category"):
        DetectionPredictions.from_coco(
            [{"id": 1}], [], [{"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1], "score": 1}], [0, 1])
    with pytest.raises(ValueError, match="duplicate"):
        DetectionProcessor(["a", "a"])
