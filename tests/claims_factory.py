"""Stored-result documents built from labels with scikit-learn (the reference), for the card and claim tests."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def labels_with_accuracy(n: int, correct: int, n_classes: int, seed: int = 0,
                         wrong_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Balanced true labels and predictions with exactly ``correct`` right answers; wrong answers go to the
    next class (or all to ``wrong_to``)."""
    rng = np.random.default_rng(seed)
    y_true = np.arange(n) % n_classes
    rng.shuffle(y_true)
    y_pred = y_true.copy()
    wrong = rng.permutation(n)[: n - correct]
    if wrong_to is None:
        y_pred[wrong] = (y_true[wrong] + 1) % n_classes
    else:
        y_pred[wrong] = np.where(y_true[wrong] == wrong_to, (wrong_to + 1) % n_classes, wrong_to)
    return y_true, y_pred


def classification_result(y_true: Any, y_pred: Any, labels: list[str], *, model_name: str = "org/model",
                          dataset: str = "digits", split: str = "test", variant: str = "original",
                          sparse: bool = False, **extra: Any) -> dict[str, Any]:
    """A stored classification result with every number from scikit-learn (zero_division=0)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ids = list(range(len(labels)))
    cm = confusion_matrix(y_true, y_pred, labels=ids)
    n = int(len(y_true))
    correct = int((y_true == y_pred).sum())
    overall: dict[str, Any] = {"n": n, "correct": correct, "incorrect": n - correct, "accuracy": correct / n}
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        overall.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    per_class = {}
    for i, label in enumerate(labels):
        tp = int(cm[i, i])
        per_class[label] = {"tp": tp, "fp": int(cm[:, i].sum()) - tp, "fn": int(cm[i].sum()) - tp,
                            "support": int(s[i]), "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i])}
    if sparse:
        rows, cols = np.nonzero(cm)
        confusion = {"labels": labels, "format": "sparse",
                     "entries": [[int(i), int(j), int(cm[i, j])] for i, j in zip(rows, cols)]}
    else:
        confusion = {"labels": labels, "matrix": cm.tolist()}
    misclassified = [{"instance": str(k), "true_class": labels[t], "predicted_class": labels[q], "confidence": 0.9}
                     for k, (t, q) in enumerate(zip(y_true, y_pred)) if t != q]
    doc = {"model_name": model_name, "model_revision": "a" * 40, "dataset": dataset, "split": split,
           "dataset_revision": "rev-" + dataset, "variant": variant, "processor": "classification",
           "overall": overall, "per_class": per_class, "confusion_matrix": confusion,
           "misclassifications": misclassified,
           "runtime": {"instances_per_second": 120.5, "time_per_instance": 1 / 120.5, "load_s": 1.25}}
    doc.update(extra)
    return doc


def detection_result(*, dataset: str = "faces", split: str = "val", variant: str = "original") -> dict[str, Any]:
    """A stored detection result (numbers as a detection processor would store them)."""
    return {"model_name": "org/detector", "model_revision": "b" * 40, "dataset": dataset, "split": split,
            "dataset_revision": "rev-" + dataset, "variant": variant, "processor": "detection",
            "overall": {"AP": 0.412, "AP50": 0.633, "AP75": 0.441, "AR100": 0.52, "AP_small": -1.0,
                        "n_images": 200, "n_detections": 900},
            "per_class": {"face": {"AP": 0.412, "AP50": 0.633, "AR100": 0.52, "supercategory": "person"}},
            "per_supercategory": {"person": {"classes": ["face"], "AP": 0.412, "AP50": 0.633, "AR100": 0.52}},
            "runtime": {"instances_per_second": 8.0, "time_per_instance": 0.125, "load_s": 3.0}}


def _identity(model_name: str, dataset: str, split: str, variant: str, task: str, processor: str) -> dict[str, Any]:
    return {"model_name": model_name, "model_revision": "a" * 40, "dataset": dataset, "split": split,
            "dataset_revision": "rev-" + dataset, "variant": variant, "task": task, "processor": processor,
            "runtime": {"instances_per_second": 120.5, "time_per_instance": 1 / 120.5, "load_s": 1.25}}


def mcc_result(y_true: Any, y_pred: Any, labels: list[str], *, model_name: str = "org/model", dataset: str = "digits",
               split: str = "test", variant: str = "original", task: str = "image-classification") -> dict[str, Any]:
    """A stored result of zooeval's own ``mcc`` processor on these labels."""
    from processors.mcc import MatthewsProcessor
    from tasks.classification import ClassificationPredictions

    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    processor = MatthewsProcessor(list(labels))
    processor.update(ClassificationPredictions([str(i) for i in range(len(y_true))], y_true, y_pred[:, None],
                                               np.ones((len(y_true), 1))))
    return {**_identity(model_name, dataset, split, variant, task, "mcc"), **processor.compute()}


def regression_result(y_true: Any, y_pred: Any, *, model_name: str = "org/model", dataset: str = "stsb",
                      split: str = "validation", variant: str = "original") -> dict[str, Any]:
    """A stored result of zooeval's own ``regression`` processor (Pearson, Spearman, MSE, MAE) on these scores."""
    from processors.regression import regression_metrics

    return {**_identity(model_name, dataset, split, variant, "sentence-similarity", "regression"),
            **regression_metrics(y_true, y_pred)}
