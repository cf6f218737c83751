"""Confidence intervals for measured metrics, from what a stored result holds.

Which metric gets which method (see ``verdicts.METRICS`` for the full table):

* A proportion with known counts (accuracy = correct / n; micro precision / recall / F1 and weighted recall,
  which equal accuracy for single-label classification; one class's recall = tp / support or precision =
  tp / predicted): the **Wilson score interval** (:func:`wilson_interval`). It keeps good coverage for small
  n and for proportions near 0 or 1, where the normal (Wald) interval fails.
* Pearson r: the **Fisher z interval** (:func:`fisher_z_interval`), ``tanh(atanh(r) +- z / sqrt(n - 3))``;
  Spearman rho: the same with Bonett & Wright's (2000) standard error ``sqrt(1 + rho^2 / 2) / sqrt(n - 3)``.
* Anything else computed from a confusion matrix (macro / weighted precision, recall and F1, one class's F1,
  Matthews correlation): a **percentile bootstrap over the confusion matrix**
  (:func:`bootstrap_confusion_interval`). The metric depends on the samples only through the matrix, so
  resampling n samples with replacement is exactly a multinomial draw of n over the observed cells with
  probabilities ``count / n``; the bootstrap over the stored matrix therefore *is* the ordinary sample
  bootstrap, with no per-sample data needed. Class supports vary between replicates, as they would in a
  fresh test set.
* Metrics with no sufficient statistic stored (detection AP, mean IoU): only a percentile interval over
  bootstrap replicates computed by the caller (:func:`percentile_interval`, with the resampled unit indices
  from :func:`bootstrap_indices`, e.g. COCO AP recomputed over resampled images).

Every bootstrap is seeded (``BOOTSTRAP_SEED``), so the same input always gives the same interval.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy.stats import norm

from core.arrays import safe_divide

#: Confidence level of every interval unless a caller asks for another.
DEFAULT_LEVEL = 0.95
#: Bootstrap replicates: 2,000 puts the Monte Carlo error of a 95% percentile bound well below the
#: rounding of reported metrics (Efron & Tibshirani recommend >= 1,000 for percentile intervals).
BOOTSTRAP_REPLICATES = 2000
#: Seed of every bootstrap, so intervals are reproducible.
BOOTSTRAP_SEED = 0
#: Replicates drawn at once (bounds memory: chunk x non-zero cells integers).
_BOOTSTRAP_CHUNK = 250

#: The metrics :func:`confusion_statistics` derives, each equal to scikit-learn's (zero_division=0).
CONFUSION_METRICS = (
    "accuracy", "balanced_accuracy",
    "macro_precision", "macro_recall", "macro_f1",
    "macro_precision_all_classes", "macro_recall_all_classes", "macro_f1_all_classes",
    "micro_precision", "micro_recall", "micro_f1",
    "weighted_precision", "weighted_recall", "weighted_f1",
    "matthews_correlation",
    "class_precision", "class_recall", "class_f1",
)


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level}")
    return level


def _z(level: float) -> float:
    return float(norm.ppf(0.5 + _check_level(level) / 2.0))


def wilson_interval(successes: int, n: int, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``; ``(0.0, 1.0)`` when n is 0.

    Equals ``statsmodels.stats.proportion.proportion_confint(successes, n, 1 - level, method="wilson")``.
    """
    if isinstance(successes, bool) or isinstance(n, bool):
        raise TypeError("successes and n must be counts, not booleans")
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(level)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def fisher_z_interval(r: float, n: int, level: float = DEFAULT_LEVEL,
                      kind: str = "pearson") -> tuple[float, float]:
    """Fisher z interval of a correlation ``r`` measured on ``n`` pairs.

    ``kind="pearson"``: standard error ``1 / sqrt(n - 3)`` (equals scipy's
    ``pearsonr(...).confidence_interval()``); ``kind="spearman"``: Bonett & Wright's
    ``sqrt(1 + r^2 / 2) / sqrt(n - 3)``. Raises ValueError for n < 4 or |r| > 1.
    """
    if kind not in ("pearson", "spearman"):
        raise ValueError(f"kind must be 'pearson' or 'spearman', got {kind!r}")
    r = float(r)
    if not -1.0 <= r <= 1.0 or math.isnan(r):
        raise ValueError(f"a correlation lies within [-1, 1], got {r}")
    if n < 4:
        raise ValueError(f"a Fisher z interval needs at least 4 pairs, got n={n}")
    if abs(r) == 1.0:
        return r, r
    se = 1.0 / math.sqrt(n - 3)
    if kind == "spearman":
        se *= math.sqrt(1.0 + r * r / 2.0)
    z = math.atanh(r)
    crit = _z(level)
    return math.tanh(z - crit * se), math.tanh(z + crit * se)


def percentile_interval(replicates: Sequence[float] | np.ndarray,
                        level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of ``replicates`` (NaNs rejected)."""
    values = np.asarray(replicates, dtype=np.float64).ravel()
    if values.size < 2:
        raise ValueError(f"a percentile interval needs at least 2 replicates, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise ValueError("bootstrap replicates must be finite numbers")
    alpha = 1.0 - _check_level(level)
    lo, hi = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def bootstrap_indices(n_units: int, n_boot: int = BOOTSTRAP_REPLICATES,
                      seed: int = BOOTSTRAP_SEED) -> Iterator[np.ndarray]:
    """``n_boot`` seeded resamples (with replacement) of ``range(n_units)``, for a caller's own statistic
    (e.g. COCO AP over resampled images); feed the statistic's values to :func:`percentile_interval`."""
    if n_units < 1:
        raise ValueError(f"need at least one unit to resample, got {n_units}")
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n_units, size=n_units)


def confusion_cells(confusion: Mapping[str, Any]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, true_index, predicted_index, count)`` of the non-zero cells of a stored confusion matrix,
    dense ``{"labels", "matrix"}`` or sparse ``{"labels", "format": "sparse", "entries"}`` (rows = true)."""
    labels = confusion.get("labels")
    if not isinstance(labels, list) or not labels:
        raise ValueError("confusion matrix has no 'labels' list")
    c = len(labels)
    if confusion.get("format") == "sparse":
        entries = np.asarray(confusion.get("entries") or [], dtype=np.int64).reshape(-1, 3)
        rows, cols, counts = entries[:, 0], entries[:, 1], entries[:, 2]
    else:
        matrix = np.asarray(confusion.get("matrix"), dtype=np.int64)
        if matrix.shape != (c, c):
            raise ValueError(f"confusion matrix shape {matrix.shape} does not match {c} labels")
        rows, cols = np.nonzero(matrix)
        counts = matrix[rows, cols]
    if np.any(counts < 0) or np.any(rows < 0) or np.any(rows >= c) or np.any(cols < 0) or np.any(cols >= c):
        raise ValueError("confusion matrix has a negative count or an index outside its labels")
    keep = counts > 0
    return list(labels), rows[keep], cols[keep], counts[keep]


def confusion_statistics(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray, metric: str,
                         class_index: int | None = None) -> np.ndarray:
    """``metric`` (one of CONFUSION_METRICS) from per-class counts, vectorised over a leading batch axis.

    ``tp``, ``support`` (true counts) and ``predicted`` have shape ``(..., C)``. Values equal
    scikit-learn's with zero_division=0; ``macro_*`` averages over the classes present in the truth or the
    predictions (sklearn's default), ``macro_*_all_classes`` over all C; ``class_*`` need ``class_index``.
    """
    if metric not in CONFUSION_METRICS:
        raise ValueError(f"unknown confusion metric {metric!r}; known: {', '.join(CONFUSION_METRICS)}")
    tp = np.asarray(tp, dtype=np.float64)
    support = np.asarray(support, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    n = support.sum(axis=-1)
    correct = tp.sum(axis=-1)
    if metric in ("accuracy", "micro_precision", "micro_recall", "micro_f1"):
        return safe_divide(correct, n)
    if metric == "balanced_accuracy":  # sklearn's: the mean recall of the classes present in the truth
        present = support > 0
        return safe_divide((safe_divide(tp, support) * present).sum(axis=-1), present.sum(axis=-1))
    if metric == "matthews_correlation":  # sklearn's multiclass formula (Gorodkin's R_K)
        cov_tp = correct * n - (support * predicted).sum(axis=-1)
        cov_pp = n * n - (predicted * predicted).sum(axis=-1)
        cov_tt = n * n - (support * support).sum(axis=-1)
        return safe_divide(cov_tp, np.sqrt(cov_tt * cov_pp))
    average, _, part = metric.partition("_")
    if average == "class":
        if class_index is None:
            raise ValueError(f"{metric} needs class_index")
        tp, support, predicted = tp[..., class_index], support[..., class_index], predicted[..., class_index]
    kind = part.removesuffix("_all_classes")
    if kind == "precision":
        values = safe_divide(tp, predicted)
    elif kind == "recall":
        values = safe_divide(tp, support)
    else:
        values = safe_divide(2.0 * tp, support + predicted)
    if average == "class":
        return values
    if average == "weighted":
        return safe_divide((values * support).sum(axis=-1), n)
    if part.endswith("_all_classes"):
        return values.mean(axis=-1)
    present = (support + predicted) > 0
    return safe_divide((values * present).sum(axis=-1), present.sum(axis=-1))


def confusion_metric(confusion: Mapping[str, Any], metric: str, class_index: int | None = None) -> float:
    """``metric`` of a stored confusion matrix (see :func:`confusion_statistics`)."""
    labels, rows, cols, counts = confusion_cells(confusion)
    c = len(labels)
    tp = np.bincount(rows[rows == cols], weights=counts[rows == cols], minlength=c)
    support = np.bincount(rows, weights=counts, minlength=c)
    predicted = np.bincount(cols, weights=counts, minlength=c)
    return float(confusion_statistics(tp, support, predicted, metric, class_index))


def bootstrap_confusion_replicates(confusion: Mapping[str, Any], metric: str, class_index: int | None = None,
                                   n_boot: int = BOOTSTRAP_REPLICATES,
                                   seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``n_boot`` values of ``metric`` on multinomial resamples (n draws over the observed cells) of a stored
    confusion matrix: the ordinary sample bootstrap, computed from the matrix alone."""
    labels, rows, cols, counts = confusion_cells(confusion)
    n = int(counts.sum())
    if n == 0:
        raise ValueError("the confusion matrix is empty: nothing to resample")
    c = len(labels)
    k = counts.size
    cell = np.arange(k)
    to_true = sparse.csr_matrix((np.ones(k), (cell, rows)), shape=(k, c))
    to_pred = sparse.csr_matrix((np.ones(k), (cell, cols)), shape=(k, c))
    diagonal = rows == cols
    to_tp = sparse.csr_matrix((np.ones(int(diagonal.sum())), (cell[diagonal], rows[diagonal])), shape=(k, c))
    probabilities = counts / n
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, _BOOTSTRAP_CHUNK):
        size = min(_BOOTSTRAP_CHUNK, n_boot - start)
        draws = rng.multinomial(n, probabilities, size=size).astype(np.float64)
        tp = np.asarray((to_tp.T @ draws.T).T)
        support = np.asarray((to_true.T @ draws.T).T)
        predicted = np.asarray((to_pred.T @ draws.T).T)
        out[start:start + size] = confusion_statistics(tp, support, predicted, metric, class_index)
    return out


def bootstrap_confusion_interval(confusion: Mapping[str, Any], metric: str, class_index: int | None = None,
                                 level: float = DEFAULT_LEVEL, n_boot: int = BOOTSTRAP_REPLICATES,
                                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` over a stored confusion matrix (seeded)."""
    return percentile_interval(
        bootstrap_confusion_replicates(confusion, metric, class_index, n_boot=n_boot, seed=seed), level)
