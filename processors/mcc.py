"""Matthews correlation coefficient (``mcc``; CoLA's metric) of single-label classification, from a streamed
confusion matrix, equal to ``sklearn.metrics.matthews_corrcoef`` (binary and multiclass, including its 0.0
where the true labels or the predictions are all one class)."""
from __future__ import annotations

from typing import Any

import numpy as np

from processors.base import Processor, register_processor
from processors.classification import confusion_matrix
from tasks.classification import ClassificationPredictions


def mcc_from_confusion(cm: Any) -> float:
    """Matthews correlation coefficient (Gorodkin's K-class form) of a confusion matrix, equal to
    ``sklearn.metrics.matthews_corrcoef`` on the samples it counts: 0.0 when the true labels or the
    predictions are all one class, or there are no samples."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {cm.shape}")
    true_sum = cm.sum(axis=1, dtype=np.float64)
    pred_sum = cm.sum(axis=0, dtype=np.float64)
    n_correct = np.trace(cm, dtype=np.float64)
    n = pred_sum.sum()
    cov_true_pred = n_correct * n - np.dot(true_sum, pred_sum)
    cov_pred_pred = n ** 2 - np.dot(pred_sum, pred_sum)
    cov_true_true = n ** 2 - np.dot(true_sum, true_sum)
    denominator = cov_pred_pred * cov_true_true
    if denominator == 0:
        return 0.0
    return float(cov_true_pred / np.sqrt(denominator))



@register_processor
class MatthewsProcessor(Processor):
    """Matthews correlation coefficient (``mcc``) and n from a streamed confusion matrix (binary or multiclass).

    State: the ``C x C`` int64 confusion matrix (rows = true class), the same state as zooeval's
    ClassificationProcessor, so ``mcc`` can also be derived from a stored classification result's matrix.
    """

    name = "mcc"
    version = 1
    tasks = ("text-classification", "text-pair-classification", "image-classification")
    metrics = [{"name": "mcc", "description": "Matthews correlation coefficient of the top-1 predictions (CoLA's metric)",
                "calculation": "Gorodkin's K-class form over the confusion matrix, as sklearn.metrics.matthews_corrcoef",
                "values": "-1 to 1, higher is better; 0.0 when the truth or the predictions are one class"}]

    def __init__(self, classes: list[str]) -> None:
        super().__init__(classes)
        if not self.classes:
            raise ValueError("MatthewsProcessor needs at least one class")
        if len(set(self.classes)) != len(self.classes):
            dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ValueError(f"duplicate class labels: {dupes}")
        self.confmat = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)

    def update(self, batch: ClassificationPredictions) -> None:
        """Add a batch of predictions (its top-1 classes)."""
        ids = list(batch.sample_ids)
        y_true = np.asarray(batch.y_true, dtype=np.int64)
        y_pred = np.asarray(batch.y_pred, dtype=np.int64)
        for arr, what in ((y_true, "true"), (y_pred, "predicted")):
            if arr.shape[0] != len(ids):
                raise ValueError(f"{what} labels: {arr.shape[0]} entries for {len(ids)} sample ids")
            bad = np.flatnonzero((arr < 0) | (arr >= len(self.classes)))
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"{what} label {int(arr[i])} of sample {ids[i]!r} is out of range "
                                 f"[0, {len(self.classes)})")
        if ids:
            self.confmat += confusion_matrix(y_true, y_pred, len(self.classes))

    def merge(self, other: Processor) -> None:
        if not isinstance(other, MatthewsProcessor):
            raise TypeError(f"cannot merge {type(other).__name__} into MatthewsProcessor")
        if other.classes != self.classes:
            raise ValueError("cannot merge processors with different classes")
        self.confmat += other.confmat

    def compute(self) -> dict[str, Any]:
        n = int(self.confmat.sum())
        result: dict[str, Any] = {"overall": {"n": n, "mcc": mcc_from_confusion(self.confmat)}, "per_class": {},
                                  "confusion_matrix": {"labels": list(self.classes), "matrix": self.confmat.tolist()}}
        if n == 0:
            result["undefined"] = {"mcc": "no samples; 0.0 by convention"}
        elif np.count_nonzero(self.confmat.sum(axis=1)) == 1 or np.count_nonzero(self.confmat.sum(axis=0)) == 1:
            result["undefined"] = {"mcc": "the true labels or the predictions are all one class; "
                                          "0.0 by scikit-learn's convention"}
        return result
