"""The "plugin_mcc" processor: Matthews correlation coefficient of the top-1 predictions (scikit-learn's
``matthews_corrcoef``, multiclass), from a streamed confusion matrix."""
from __future__ import annotations

from typing import Any

import numpy as np

from processors.base import Processor, register_processor
from processors.classification import confusion_matrix
from tasks.classification import ClassificationPredictions


@register_processor
class MatthewsCorrelation(Processor):
    name = "plugin_mcc"
    tasks = ("text-classification",)
    default = True
    metrics = [{"name": "mcc", "description": "Matthews correlation coefficient of the top-1 predictions",
                "calculation": "(c s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)), t/p true/predicted counts per class, "
                               "c correct, s samples; 0 when undefined", "values": "-1 to 1, higher is better"}]

    def __init__(self, classes: list[str]) -> None:
        super().__init__(classes)
        self.confmat = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)

    def update(self, batch: ClassificationPredictions) -> None:
        self.confmat += confusion_matrix(batch.y_true, batch.y_pred, len(self.classes))

    def merge(self, other: Processor) -> None:
        self.confmat += other.confmat

    def compute(self) -> dict[str, Any]:
        cm = self.confmat.astype(np.float64)
        true, pred, n = cm.sum(axis=1), cm.sum(axis=0), cm.sum()
        denominator = np.sqrt((n * n - pred @ pred) * (n * n - true @ true))
        mcc = float((np.trace(cm) * n - true @ pred) / denominator) if denominator else 0.0
        return {"overall": {"n": int(n), "mcc": mcc}}
