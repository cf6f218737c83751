"""Single-label classification metrics from a streamed confusion matrix.

The processor state is only a ``C x C`` int64 confusion matrix (rows = true class, columns =
predicted class) plus a capped list of misclassified samples. ``update()`` accumulates,
``merge()`` adds another instance's state and ``compute()`` derives every number through the
pure functions :func:`confusion_matrix` and :func:`metrics_from_confusion`.

Every number equals scikit-learn's with ``zero_division=0`` (see :func:`metrics_from_confusion`):

* ``macro_precision`` / ``macro_recall`` / ``macro_f1``: sklearn's default, the mean over the
  labels present in the ground truth or the predictions (``labels=None``). A perfect model on a
  20-image subset of a 1,000-class dataset scores 1.0.
* ``macro_precision_all_classes`` / ``macro_recall_all_classes`` / ``macro_f1_all_classes``: the
  mean over all ``C`` dataset classes (``labels=range(C)``); a class absent from both the ground
  truth and the predictions counts as 0.0, so the same perfect model scores 20 / 1000 = 0.02.
* ``micro_*``, ``weighted_*``, ``accuracy`` and the per-class values are the same under both
  label sets (classes absent from both have no counts and no support).

With no samples (sklearn rejects empty input) every rate is 0.0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from core.arrays import safe_divide
from core.collector import collector_paused
from core.data import check_class_groups
from core.fingerprint import fingerprint
from processors.base import Processor, register_processor
from tasks.classification import ClassificationPredictions


def _as_labels(values: Any, what: str) -> np.ndarray:
    """Return ``values`` as a 1-D int64 array; integral floats are accepted, others rejected."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise ValueError(f"{what} must hold integer class indices, got dtype {arr.dtype}")


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """``n_classes x n_classes`` int64 count matrix; ``cm[i, j]`` = samples of true class i predicted j.

    Equals ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(n_classes))``.
    Raises ValueError when the lengths differ or a label lies outside ``[0, n_classes)``.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} != {p.shape[0]}")
    for arr, what in ((t, "y_true"), (p, "y_pred")):
        bad = np.flatnonzero((arr < 0) | (arr >= n_classes))
        if bad.size:
            raise ValueError(
                f"{what} label {int(arr[bad[0]])} at position {int(bad[0])} "
                f"is out of range [0, {n_classes})"
            )
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    add_pairs(cm, t, p)
    return cm


def add_pairs(cm: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    """Add the (true, predicted) pairs of in-range int64 label arrays to the C x C count matrix ``cm`` in place.

    A dense bincount over all C x C cells when the pairs outnumber them; with many classes (1,000 classes are a
    million cells) ``np.add.at`` on the cells the pairs hit, with no pass over the whole matrix: 32,768 pairs
    over 1,000 classes in 0.08 ms against 0.47 ms by bincount and 1.6 ms by np.unique (numpy 2.4, see
    benchmarks/bench_processor.py)."""
    if not cm.flags.c_contiguous:  # its flat view would be a copy, and the counts would be lost
        raise ValueError("add_pairs needs a C-contiguous count matrix")
    n_classes = cm.shape[0]
    flat = y_true * n_classes + y_pred
    if n_classes * n_classes > flat.size:
        np.add.at(cm.reshape(-1), flat, 1)
    else:
        cm += np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


#: Above this many classes the confusion matrix is stored sparse: a dense 1,000-class matrix is about 9 MB
#: of BSON and a 21,843-class one (ImageNet-21k heads) would exceed MongoDB's 16 MB document limit.
DENSE_MAX_CLASSES = 100


def confusion_doc(cm: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The stored form of a confusion matrix: ``{"labels", "matrix"}`` (rows = true class) up to
    DENSE_MAX_CLASSES classes, else ``{"labels", "format": "sparse", "entries": [[true, predicted, count], ...]}``
    with the non-zero cells only (at most one per evaluated sample). :func:`dense_confusion` reads both."""
    if len(classes) <= DENSE_MAX_CLASSES:
        return {"labels": list(classes), "matrix": cm.tolist()}
    n_classes = cm.shape[0]
    cells = np.flatnonzero(cm)  # row-major: by true class, then predicted class
    entries = np.empty((cells.size, 3), dtype=np.int64)
    np.divmod(cells, n_classes, out=(entries[:, 0], entries[:, 1]))
    entries[:, 2] = cm.reshape(-1)[cells]
    with collector_paused():
        triples = entries.tolist()
    return {"labels": list(classes), "format": "sparse", "entries": triples}


def dense_confusion(doc: dict[str, Any]) -> np.ndarray:
    """The C x C int64 matrix of a stored confusion matrix (dense or sparse form)."""
    n = len(doc["labels"])
    if doc.get("format") == "sparse":
        cm = np.zeros((n, n), dtype=np.int64)
        for i, j, count in doc["entries"]:
            cm[i, j] = count
        return cm
    return np.asarray(doc["matrix"], dtype=np.int64).reshape(n, n)


def metrics_from_confusion(cm: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Derive ``{"overall": {...}, "per_class": {...}}`` from a confusion matrix.

    ``overall`` holds n, correct, incorrect, accuracy and precision/recall/f1 under these averages,
    each equal to ``sklearn.metrics.precision_recall_fscore_support(y_true, y_pred, average=...,
    zero_division=0)``:

    * ``macro_*``: unweighted mean over the classes present in the ground truth or the predictions
      (sklearn's default ``labels=None``).
    * ``macro_*_all_classes``: unweighted mean over all ``len(classes)`` classes, those absent from
      both y_true and y_pred counting as 0.0 (sklearn with ``labels=range(C)``).
    * ``micro_*``: from the pooled counts (precision = recall = f1 = accuracy), and ``weighted_*``:
      per-class values weighted by support; both equal sklearn with ``labels=None`` and with
      ``labels=range(C)``.

    ``per_class`` holds tp, fp, fn, support, precision, recall, f1 for every label in ``classes``
    (also classes never predicted or absent from the ground truth), as sklearn's ``average=None``
    with ``labels=range(C)``. Divisions by zero give 0.0. With an all-zero matrix (no samples, which
    sklearn rejects) every rate is 0.0. All values are plain Python int/float.
    """
    cm = np.asarray(cm)
    n_classes = len(classes)
    if cm.shape != (n_classes, n_classes):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {n_classes} classes")
    cm = cm.astype(np.int64, copy=False)

    tp = np.diag(cm).astype(np.int64)
    support = cm.sum(axis=1)  # true counts per class
    predicted = cm.sum(axis=0)  # predicted counts per class
    fp = predicted - tp
    fn = support - tp

    precision = safe_divide(tp, predicted)
    recall = safe_divide(tp, support)
    # sklearn (>= 1.3) computes F-beta directly from the counts: (1+b^2) tp / (b^2 (tp+fn) + tp+fp)
    f1 = safe_divide(2 * tp, support + predicted)

    n = int(cm.sum())
    correct = int(tp.sum())
    tp_sum, pred_sum, true_sum = tp.sum(), predicted.sum(), support.sum()
    micro_p = float(safe_divide(tp_sum, pred_sum))
    micro_r = float(safe_divide(tp_sum, true_sum))
    micro_f1 = float(safe_divide(2 * tp_sum, true_sum + pred_sum))

    present = (support + predicted) > 0  # sklearn's labels=None: unique_labels(y_true, y_pred)

    def macro(values: np.ndarray) -> float:
        return float(np.mean(values[present])) if present.any() else 0.0

    def weighted(values: np.ndarray) -> float:
        total = support.sum()
        if total == 0:
            return 0.0
        return float(np.average(values, weights=support))

    overall = {
        "n": n,
        "correct": correct,
        "incorrect": n - correct,
        "accuracy": float(safe_divide(correct, n)),
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "macro_precision_all_classes": float(np.mean(precision)),
        "macro_recall_all_classes": float(np.mean(recall)),
        "macro_f1_all_classes": float(np.mean(f1)),
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": micro_f1,
        "weighted_precision": weighted(precision),
        "weighted_recall": weighted(recall),
        "weighted_f1": weighted(f1),
    }
    per_class = {
        label: {"tp": tp_c, "fp": fp_c, "fn": fn_c, "support": support_c, "precision": p_c, "recall": r_c, "f1": f1_c}
        for label, tp_c, fp_c, fn_c, support_c, p_c, r_c, f1_c in zip(
            classes, tp.tolist(), fp.tolist(), fn.tolist(), support.tolist(), precision.tolist(), recall.tolist(),
            f1.tolist())
    }
    return {"overall": overall, "per_class": per_class}


def group_metrics(cm: np.ndarray, classes: list[str], groups: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Per group of classes (a superclass: CIFAR-100's 20, ImageNet's animals, ...), from the confusion matrix.

    For a group G, each equal to scikit-learn (``zero_division=0``) on the same predictions:

    * ``support``: samples whose true class is in G; ``accuracy``: the share of them predicted as their exact
      class (``accuracy_score`` on those samples).
    * ``micro_precision`` / ``micro_recall`` / ``micro_f1``: ``precision_recall_fscore_support(labels=G,
      average="micro")`` (micro recall equals ``accuracy``); ``macro_*``: the same with ``average="macro"``, the
      mean over all of G's classes.
    * ``coarse_precision`` / ``coarse_recall`` / ``coarse_f1``: the group as one class, "in G" against "not in
      G" (``average="binary"`` on ``y in G``): whether the model tells the group from the rest, whatever class
      inside it.
    """
    index = {c: i for i, c in enumerate(classes)}
    cm = np.asarray(cm, dtype=np.int64)
    tp_all = np.diag(cm)
    support_all = cm.sum(axis=1)
    predicted_all = cm.sum(axis=0)
    out: dict[str, dict[str, Any]] = {}
    for name, members in groups.items():
        idx = np.asarray([index[c] for c in members], dtype=np.int64)
        tp, support, predicted = tp_all[idx], support_all[idx], predicted_all[idx]
        tp_sum, true_sum, pred_sum = int(tp.sum()), int(support.sum()), int(predicted.sum())
        inside = int(cm[np.ix_(idx, idx)].sum())  # truth in G and prediction in G
        coarse_p, coarse_r = safe_divide(inside, pred_sum), safe_divide(inside, true_sum)
        out[name] = {
            "classes": list(members),
            "support": true_sum,
            "accuracy": float(safe_divide(tp_sum, true_sum)),
            "micro_precision": float(safe_divide(tp_sum, pred_sum)),
            "micro_recall": float(safe_divide(tp_sum, true_sum)),
            "micro_f1": float(safe_divide(2 * tp_sum, true_sum + pred_sum)),
            "macro_precision": float(np.mean(safe_divide(tp, predicted))),
            "macro_recall": float(np.mean(safe_divide(tp, support))),
            "macro_f1": float(np.mean(safe_divide(2 * tp, support + predicted))),
            "coarse_precision": float(coarse_p),
            "coarse_recall": float(coarse_r),
            "coarse_f1": float(safe_divide(2 * inside, true_sum + pred_sum)),
        }
    return out


@register_processor
class ClassificationProcessor(Processor):
    """Accuracy, precision/recall/F1 (per class, macro, micro, weighted), confusion matrix and
    the list of misclassified samples, from the top-1 prediction.

    Numbers equal scikit-learn's with ``zero_division=0``: ``macro_*`` averages over the classes
    present in the ground truth or the predictions (sklearn's default), ``macro_*_all_classes``
    over all dataset classes (``labels=range(C)``). Version 2: ``macro_*`` changed from the
    all-classes mean to sklearn's default.

    When the dataset declares groups of classes (its ``class_groups``), ``per_group`` holds each group's
    numbers (:func:`group_metrics`); the groups enter the result identity (``dataset_params``), so declaring
    or changing them re-scores the stored predictions with no new inference.
    """

    name = "classification"
    version = 2
    tasks = ("image-classification", "text-classification")
    metrics = [
        {'name': 'accuracy', 'description': 'Share of instances whose top-1 prediction is the true class',
         'calculation': 'correct / n', 'values': '0 to 1, higher is better'},
        {'name': 'precision', 'description': 'Of the instances predicted as a class, the share that are that class',
         'calculation': 'TP / (TP + FP), 0 when TP + FP = 0', 'values': '0 to 1, higher is better'},
        {'name': 'recall', 'description': 'Of the instances of a class, the share predicted as that class',
         'calculation': 'TP / (TP + FN), 0 when TP + FN = 0', 'values': '0 to 1, higher is better'},
        {'name': 'f1', 'description': 'Harmonic mean of precision and recall', 'calculation': '2 TP / (2 TP + FP + FN)',
         'values': '0 to 1, higher is better'},
        {'name': 'macro_f1',
         'description': 'Unweighted mean of per-class F1 over the classes present in the ground truth or the predictions '
                        "(scikit-learn's default)",
         'calculation': 'mean over present classes of f1', 'values': '0 to 1'},
        {'name': 'macro_f1_all_classes',
         'description': 'Unweighted mean of per-class F1 over all dataset classes (a class absent from the ground truth and '
                        'the predictions counts 0)',
         'calculation': 'mean over all C classes of f1', 'values': '0 to 1'},
        {'name': 'micro_f1', 'description': 'F1 of the pooled TP/FP/FN counts (equals accuracy for single-label classification)',
         'calculation': '2 sum TP / (2 sum TP + sum FP + sum FN)', 'values': '0 to 1'},
        {'name': 'weighted_f1', 'description': 'Per-class F1 averaged with support as weights',
         'calculation': 'sum_c support_c f1_c / n', 'values': '0 to 1'},
    ]

    @classmethod
    def from_dataset(cls, dataset: dict[str, Any], **params: Any) -> "ClassificationProcessor":
        """An instance for a registered dataset: its classes and, when it declares them, its class groups."""
        return cls([c["label"] for c in dataset.get("classes") or []], groups=dataset.get("class_groups"), **params)

    @classmethod
    def dataset_params(cls, dataset: dict[str, Any]) -> dict[str, Any]:
        """The class groups, when the dataset declares any (their change re-scores, with no inference)."""
        groups = dataset.get("class_groups")
        return {"class_groups": fingerprint(groups)} if groups else {}

    def __init__(self, classes: list[str], max_misclassifications: int = 10000,
                 groups: dict[str, list[str]] | None = None) -> None:
        super().__init__(classes)
        if not self.classes:
            raise ValueError("ClassificationProcessor needs at least one class")
        if len(set(self.classes)) != len(self.classes):
            dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ValueError(f"duplicate class labels: {dupes}")
        if max_misclassifications < 0:
            raise ValueError(f"max_misclassifications must be >= 0, got {max_misclassifications}")
        self.max_misclassifications = int(max_misclassifications)
        self.groups = check_class_groups(groups, self.classes) if groups else {}
        n = len(self.classes)
        #: the C x C confusion counts (rows = true class) of every update so far
        self.confmat = np.zeros((n, n), dtype=np.int64)
        self.misclassifications: list[dict[str, Any]] = []

    def _check_range(self, values: np.ndarray, what: str, sample_ids: Any) -> None:
        if values.min() >= 0 and values.max() < len(self.classes):  # two reductions: the common case
            return
        bad = np.flatnonzero((values < 0) | (values >= len(self.classes)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{what} label {int(values[i])} of sample {sample_ids[i]!r} is out of range "
                f"[0, {len(self.classes)})"
            )

    def update(self, batch: ClassificationPredictions) -> None:
        n = len(batch)
        if n == 0:
            return
        ids = batch.sample_ids  # indexed only for a misclassification or an error
        labels = np.asarray(batch.topk_labels)
        scores = np.asarray(batch.topk_scores)
        if labels.ndim != 2 or labels.shape[0] != n or labels.shape[1] < 1:
            raise ValueError(f"topk_labels must have shape ({n}, k>=1), got {labels.shape}")
        if scores.ndim != 2 or scores.shape[0] != n or scores.shape[1] < 1:
            raise ValueError(f"topk_scores must have shape ({n}, k>=1), got {scores.shape}")
        y_true = _as_labels(batch.y_true, "y_true")
        y_pred = _as_labels(labels[:, 0], "topk_labels[:, 0]")
        if y_true.shape[0] != n:
            raise ValueError(f"y_true has {y_true.shape[0]} entries for {n} sample ids")
        self._check_range(y_true, "true", ids)
        self._check_range(y_pred, "predicted", ids)

        add_pairs(self.confmat, y_true, y_pred)  # both checked in range above

        room = self.max_misclassifications - len(self.misclassifications)
        if room > 0:
            wrong = np.flatnonzero(y_true != y_pred)[:room]
            classes = self.classes
            with collector_paused():
                self.misclassifications.extend(
                    {"instance": ids[i], "true_class": classes[true], "predicted_class": classes[pred],
                     "confidence": score}
                    for i, true, pred, score in zip(wrong.tolist(), y_true[wrong].tolist(), y_pred[wrong].tolist(),
                                                    scores[wrong, 0].astype(np.float64).tolist())
                )

    def merge(self, other: Processor) -> None:
        if not isinstance(other, ClassificationProcessor):
            raise TypeError(f"cannot merge {type(other).__name__} into ClassificationProcessor")
        if other.classes != self.classes or other.groups != self.groups:
            raise ValueError("cannot merge processors with different classes or class groups")
        self.confmat += other.confmat
        room = self.max_misclassifications - len(self.misclassifications)
        if room > 0:
            self.misclassifications.extend(dict(m) for m in other.misclassifications[:room])

    def compute(self) -> dict[str, Any]:
        result = metrics_from_confusion(self.confmat, self.classes)
        if self.groups:
            result["per_group"] = group_metrics(self.confmat, self.classes, self.groups)
        result["confusion_matrix"] = confusion_doc(self.confmat, self.classes)
        with collector_paused():
            result["misclassifications"] = list(map(dict, self.misclassifications))
        # Every misclassified sample is kept until the cap, so fewer kept than counted = truncated.
        incorrect = result["overall"]["incorrect"]
        result["misclassifications_truncated"] = bool(incorrect > len(self.misclassifications))
        return result
