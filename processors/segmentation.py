"""Semantic segmentation metrics from a streamed pixel confusion matrix.

The state is a ``C x C`` int64 matrix of pixels (rows = true class, columns = predicted class) over every scored
pixel: a pixel whose truth is IGNORE_INDEX (255) is left out. ``update()`` adds an image's pixels with one
``np.bincount``, so one image, many images in one batch, or many batches streamed give the same matrix;
:func:`segmentation_metrics` derives every number from it.

Conventions (those of the segmentation references: mmsegmentation and Hugging Face evaluate's ``mean_iou``,
the FCN paper's definitions; the tests compare with torchmetrics):

* per-class IoU = TP / (TP + FP + FN); a class absent from both truth and predictions has no IoU (None) and is
  left out of ``mean_iou`` (torchmetrics ``MulticlassJaccardIndex(average="macro", ignore_index=255)`` equals it:
  it gives such classes weight 0).
* per-class accuracy = TP / (TP + FN) (recall); a class absent from the truth has none (None) and is left out
  of ``mean_accuracy``. (torchmetrics' macro accuracy differs here: it counts a class that is predicted but
  absent from the truth as 0.)
* ``pixel_accuracy`` = sum TP / scored pixels; ``fw_iou`` = sum over classes of (true pixels / scored pixels) x
  IoU (frequency-weighted IoU; torchmetrics' weighted Jaccard index).
* With no scored pixel at all every rate is None.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from core.voc import IGNORE_INDEX
from processors.base import Processor, register_processor
from processors.classification import add_pairs, confusion_doc


def _rate(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    """num / den element-wise as Python floats, None where den is 0."""
    return [float(a) / float(b) if b else None for a, b in zip(num, den)]


def segmentation_metrics(cm: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """``{"overall": {...}, "per_class": {...}}`` from a pixel confusion matrix (see the module docstring)."""
    cm = np.asarray(cm, dtype=np.int64)
    n = len(classes)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {n} classes")
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    union = support + predicted - tp
    iou = _rate(tp, union)
    accuracy = _rate(tp, support)
    total = int(support.sum())
    defined_iou = [v for v in iou if v is not None]
    defined_acc = [v for v in accuracy if v is not None]
    overall = {
        "n_pixels": total,
        "correct_pixels": int(tp.sum()),
        "mean_iou": float(np.mean(defined_iou)) if defined_iou else None,
        "pixel_accuracy": float(tp.sum()) / total if total else None,
        "mean_accuracy": float(np.mean(defined_acc)) if defined_acc else None,
        "fw_iou": float(sum(s * v for s, v in zip(support, iou) if s)) / total if total else None,
        "classes_scored": len(defined_iou),
    }
    per_class = {
        c: {"iou": iou[i], "accuracy": accuracy[i], "tp": int(tp[i]), "fp": int(predicted[i] - tp[i]),
            "fn": int(support[i] - tp[i]), "support": int(support[i])}
        for i, c in enumerate(classes)
    }
    return {"overall": overall, "per_class": per_class}


@register_processor
class SegmentationProcessor(Processor):
    """Per-class IoU and accuracy, mIoU, pixel accuracy, mean class accuracy and frequency-weighted IoU of
    per-pixel class maps (tasks.segmentation.SegmentationPredictions), and the pixel confusion matrix."""

    name = "segmentation"
    version = 1
    tasks = ("semantic-segmentation",)
    metrics = [
        {"name": "mean_iou", "description": "Mean over classes of the intersection over union of predicted and true pixels "
                                            "(classes absent from truth and prediction left out)",
         "calculation": "mean_c TP_c / (TP_c + FP_c + FN_c)", "values": "0 to 1, higher is better"},
        {"name": "pixel_accuracy", "description": "Share of scored pixels (truth not 255) predicted as their class",
         "calculation": "sum TP / scored pixels", "values": "0 to 1, higher is better"},
        {"name": "mean_accuracy", "description": "Mean over the classes present in the truth of the share of their pixels "
                                                 "predicted right", "calculation": "mean_c TP_c / (TP_c + FN_c)",
         "values": "0 to 1, higher is better"},
        {"name": "fw_iou", "description": "IoU per class weighted by the class's share of the true pixels",
         "calculation": "sum_c (support_c / scored pixels) IoU_c", "values": "0 to 1, higher is better"},
    ]

    def __init__(self, classes: list[str]) -> None:
        super().__init__(classes)
        if not self.classes:
            raise ValueError("SegmentationProcessor needs at least one class")
        n = len(self.classes)
        self.confmat = np.zeros((n, n), dtype=np.int64)
        self.n_images = 0
        self.ignored_pixels = 0

    def add_image(self, y_true: np.ndarray, y_pred: np.ndarray, image_id: Any = None) -> None:
        """Add one image's true and predicted class maps (same shape; truth IGNORE_INDEX = not scored)."""
        t = np.asarray(y_true)
        p = np.asarray(y_pred)
        where = f"image {image_id!r}" if image_id is not None else "an image"
        if t.shape != p.shape:
            raise ValueError(f"{where}: the true map is {t.shape} but the predicted map {p.shape}")
        t = t.reshape(-1).astype(np.int64)
        p = p.reshape(-1).astype(np.int64)
        n = len(self.classes)
        scored = t != IGNORE_INDEX
        for values, what in ((t[scored], "true"), (p[scored], "predicted")):
            bad = (values < 0) | (values >= n)
            if bad.any():
                raise ValueError(f"{where}: {what} class {int(values[bad][0])} is outside the {n} classes")
        add_pairs(self.confmat, t[scored], p[scored])
        self.ignored_pixels += int(t.size - scored.sum())
        self.n_images += 1

    def update(self, batch: Any) -> None:
        for image_id, y_true, y_pred in zip(batch.image_ids, batch.y_true, batch.y_pred):
            self.add_image(y_true, y_pred, image_id)

    def merge(self, other: Processor) -> None:
        if not isinstance(other, SegmentationProcessor) or other.classes != self.classes:
            raise ValueError("cannot merge segmentation processors of different classes")
        self.confmat += other.confmat
        self.n_images += other.n_images
        self.ignored_pixels += other.ignored_pixels

    def compute(self) -> dict[str, Any]:
        result = segmentation_metrics(self.confmat, self.classes)
        result["overall"] = {"n": self.n_images, **result["overall"], "ignored_pixels": self.ignored_pixels}
        result["confusion_matrix"] = confusion_doc(self.confmat, self.classes)
        return result
