"""COCO bbox evaluation: our DetectionProcessor against pycocotools (and faster-coco-eval if importable).

A seeded synthetic set (5,000 images, about 35,000 ground truth boxes over 80 classes, about 40,000
detections: jittered true boxes, duplicates, wrong classes, background boxes, crowd regions) is
evaluated in one process by each evaluator, best of 2 runs each. Timed: pycocotools'
``evaluate + accumulate + summarize`` on prebuilt COCO objects; our ``update`` (in batches of
``--batch-images`` images, as stored predictions arrive) + ``compute`` on prebuilt batches. The 12
stats, and every class's 12 stats, must be identical to 1e-9 or the benchmark fails.
Usage: python benchmarks/bench_coco.py [--quick] [--images N] [--batch-images B]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import report  # noqa: E402
from processors.detection import COCO_STATS, DetectionPredictions, DetectionProcessor  # noqa: E402

N_CLASSES = 80
TOL = 1e-9


def make_dataset(n_images: int, seed: int = 0) -> dict[str, Any]:
    """COCO-format images, categories, annotations and detection results (about 8 detections per image)."""
    rng = np.random.default_rng(seed)
    categories = [{"id": k + 1, "name": f"class{k:02d}", "supercategory": f"super{k // 8}"} for k in range(N_CLASSES)]
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(n_images)]
    n_gt = rng.poisson(7, size=n_images)
    gt_image = np.repeat(np.arange(1, n_images + 1), n_gt)
    g = gt_image.size
    wh = np.exp(rng.uniform(np.log(4), np.log(400), size=(g, 2)))
    xy = rng.uniform(0, 1, size=(g, 2)) * np.maximum([640, 480] - wh, 1)
    gt_boxes = np.hstack([xy, wh])
    gt_cat = rng.zipf(1.3, size=g) % N_CLASSES + 1  # a few frequent classes, a long tail
    crowd = rng.random(g) < 0.01
    area = wh[:, 0] * wh[:, 1] * rng.uniform(0.5, 1.0, size=g)
    annotations = [
        {"id": i + 1, "image_id": int(gt_image[i]), "category_id": int(gt_cat[i]), "bbox": gt_boxes[i].tolist(),
         "area": float(area[i]), "iscrowd": int(crowd[i])}
        for i in range(g)
    ]
    # detections: 80% of the boxes found (10% of them twice), 10% with a wrong class, then background
    found = np.flatnonzero(rng.random(g) < 0.8)
    found = np.concatenate([found, found[rng.random(found.size) < 0.1]])
    jitter = rng.normal(0, 1, size=(found.size, 4)) * rng.choice([0.03, 0.1, 0.25], size=(found.size, 1))
    det_boxes = gt_boxes[found].copy()
    det_boxes[:, :2] += jitter[:, :2] * det_boxes[:, 2:]
    det_boxes[:, 2:] *= np.exp(jitter[:, 2:])
    det_cat = np.where(rng.random(found.size) < 0.9, gt_cat[found], rng.integers(1, N_CLASSES + 1, found.size))
    det_image = gt_image[found]
    det_score = np.clip(rng.normal(0.7, 0.2, size=found.size), 0.01, 1.0)
    n_bg = max(8 * n_images - found.size, 0)
    bg_wh = np.exp(rng.uniform(np.log(4), np.log(300), size=(n_bg, 2)))
    bg_boxes = np.hstack([rng.uniform(0, 1, size=(n_bg, 2)) * np.maximum([640, 480] - bg_wh, 1), bg_wh])
    det_boxes = np.vstack([det_boxes, bg_boxes])
    det_cat = np.concatenate([det_cat, rng.zipf(1.3, size=n_bg) % N_CLASSES + 1])
    det_image = np.concatenate([det_image, rng.integers(1, n_images + 1, n_bg)])
    det_score = np.round(np.concatenate([det_score, rng.uniform(0.01, 0.6, n_bg)]), 3)  # rounded: ties
    order = np.argsort(det_image, kind="stable")
    results = [
        {"image_id": int(det_image[i]), "category_id": int(det_cat[i]), "bbox": det_boxes[i].tolist(),
         "score": float(det_score[i])}
        for i in order
    ]
    return {"images": images, "categories": categories, "annotations": annotations, "results": results}


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def coco_objects(COCO: type, data: dict[str, Any]) -> tuple[Any, Any]:
    """Ground truth and results as COCO objects of a pycocotools-compatible API."""
    gt = COCO()
    gt.dataset = {k: copy.deepcopy(data[k]) for k in ("images", "categories", "annotations")}
    gt.createIndex()
    return gt, gt.loadRes(copy.deepcopy(data["results"]))


def _time_cocoeval(coco_cls: Any, evaluator_cls: Any, data: dict[str, Any], runs: int) -> tuple[float, Any]:
    """Best time of evaluate + accumulate + summarize (bbox, default parameters) on prebuilt COCO objects."""
    def once():
        with contextlib.redirect_stdout(io.StringIO()):
            gt, dt = coco_objects(coco_cls, data)
            ev = evaluator_cls(gt, dt, "bbox")
            t0 = time.perf_counter()
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            return time.perf_counter() - t0, ev

    times, ev = zip(*(once() for _ in range(runs)))
    return min(times), ev[-1]


def run_pycocotools(data: dict[str, Any], runs: int) -> tuple[float, Any]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return _time_cocoeval(COCO, COCOeval, data, runs)


def run_faster_coco_eval(data: dict[str, Any], runs: int) -> tuple[float, np.ndarray] | None:
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError:
        return None
    seconds, ev = _time_cocoeval(COCO, COCOeval_faster, data, runs)
    return seconds, np.asarray(ev.stats[:12])


def run_ours(data: dict[str, Any], runs: int, batch_images: int) -> tuple[float, dict[str, Any]]:
    cat_ids = [c["id"] for c in data["categories"]]
    by_image: dict[int, tuple[list, list]] = {img["id"]: ([], []) for img in data["images"]}
    for a in data["annotations"]:
        by_image[a["image_id"]][0].append(a)
    for r in data["results"]:
        by_image[r["image_id"]][1].append(r)
    batches = []
    for start in range(0, len(data["images"]), batch_images):
        part = data["images"][start:start + batch_images]
        batches.append(DetectionPredictions.from_coco(
            part, [a for img in part for a in by_image[img["id"]][0]],
            [r for img in part for r in by_image[img["id"]][1]], cat_ids))

    def once():
        proc = DetectionProcessor([c["name"] for c in data["categories"]],
                                  supercategories=[c["supercategory"] for c in data["categories"]])
        for b in batches:
            proc.update(b)
        return proc.compute()

    return best_of(runs, once)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="500 images instead of 5,000")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--batch-images", type=int, default=500)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    n_images = args.images or (500 if args.quick else 5000)
    data = make_dataset(n_images)
    names = [s[0] for s in COCO_STATS]

    coco_s, coco_eval = run_pycocotools(data, args.runs)
    coco_stats = np.asarray(coco_eval.stats)
    ours_s, ours = run_ours(data, args.runs, args.batch_images)
    worst = float(np.max(np.abs(np.array([ours["overall"][n] for n in names]) - coco_stats)))
    p = coco_eval.params
    for k, cat in enumerate(data["categories"]):  # pycocotools' per-category values, -1 when undefined
        for name, is_ap, iou_thr, area, max_dets in COCO_STATS:
            t = slice(None) if iou_thr is None else np.flatnonzero(p.iouThrs == iou_thr)
            a, m = p.areaRngLbl.index(area), p.maxDets.index(max_dets)
            s = coco_eval.eval["precision"][t, :, k, a, m] if is_ap else coco_eval.eval["recall"][t, k, a, m]
            s = np.asarray(s)[np.asarray(s) > -1]
            expected = float(np.mean(s)) if s.size else -1.0
            worst = max(worst, abs(ours["per_class"][cat["name"]][name] - expected))
    assert worst <= TOL, f"DetectionProcessor differs from pycocotools by {worst}"

    figures: dict[str, Any] = {
        "images": n_images,
        "ground_truth": len(data["annotations"]),
        "detections": len(data["results"]),
        "classes": N_CLASSES,
        "batch_images": args.batch_images,
        "runs": args.runs,
        "pycocotools_s": round(coco_s, 3),
        "ours_s": round(ours_s, 3),
        "time_ratio_ours_over_pycocotools": round(ours_s / coco_s, 4),
        "speedup_vs_pycocotools": round(coco_s / ours_s, 2),
        "max_abs_difference_vs_pycocotools": worst,
        "AP": ours["overall"]["AP"],
    }
    faster = run_faster_coco_eval(data, args.runs)
    if faster is None:
        figures["faster_coco_eval"] = "not installed"
    else:
        faster_s, faster_stats = faster
        figures["faster_coco_eval_s"] = round(faster_s, 3)
        figures["ours_vs_faster_coco_eval_time_ratio"] = round(ours_s / faster_s, 2)
        figures["faster_coco_eval_max_abs_difference"] = float(np.max(np.abs(faster_stats - coco_stats)))
    report("bench_coco", figures)


if __name__ == "__main__":
    main()
