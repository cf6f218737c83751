"""Object detection metrics under the COCO bounding-box protocol, streamed per batch of images.

Every number equals pycocotools' ``COCOeval(gt, dt, "bbox")`` with default parameters (IoU thresholds
0.50:0.05:0.95, 101 recall thresholds, area ranges all/small/medium/large, maxDets 1/10/100), but the
evaluation is vectorised numpy and streamed:

* ``update()`` matches one batch of images completely (matching never crosses images): detections are
  ranked per (image, class) by score (input order on ties, as pycocotools' mergesort), only the best 100
  are kept, and COCO's greedy matching runs for all 4 area ranges x 10 IoU thresholds at once, one
  detection rank at a time across every (image, class) group of the batch. The state kept per detection
  is its score, class, image, rank and two ``(4, 10)`` boolean masks (true positive, false positive; a
  detection that is neither is ignored), plus the count of non-ignored ground truth per (class, area).
* ``compute()`` accumulates precision/recall exactly as ``COCOeval.accumulate`` does (detections of a
  class ordered by score, then image id, then rank) and summarises as ``COCOeval.summarize`` does.

Conventions carried over from pycocotools: crowd ground truth (``iscrowd``) is never a true positive or a
miss; a detection matched to it is ignored, and IoU against it uses the detection's area as the
denominator. Ground truth outside an area range is ignored for that range (its ``area`` field decides,
not its box), as are unmatched detections whose box area lies outside it. A stat is -1 when it is
undefined: no non-ignored ground truth in the classes and area range it averages over.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from processors.base import Processor, register_processor
from tasks.detection import DetectionPredictions

#: pycocotools' default bbox parameters, built with the same expressions so the floats are identical.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = ((0**2, 1e5**2), (0**2, 32**2), (32**2, 96**2), (96**2, 1e5**2))
AREA_LABELS = ("all", "small", "medium", "large")
MAX_DETS = (1, 10, 100)

#: The 12 COCO summary stats, in ``COCOeval.stats`` order: (name, is AP, IoU threshold, area, maxDets).
COCO_STATS = (
    ("AP", True, None, "all", 100),
    ("AP50", True, 0.5, "all", 100),
    ("AP75", True, 0.75, "all", 100),
    ("AP_small", True, None, "small", 100),
    ("AP_medium", True, None, "medium", 100),
    ("AP_large", True, None, "large", 100),
    ("AR1", False, None, "all", 1),
    ("AR10", False, None, "all", 10),
    ("AR100", False, None, "all", 100),
    ("AR_small", False, None, "small", 100),
    ("AR_medium", False, None, "medium", 100),
    ("AR_large", False, None, "large", 100),
)


# --------------------------------------------------------------------------- pure helpers


def box_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO bbox IoU of each ``dets[..., :]`` box against the boxes ``gts[..., j, :]`` of its row.

    ``dets`` is ``(..., 4)``, ``gts`` ``(..., W, 4)`` and ``crowd`` ``(..., W)``; returns ``(..., W)``.
    The arithmetic is pycocotools' ``bbIou`` operation for operation (so the floats are identical):
    for a crowd box the union is the detection's area.
    """
    dx, dy, dw, dh = (dets[..., None, i] for i in range(4))
    gx, gy, gw, gh = (gts[..., i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    det_area = dw * dh
    union = np.where(crowd, det_area, det_area + gw * gh - inter)
    out = np.zeros(inter.shape)
    np.divide(inter, union, out=out, where=(w > 0) & (h > 0))
    return out


def _outside_area_ranges(areas: np.ndarray) -> np.ndarray:
    """``(n, A)`` bool: area outside each of COCO's area ranges (bounds inclusive)."""
    lo = np.array([r[0] for r in AREA_RANGES], dtype=np.float64)
    hi = np.array([r[1] for r in AREA_RANGES], dtype=np.float64)
    return (areas[:, None] < lo) | (areas[:, None] > hi)


@dataclass
class _Matches:
    """Greedy matching of one batch, for every area range (A) and IoU threshold (T)."""

    det_hit: np.ndarray  # (D, A, T) bool: matched to some ground truth
    det_hit_ignored: np.ndarray  # (D, A, T) bool: matched to ignored ground truth (crowd / outside range)
    det_max_iou: np.ndarray  # (D,) best IoU with any ground truth of its image and class
    gt_taken: np.ndarray  # (G,) bool: matched at IoU 0.5, area "all"
    gt_max_iou: np.ndarray  # (G,) best IoU with any kept detection of its image and class


def greedy_match(det_boxes: np.ndarray, det_start: np.ndarray, det_count: np.ndarray,
                 gt_boxes: np.ndarray, gt_crowd: np.ndarray, gt_ignored: np.ndarray,
                 gt_start: np.ndarray, gt_count: np.ndarray) -> _Matches:
    """COCO's greedy matching (``COCOeval.evaluateImg``) for many (image, class) groups at once.

    Group i owns detections ``det_start[i] : det_start[i] + det_count[i]`` (best first, at most 100) and
    ground truth ``gt_start[i] : gt_start[i] + gt_count[i]`` (input order); ``gt_ignored`` is ``(G, A)``.
    Each detection, best first, takes the available ground truth with the highest IoU >= the threshold
    (the last one on ties, as pycocotools' scan does), preferring non-ignored ground truth; crowd ground
    truth stays available after a match. Groups are bucketed by ground-truth count (padding to powers
    of two) and processed one detection rank at a time, all groups and all (area, IoU) settings at once.
    """
    n_areas, n_thr = len(AREA_RANGES), len(IOU_THRESHOLDS)
    out = _Matches(
        det_hit=np.zeros((det_boxes.shape[0], n_areas, n_thr), dtype=bool),
        det_hit_ignored=np.zeros((det_boxes.shape[0], n_areas, n_thr), dtype=bool),
        det_max_iou=np.zeros(det_boxes.shape[0]),
        gt_taken=np.zeros(gt_boxes.shape[0], dtype=bool),
        gt_max_iou=np.zeros(gt_boxes.shape[0]),
    )
    if det_count.size == 0:
        return out
    thresholds = IOU_THRESHOLDS[None, None, :, None]
    bucket = np.ceil(np.log2(gt_count)).astype(np.int64)
    for b in np.unique(bucket):
        groups = np.flatnonzero(bucket == b)
        groups = groups[np.argsort(-det_count[groups], kind="stable")]  # active groups form a prefix
        counts = det_count[groups]
        width = int(gt_count[groups].max())
        valid = np.arange(width) < gt_count[groups, None]  # (n, W)
        gidx = np.where(valid, gt_start[groups, None] + np.arange(width), 0)
        gboxes = gt_boxes[gidx]
        gcrowd = gt_crowd[gidx] & valid
        gignored = np.moveaxis(gt_ignored[gidx], -1, 1)  # (n, A, W)
        available = np.broadcast_to(valid[:, None, None, :], (len(groups), n_areas, n_thr, width)).copy()
        gbest = np.zeros((len(groups), width))
        for rank in range(int(counts[0])):
            n = int(np.count_nonzero(counts > rank))
            d = det_start[groups[:n]] + rank
            iou = np.where(valid[:n], box_iou(det_boxes[d], gboxes[:n], gcrowd[:n]), -1.0)  # (n, W)
            candidate = (iou[:, None, None, :] >= thresholds) & available[:n]  # (n, A, T, W)
            preferred = candidate & ~gignored[:n, :, None, :]
            usable = np.where(preferred.any(axis=-1, keepdims=True), preferred, candidate)
            value = np.where(usable, iou[:, None, None, :], -1.0)
            best = usable & (value == value.max(axis=-1, keepdims=True))
            choice = width - 1 - np.argmax(best[..., ::-1], axis=-1)  # last best, (n, A, T)
            hit = usable.any(axis=-1)
            rows = np.arange(n)[:, None, None]
            out.det_hit[d] = hit
            out.det_hit_ignored[d] = hit & gignored[rows, np.arange(n_areas)[None, :, None], choice]
            out.det_max_iou[d] = np.maximum(iou.max(axis=-1), 0.0)
            gi, ai, ti = np.nonzero(hit & ~gcrowd[rows, choice])
            available[gi, ai, ti, choice[gi, ai, ti]] = False
            gbest[:n] = np.maximum(gbest[:n], iou)
        out.gt_taken[gidx[valid]] = ~available[:, 0, 0, :][valid]
        out.gt_max_iou[gidx[valid]] = gbest[valid]
    return out


def accumulate(labels: np.ndarray, scores: np.ndarray, image_rank: np.ndarray, det_rank: np.ndarray,
               tp: np.ndarray, fp: np.ndarray, n_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision ``(T, R, K, A, M)`` and recall ``(T, K, A, M)`` as ``COCOeval.accumulate`` builds them.

    Per detection: class, score, rank of its image id among all image ids, rank within its (image,
    class) and the ``(A, T)`` true/false positive masks. ``n_positive`` is ``(K, A)``: non-ignored ground
    truth. Settings with no such ground truth stay -1.
    """
    n_classes = n_positive.shape[0]
    n_thr, n_rec, n_areas, n_max = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES), len(MAX_DETS)
    precision = -np.ones((n_thr, n_rec, n_classes, n_areas, n_max))
    recall = -np.ones((n_thr, n_classes, n_areas, n_max))
    # pycocotools concatenates images in id order, each best first, then mergesorts by score.
    order = np.lexsort((det_rank, image_rank, -scores, labels))
    labels, det_rank, tp, fp = labels[order], det_rank[order], tp[order], fp[order]
    bounds = np.searchsorted(labels, np.arange(n_classes + 1))
    n_cols = n_areas * n_thr
    for k in np.flatnonzero(n_positive.any(axis=1)):
        areas = np.flatnonzero(n_positive[k] > 0)
        span = slice(bounds[k], bounds[k + 1])
        for m, max_det in enumerate(MAX_DETS):
            keep = det_rank[span] < max_det
            nd = int(np.count_nonzero(keep))
            if nd == 0:
                recall[:, k, areas, m] = 0.0
                precision[:, :, k, areas, m] = 0.0
                continue
            tp_sum = np.cumsum(tp[span][keep], axis=0, dtype=np.float64).reshape(nd, n_cols)
            fp_sum = np.cumsum(fp[span][keep], axis=0, dtype=np.float64).reshape(nd, n_cols)
            # columns of area ranges without ground truth are computed (divided by 1) but never used
            rc = tp_sum / np.repeat(np.maximum(n_positive[k], 1), n_thr)
            pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
            pr = np.maximum.accumulate(pr[::-1], axis=0)[::-1]  # precision envelope, right to left
            # np.searchsorted(rc[:, c], RECALL_THRESHOLDS, side="left") for every column c at once:
            # the number of rc values below each threshold.
            first_above = np.searchsorted(RECALL_THRESHOLDS, rc, side="right")  # (nd, cols)
            flat = (first_above + np.arange(n_cols) * (n_rec + 1)).ravel()
            below = np.bincount(flat, minlength=n_cols * (n_rec + 1)).reshape(n_cols, n_rec + 1)
            inds = np.cumsum(below, axis=1)[:, :n_rec].T  # (R, cols)
            q = np.where(inds < nd, np.take_along_axis(pr, np.minimum(inds, nd - 1), axis=0), 0.0)
            q = q.reshape(n_rec, n_areas, n_thr).transpose(2, 0, 1)  # (T, R, A)
            r_last = rc[-1].reshape(n_areas, n_thr).T  # (T, A)
            precision[:, :, k, areas, m] = q[:, :, areas]
            recall[:, k, areas, m] = r_last[:, areas]
    return precision, recall


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The 12 COCO stats (``COCOeval.summarize``): means over the entries > -1, -1 if there are none."""
    stats = {}
    for name, is_ap, iou_thr, area, max_dets in COCO_STATS:
        aind = [AREA_LABELS.index(area)]
        mind = [MAX_DETS.index(max_dets)]
        s = precision if is_ap else recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRESHOLDS)[0]]
        s = s[:, :, :, aind, mind] if is_ap else s[:, :, aind, mind]
        defined = s[s > -1]
        stats[name] = float(np.mean(defined)) if defined.size else -1.0
    return stats


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _top(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest values, plus any tied with the n-th largest."""
    if values.size <= n:
        return np.arange(values.size)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(values >= np.partition(values, values.size - n)[values.size - n])


def _as_array(values: Any, dtype: Any, shape: tuple, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.size == 0:
        arr = arr.reshape((0,) + shape[1:])
    if arr.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {arr.shape}")
    return arr


# --------------------------------------------------------------------------- the processor


@register_processor
class DetectionProcessor(Processor):
    """COCO bbox AP/AR (overall, per class, per supercategory), TP/FP/FN at IoU 0.5 and misdetections.

    ``compute()`` returns:

    * ``overall``: the 12 COCO stats (AP, AP50, AP75, AP_small, AP_medium, AP_large, AR1, AR10, AR100,
      AR_small, AR_medium, AR_large; equal to ``COCOeval.stats``), plus ``tp``, ``fp``, ``fn``,
      ``precision``, ``recall``, ``f1`` summed over classes, ``n_images`` and ``n_detections`` (the
      detections evaluated: at most 100 per image and class).
    * ``per_class``: for every class, its supercategory, the 12 stats (equal to pycocotools' per-category
      values: the mean of ``eval["precision"][:, :, k, a, m]`` or ``eval["recall"][:, k, a, m]`` over the
      entries > -1, else -1) and ``support``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``.
    * ``per_supercategory``: for every supercategory, its classes and the 12 stats computed over the
      entries > -1 of its classes only, i.e. what ``COCOeval`` reports with ``params.catIds`` set to
      those classes. As a class's entries are either all -1 (no ground truth in that area range) or
      all defined, this is the mean of the defined per-class values, and -1 when no class defines it.
      Empty when no supercategories were given.
    * ``misdetections``: ``false_positives`` (the ``max_misdetections`` most confident, with image,
      class, box, confidence and best IoU with a same-class ground truth box) and ``missed`` ground truth
      (the ``max_misdetections`` largest by area, with image, class, box, area and best IoU with a
      same-class detection), each with a ``..._truncated`` flag.

    TP/FP/FN use COCO's own matching at IoU 0.5 over all areas with the best 100 detections per image
    and class, whatever their score: a detection matched to a crowd region counts as neither, crowd
    regions are never missed, detections beyond the 100 best are dropped as COCO drops them.
    """

    name = "detection"
    version = 1
    tasks = ("object-detection",)
    metrics = [
        {'name': 'AP',
         'description': 'COCO average precision over IoU thresholds 0.50:0.05:0.95, all areas, up to 100 detections per image '
                        '(processors.detection, equal to pycocotools)',
         'calculation': 'mean over classes and IoU thresholds of 101-point interpolated precision',
         'values': '0 to 1 (-1: undefined), higher is better'},
        {'name': 'AP50', 'description': 'COCO average precision at IoU 0.50',
         'calculation': 'as AP at the single IoU threshold 0.5', 'values': '0 to 1 (-1: undefined), higher is better'},
        {'name': 'AP75', 'description': 'COCO average precision at IoU 0.75',
         'calculation': 'as AP at the single IoU threshold 0.75', 'values': '0 to 1 (-1: undefined), higher is better'},
        {'name': 'AR100', 'description': 'COCO average recall with up to 100 detections per image',
         'calculation': 'mean over classes and IoU thresholds 0.50:0.05:0.95 of the recall reached',
         'values': '0 to 1 (-1: undefined), higher is better'},
    ]

    @classmethod
    def from_dataset(cls, dataset: dict[str, Any], **params: Any) -> "DetectionProcessor":
        """An instance for a registered COCO dataset: its classes and, when every class has one, their
        supercategories."""
        classes = [c["label"] for c in dataset["classes"]]
        supercategories = [(c.get("extra") or {}).get("supercategory") for c in dataset["classes"]]
        return cls(classes, None if any(s is None for s in supercategories) else supercategories, **params)

    def __init__(self, classes: list[str], supercategories: list[str] | None = None,
                 max_misdetections: int = 1000) -> None:
        super().__init__(classes)
        if not self.classes:
            raise ValueError("DetectionProcessor needs at least one class")
        if len(set(self.classes)) != len(self.classes):
            dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ValueError(f"duplicate class labels: {dupes}")
        if supercategories is not None and len(supercategories) != len(self.classes):
            raise ValueError(f"{len(supercategories)} supercategories for {len(self.classes)} classes")
        if max_misdetections < 0:
            raise ValueError(f"max_misdetections must be >= 0, got {max_misdetections}")
        self.supercategories = list(supercategories) if supercategories is not None else None
        self.max_misdetections = int(max_misdetections)
        self.image_ids: list[Hashable] = []
        self._seen: set[Hashable] = set()
        n_classes, n_areas, n_thr = len(self.classes), len(AREA_RANGES), len(IOU_THRESHOLDS)
        self.n_positive = np.zeros((n_classes, n_areas), dtype=np.int64)
        # Per evaluated detection, one part per update (concatenated when needed, see _detections):
        # score, class, image (index into image_ids), rank in its (image, class), TP and FP masks (A, T).
        self._parts: list[tuple[np.ndarray, ...]] = [(
            np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
            np.zeros((0, n_areas, n_thr), dtype=bool), np.zeros((0, n_areas, n_thr), dtype=bool),
        )]
        self.false_positives: list[dict[str, Any]] = []
        self.missed: list[dict[str, Any]] = []
        self.n_false_positives = 0
        self.n_missed = 0

    # ------------------------------------------------------------------ input checks

    def _checked(self, batch: DetectionPredictions) -> dict[str, np.ndarray]:
        n_img = len(batch.image_ids)
        n_gt = len(np.asarray(batch.gt_labels).reshape(-1))
        n_det = len(np.asarray(batch.det_labels).reshape(-1))
        a = {
            "gt_image": _as_array(batch.gt_image, np.int64, (n_gt,), "gt_image"),
            "gt_boxes": _as_array(batch.gt_boxes, np.float64, (n_gt, 4), "gt_boxes"),
            "gt_labels": _as_array(batch.gt_labels, np.int64, (n_gt,), "gt_labels"),
            "det_image": _as_array(batch.det_image, np.int64, (n_det,), "det_image"),
            "det_boxes": _as_array(batch.det_boxes, np.float64, (n_det, 4), "det_boxes"),
            "det_scores": _as_array(batch.det_scores, np.float64, (n_det,), "det_scores"),
            "det_labels": _as_array(batch.det_labels, np.int64, (n_det,), "det_labels"),
        }
        gt_boxes = a["gt_boxes"]
        a["gt_areas"] = (gt_boxes[:, 2] * gt_boxes[:, 3] if batch.gt_areas is None
                         else _as_array(batch.gt_areas, np.float64, (n_gt,), "gt_areas"))
        a["gt_iscrowd"] = (np.zeros(n_gt, dtype=bool) if batch.gt_iscrowd is None
                           else _as_array(batch.gt_iscrowd, bool, (n_gt,), "gt_iscrowd"))
        for size in ("widths", "heights"):
            if getattr(batch, size) is not None:
                _as_array(getattr(batch, size), np.float64, (n_img,), size)
        for key in ("gt_boxes", "det_boxes", "det_scores", "gt_areas"):
            if not np.all(np.isfinite(a[key])):
                raise ValueError(f"{key} must be finite")
        for key in ("gt_boxes", "det_boxes"):
            if np.any(a[key][:, 2:] < 0):
                raise ValueError(f"{key} must have non-negative width and height")
        for key, n in (("gt_image", n_img), ("det_image", n_img),
                       ("gt_labels", len(self.classes)), ("det_labels", len(self.classes))):
            bad = np.flatnonzero((a[key] < 0) | (a[key] >= n))
            if bad.size:
                raise ValueError(f"{key} value {int(a[key][bad[0]])} is out of range [0, {n})")
        return a

    def _add_images(self, image_ids: list[Hashable]) -> int:
        """Register a batch's image ids (each evaluated once); returns the index of the first."""
        ids = [i.item() if isinstance(i, np.generic) else i for i in image_ids]
        if len(set(ids)) != len(ids):
            raise ValueError("a batch lists the same image id twice")
        seen = [i for i in ids if i in self._seen]
        if seen:
            raise ValueError(f"image ids seen twice (each image is evaluated once): {seen[:5]}")
        offset = len(self.image_ids)
        self.image_ids.extend(ids)
        self._seen.update(ids)
        return offset

    # ------------------------------------------------------------------ streaming interface

    def update(self, batch: DetectionPredictions) -> None:
        a = self._checked(batch)
        offset = self._add_images(list(batch.image_ids))
        n_classes = len(self.classes)

        # Detections grouped by (image, class), best first, input order on ties; the best 100 are kept.
        order = np.lexsort((-a["det_scores"], a["det_labels"], a["det_image"]))
        det_key = a["det_image"][order] * n_classes + a["det_labels"][order]
        first = np.ones(det_key.size, dtype=bool)
        first[1:] = det_key[1:] != det_key[:-1]
        rank = np.arange(det_key.size) - np.flatnonzero(first)[np.cumsum(first) - 1]
        kept = rank < MAX_DETS[-1]
        order, det_key, rank = order[kept], det_key[kept], rank[kept]
        det_boxes, scores = a["det_boxes"][order], a["det_scores"][order]

        # Ground truth grouped by (image, class), input order within a group.
        gt_key = a["gt_image"] * n_classes + a["gt_labels"]
        gt_order = np.argsort(gt_key, kind="stable")
        gt_key = gt_key[gt_order]
        gt_boxes, gt_crowd, gt_areas = a["gt_boxes"][gt_order], a["gt_iscrowd"][gt_order], a["gt_areas"][gt_order]
        gt_labels, gt_image = a["gt_labels"][gt_order], a["gt_image"][gt_order]
        gt_ignored = gt_crowd[:, None] | _outside_area_ranges(gt_areas)  # (G, A)

        det_groups, det_start, det_count = np.unique(det_key, return_index=True, return_counts=True)
        gt_groups, gt_start, gt_count = np.unique(gt_key, return_index=True, return_counts=True)
        _, di, gi = np.intersect1d(det_groups, gt_groups, assume_unique=True, return_indices=True)
        matches = greedy_match(det_boxes, det_start[di], det_count[di], gt_boxes, gt_crowd, gt_ignored,
                               gt_start[gi], gt_count[gi])

        det_outside = _outside_area_ranges(det_boxes[:, 2] * det_boxes[:, 3])[:, :, None]
        ignored = np.where(matches.det_hit, matches.det_hit_ignored, det_outside)
        tp = matches.det_hit & ~ignored
        fp = ~matches.det_hit & ~ignored
        labels = det_key % n_classes
        self._parts.append((scores, labels, offset + det_key // n_classes, rank, tp, fp))
        positive = ~gt_ignored
        for area in range(len(AREA_RANGES)):
            self.n_positive[:, area] += np.bincount(gt_labels[positive[:, area]], minlength=n_classes)

        image_ids = self.image_ids[offset:]
        false_positives = np.flatnonzero(fp[:, 0, 0])
        self._add_false_positives(false_positives.size, [
            {"image_id": image_ids[int(det_key[i] // n_classes)], "class": self.classes[int(labels[i])],
             "bbox": det_boxes[i].tolist(), "confidence": float(scores[i]),
             "max_iou": float(matches.det_max_iou[i])}
            for i in false_positives[_top(scores[false_positives], self.max_misdetections)]
        ])
        missed = np.flatnonzero(positive[:, 0] & ~matches.gt_taken)
        self._add_missed(missed.size, [
            {"image_id": image_ids[int(gt_image[i])], "class": self.classes[int(gt_labels[i])],
             "bbox": gt_boxes[i].tolist(), "area": float(gt_areas[i]), "max_iou": float(matches.gt_max_iou[i])}
            for i in missed[_top(gt_areas[missed], self.max_misdetections)]
        ])

    # Misdetection lists are kept in a total order (value, then image id, class and box), so the kept
    # records do not depend on how the images were batched or merged.
    def _add_false_positives(self, count: int, records: list[dict[str, Any]]) -> None:
        self.n_false_positives += count
        merged = sorted(self.false_positives + records,
                        key=lambda r: (-r["confidence"], r["image_id"], r["class"], r["bbox"]))
        self.false_positives = merged[: self.max_misdetections]

    def _add_missed(self, count: int, records: list[dict[str, Any]]) -> None:
        self.n_missed += count
        merged = sorted(self.missed + records, key=lambda r: (-r["area"], r["image_id"], r["class"], r["bbox"]))
        self.missed = merged[: self.max_misdetections]

    def _detections(self) -> tuple[np.ndarray, ...]:
        """The per-detection state as one tuple of arrays (parts are joined once, not per update)."""
        if len(self._parts) > 1:
            self._parts = [tuple(np.concatenate(column) for column in zip(*self._parts))]
        return self._parts[0]

    def merge(self, other: Processor) -> None:
        if not isinstance(other, DetectionProcessor):
            raise TypeError(f"cannot merge {type(other).__name__} into DetectionProcessor")
        if other.classes != self.classes:
            raise ValueError("cannot merge processors with different classes")
        offset = self._add_images(other.image_ids)
        self.n_positive += other.n_positive
        scores, labels, images, ranks, tp, fp = other._detections()
        self._parts.append((scores, labels, offset + images, ranks, tp, fp))
        self._add_false_positives(other.n_false_positives, [dict(r) for r in other.false_positives])
        self._add_missed(other.n_missed, [dict(r) for r in other.missed])

    def compute(self) -> dict[str, Any]:
        n_classes = len(self.classes)
        image_rank = np.empty(len(self.image_ids), dtype=np.int64)
        image_rank[sorted(range(len(self.image_ids)), key=self.image_ids.__getitem__)] = np.arange(len(self.image_ids))
        scores, labels, images, ranks, det_tp, det_fp = self._detections()
        precision, recall = accumulate(labels, scores, image_rank[images], ranks, det_tp, det_fp, self.n_positive)

        tp = np.bincount(labels, weights=det_tp[:, 0, 0], minlength=n_classes).astype(np.int64)
        fp = np.bincount(labels, weights=det_fp[:, 0, 0], minlength=n_classes).astype(np.int64)
        support = self.n_positive[:, 0]

        def counts(t: int, f: int, n: int) -> dict[str, Any]:
            return {"tp": t, "fp": f, "fn": n - t, "precision": _ratio(t, t + f), "recall": _ratio(t, n),
                    "f1": _ratio(2 * t, 2 * t + f + (n - t))}

        overall = summarize(precision, recall)
        overall.update(counts(int(tp.sum()), int(fp.sum()), int(support.sum())))
        overall.update(n_images=len(self.image_ids), n_detections=int(scores.size))
        per_class = {}
        for k, label in enumerate(self.classes):
            entry: dict[str, Any] = {"supercategory": self.supercategories[k] if self.supercategories else None}
            entry.update(summarize(precision[:, :, [k]], recall[:, [k]]))
            entry.update(support=int(support[k]), **counts(int(tp[k]), int(fp[k]), int(support[k])))
            per_class[label] = entry
        per_supercategory = {}
        for sc in dict.fromkeys(self.supercategories or []):
            ks = [k for k, s in enumerate(self.supercategories) if s == sc]
            per_supercategory[sc] = {"classes": [self.classes[k] for k in ks],
                                     **summarize(precision[:, :, ks], recall[:, ks])}
        return {
            "overall": overall,
            "per_class": per_class,
            "per_supercategory": per_supercategory,
            "misdetections": {
                "false_positives": [dict(r) for r in self.false_positives],
                "false_positives_truncated": self.n_false_positives > len(self.false_positives),
                "missed": [dict(r) for r in self.missed],
                "missed_truncated": self.n_missed > len(self.missed),
            },
        }
