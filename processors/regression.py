"""Regression metrics of a score per sample (STS-B-style similarity): Pearson, Spearman, MSE, MAE.

The state is the true and predicted values (exact Spearman needs the ranks of every value among all values,
which no fixed-size summary of a stream gives: 16 bytes per sample, 1 million pairs are 16 MB); ``update()``
appends, ``merge()`` concatenates, ``compute()`` derives every number through the pure functions below:

* :func:`pearson` equals ``scipy.stats.pearsonr(...).statistic`` and :func:`spearman` equals
  ``scipy.stats.spearmanr(...).statistic`` (ties get average ranks, as scipy's ``rankdata``), to 1e-12.
  Where scipy answers NaN (a constant ``y_true`` or ``y_pred``) or fails (fewer than 2 samples), zooeval
  stores no NaN: the value is None and ``undefined`` says why.
* :func:`mean_squared_error` / :func:`mean_absolute_error` equal scikit-learn's; None with no samples.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from processors.base import Processor, register_processor
from tasks.sentence_pairs import ScorePredictions


def _as_values(values: Any, what: str) -> np.ndarray:
    """``values`` as a 1-D float64 array; raises ValueError for another shape, a non-number or NaN/inf."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.float64)
    if arr.dtype.kind not in "iubf":
        raise ValueError(f"{what} must hold numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{what} holds {arr[bad[0]]} at position {int(bad[0])}: values must be finite")
    return arr


def _same_length(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape != y.shape:
        raise ValueError(f"y_true and y_pred differ in length: {x.shape[0]} != {y.shape[0]}")


def average_ranks(values: Any) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (``scipy.stats.rankdata(method="average")``)."""
    x = _as_values(values, "values")
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]]) if x.size else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], x.size]
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def correlation_undefined(y_true: Any, y_pred: Any) -> str | None:
    """Why the correlation of ``y_true`` and ``y_pred`` is undefined (too few samples, a constant input),
    or None when it is defined."""
    t, p = _as_values(y_true, "y_true"), _as_values(y_pred, "y_pred")
    _same_length(t, p)
    if t.size < 2:
        return f"fewer than 2 samples ({t.size})"
    reasons = [f"the {what} are constant (all {arr[0]:g})" for what, arr in (("true values", t), ("predictions", p))
               if np.all(arr == arr[0])]
    return " and ".join(reasons) or None


def pearson(y_true: Any, y_pred: Any) -> float | None:
    """Pearson's r (``scipy.stats.pearsonr(...).statistic``); None where it is undefined
    (:func:`correlation_undefined`), where scipy returns NaN or raises."""
    t, p = _as_values(y_true, "y_true"), _as_values(y_pred, "y_pred")
    if correlation_undefined(t, p) is not None:
        return None
    if t.size == 2:  # scipy returns exactly +-1 for two distinct points
        return float(np.sign(t[1] - t[0]) * np.sign(p[1] - p[0]))
    tm, pm = t - t.mean(), p - p.mean()
    # scale by the largest deviation before the norm (no overflow), then a dot product of unit vectors: as scipy
    tmax, pmax = np.max(np.abs(tm)), np.max(np.abs(pm))
    tnorm, pnorm = tmax * np.linalg.norm(tm / tmax), pmax * np.linalg.norm(pm / pmax)
    r = float(np.dot(tm / tnorm, pm / pnorm))
    return min(1.0, max(-1.0, r))


def spearman(y_true: Any, y_pred: Any) -> float | None:
    """Spearman's rho: Pearson's r of the average ranks (``scipy.stats.spearmanr(...).statistic``);
    None where it is undefined (:func:`correlation_undefined`)."""
    t, p = _as_values(y_true, "y_true"), _as_values(y_pred, "y_pred")
    if correlation_undefined(t, p) is not None:
        return None
    return pearson(average_ranks(t), average_ranks(p))


def mean_squared_error(y_true: Any, y_pred: Any) -> float | None:
    """Mean of the squared errors (``sklearn.metrics.mean_squared_error``); None with no samples."""
    t, p = _as_values(y_true, "y_true"), _as_values(y_pred, "y_pred")
    _same_length(t, p)
    return float(np.mean((t - p) ** 2)) if t.size else None


def mean_absolute_error(y_true: Any, y_pred: Any) -> float | None:
    """Mean of the absolute errors (``sklearn.metrics.mean_absolute_error``); None with no samples."""
    t, p = _as_values(y_true, "y_true"), _as_values(y_pred, "y_pred")
    _same_length(t, p)
    return float(np.mean(np.abs(t - p))) if t.size else None


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """``{"overall": {n, pearson, spearman, mse, mae}, "per_class": {}, "undefined": {metric: reason}}``.

    A metric that cannot be computed is None and ``undefined`` names the reason (no NaN is ever returned).
    """
    t, p = _as_values(y_true, "y_true"), _as_values(y_pred, "y_pred")
    _same_length(t, p)
    overall = {"n": int(t.size), "pearson": pearson(t, p), "spearman": spearman(t, p),
               "mse": mean_squared_error(t, p), "mae": mean_absolute_error(t, p)}
    undefined: dict[str, str] = {}
    reason = correlation_undefined(t, p)
    if reason is not None:
        undefined.update(pearson=reason, spearman=reason)
    if t.size == 0:
        undefined.update(mse="no samples", mae="no samples")
    return {"overall": overall, "per_class": {}, "undefined": undefined}


@register_processor
class RegressionProcessor(Processor):
    """Pearson, Spearman, MSE, MAE and n of a scalar prediction (STS-like similarity scores).

    State: the true and predicted values, kept as a list of per-batch float64 arrays (exact Spearman needs
    them all, see the module docstring). Undefined correlations are None, with the reason in ``undefined``.
    """

    name = "regression"
    version = 1
    tasks = ("sentence-similarity",)
    metrics = [
        {"name": "pearson", "description": "Pearson correlation of the predicted and true scores",
         "calculation": "cov(y, y_hat) / (sd(y) sd(y_hat)), as scipy.stats.pearsonr", "values": "-1 to 1, higher is better"},
        {"name": "spearman", "description": "Spearman rank correlation of the predicted and true scores",
         "calculation": "Pearson correlation of the average ranks, as scipy.stats.spearmanr",
         "values": "-1 to 1, higher is better"},
        {"name": "mse", "description": "Mean squared error of the scores", "calculation": "mean((y - y_hat)^2)",
         "values": ">= 0, lower is better (on the dataset's scale)"},
        {"name": "mae", "description": "Mean absolute error of the scores", "calculation": "mean(|y - y_hat|)",
         "values": ">= 0, lower is better (on the dataset's scale)"},
    ]

    def __init__(self, classes: list[str] | None = None) -> None:
        super().__init__(classes or [])
        self._true: list[np.ndarray] = []
        self._pred: list[np.ndarray] = []

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """All accumulated (y_true, y_pred), in the order they were added."""
        if not self._true:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(self._true), np.concatenate(self._pred)

    def update(self, batch: ScorePredictions) -> None:
        ids = list(batch.sample_ids)
        y_true = np.asarray(batch.y_true)
        y_pred = np.asarray(batch.y_pred)
        for arr, what in ((y_true, "y_true"), (y_pred, "y_pred")):
            if arr.ndim != 1 or arr.shape[0] != len(ids):
                raise ValueError(f"{what} must have shape ({len(ids)},) for {len(ids)} sample ids, got {arr.shape}")
            if arr.size and arr.dtype.kind in "iubf":
                bad = np.flatnonzero(~np.isfinite(arr.astype(np.float64)))
                if bad.size:
                    raise ValueError(f"{what} of sample {ids[int(bad[0])]!r} is {arr[bad[0]]}: values must be finite")
        if not ids:
            return
        self._true.append(_as_values(y_true, "y_true"))
        self._pred.append(_as_values(y_pred, "y_pred"))

    def merge(self, other: Processor) -> None:
        if not isinstance(other, RegressionProcessor):
            raise TypeError(f"cannot merge {type(other).__name__} into RegressionProcessor")
        self._true.extend(a.copy() for a in other._true)
        self._pred.extend(a.copy() for a in other._pred)

    def compute(self) -> dict[str, Any]:
        return regression_metrics(*self.values())
