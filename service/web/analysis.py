"""What the pages and the API compute from stored results: diffs against a baseline, statistics across models,
variants against the original, side-by-side comparison, and the largest confusions of a confusion matrix.
Pure functions of result documents (no database access)."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from processors.base import processor_label

#: metrics where lower is better (a rise is a regression)
LOWER_IS_BETTER = {"mse", "mae", "rmse", "loss", "time_per_instance", "time_in_seconds", "load_s", "warmup_s",
                   "incorrect"}
#: counts that describe the data, not the model: left out of diffs and statistics
NOT_METRICS = {"n", "n_images", "correct", "incorrect", "n_detections", "tp", "fp", "fn", "support"}


def slot(result: dict[str, Any]) -> tuple[str, str, str, str]:
    """Where a result sits: (dataset, split, variant, processor as run)."""
    return (result["dataset"], result["split"], result["variant"], processor_label(result))


def slot_label(s: tuple[str, str, str, str]) -> str:
    return f"{s[0]}/{s[1]} {s[2]} ({s[3]})"


def numeric_metrics(values: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of an ``overall`` (or per-class) dict, counts left out; COCO's -1 ("no such
    objects") dropped."""
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in NOT_METRICS and not (isinstance(v, float) and math.isnan(v)) and v != -1}


def change(value: float | None, base: float | None, metric: str, threshold: float) -> dict[str, Any]:
    """One metric against its baseline: absolute and relative change, and whether it passes ``threshold``
    (absolute), as an improvement or a regression."""
    if value is None or base is None:
        return {"value": value, "baseline": base, "delta": None, "relative": None, "flag": None}
    delta = value - base
    relative = delta / abs(base) if base else None
    flag = None
    if abs(delta) >= threshold and delta != 0:
        worse = delta > 0 if metric in LOWER_IS_BETTER else delta < 0
        flag = "regression" if worse else "improvement"
    return {"value": value, "baseline": base, "delta": delta, "relative": relative, "flag": flag}


def diff_results(results: list[dict[str, Any]], baseline: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Per slot present in both, per overall metric: the model's value against the baseline's (``change``).
    Also the throughput. Sorted by slot and metric."""
    base_by_slot = {slot(r): r for r in baseline}
    rows = []
    for r in sorted(results, key=slot):
        b = base_by_slot.get(slot(r))
        if b is None:
            continue
        mine, theirs = numeric_metrics(r.get("overall") or {}), numeric_metrics(b.get("overall") or {})
        mine["instances_per_second"] = (r.get("runtime") or {}).get("instances_per_second")
        theirs["instances_per_second"] = (b.get("runtime") or {}).get("instances_per_second")
        for metric in sorted(set(mine) & set(theirs)):
            c = change(mine[metric], theirs[metric], metric, threshold if metric != "instances_per_second" else math.inf)
            rows.append({"dataset": r["dataset"], "split": r["split"], "variant": r["variant"],
                         "processor": slot(r)[3], "metric": metric, **c})
    return rows


def describe(values: Iterable[float]) -> dict[str, Any]:
    """count, mean, std (sample, ddof=1; None for one value), min, quartiles (linear interpolation, numpy's and
    pandas' default) and max."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "q1": None, "median": None, "q3": None, "max": None}
    q1, median, q3 = (float(x) for x in np.percentile(arr, [25, 50, 75]))
    return {"count": int(arr.size), "mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "min": float(arr.min()), "q1": q1, "median": median, "q3": q3, "max": float(arr.max())}


def stats(results: list[dict[str, Any]], metrics: list[str] | None = None) -> list[dict[str, Any]]:
    """Per (task, dataset, variant, split, processor), per metric: ``describe`` over the models (one current
    result each)."""
    groups: dict[tuple, dict[str, list[float]]] = {}
    for r in results:
        key = (r.get("task"), r["dataset"], r["variant"], r["split"], slot(r)[3])
        values = numeric_metrics(r.get("overall") or {})
        ips = (r.get("runtime") or {}).get("instances_per_second")
        if ips is not None:
            values["instances_per_second"] = float(ips)
        for metric, value in values.items():
            if metrics is None or metric in metrics:
                groups.setdefault(key, {}).setdefault(metric, []).append(value)
    rows = []
    for (task, dataset, variant, split, processor), by_metric in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        for metric, values in sorted(by_metric.items()):
            rows.append({"task": task, "dataset": dataset, "variant": variant, "split": split, "processor": processor,
                         "metric": metric, **describe(values)})
    return rows


def per_class_metric(result: dict[str, Any]) -> str | None:
    """The per-class metric a chart shows: f1 (classification), AP (detection), IoU (segmentation)."""
    first = next(iter((result.get("per_class") or {}).values()), None) or {}
    return next((m for m in ("f1", "AP", "iou", "recall") if isinstance(first.get(m), (int, float))), None)


def variant_comparison(results: list[dict[str, Any]], threshold: float = 0.0) -> dict[str, Any]:
    """Each variant of one (dataset, split, processor) against its original: overall metrics (absolute and
    relative change) and, per class, the per-class metric's change."""
    originals = {(r["dataset"], r["split"], slot(r)[3]): r for r in results if r["variant"] == "original"}
    overall, per_class = [], []
    for r in sorted(results, key=slot):
        orig = originals.get((r["dataset"], r["split"], slot(r)[3]))
        if orig is None or r["variant"] == "original":
            continue
        mine, base = numeric_metrics(r.get("overall") or {}), numeric_metrics(orig.get("overall") or {})
        for metric in sorted(set(mine) & set(base)):
            overall.append({"variant": r["variant"], "dataset": r["dataset"], "split": r["split"], "processor": slot(r)[3],
                            "metric": metric, **change(mine[metric], base[metric], metric, threshold)})
        metric = per_class_metric(r)
        if metric:
            for label, values in (r.get("per_class") or {}).items():
                b = ((orig.get("per_class") or {}).get(label) or {}).get(metric)
                v = values.get(metric)
                if isinstance(v, (int, float)) and isinstance(b, (int, float)) and v != -1 and b != -1:
                    per_class.append({"variant": r["variant"], "dataset": r["dataset"], "class": label, "metric": metric,
                                      **change(float(v), float(b), metric, threshold)})
    return {"overall": overall, "per_class": per_class}


def compare_table(models: list[dict[str, Any]], results: dict[str, list[dict[str, Any]]], only_differences: bool,
                  metrics: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Rows (slot, metric) with one value per model (None where it has no such result); with
    ``only_differences``, the rows whose values are not all equal (a missing value counts as different)."""
    values: dict[tuple, dict[str, float]] = {}
    wanted = set(metrics) if metrics else None
    for m in models:
        for r in results.get(m["_id"], []):
            found = numeric_metrics(r.get("overall") or {})
            ips = (r.get("runtime") or {}).get("instances_per_second")
            if ips is not None:
                found["instances_per_second"] = float(ips)
            for metric, v in found.items():
                if wanted is None or metric in wanted:
                    values.setdefault((slot(r), metric), {})[m["_id"]] = v
    rows = []
    for (s, metric), by_model in sorted(values.items()):
        cells = [by_model.get(m["_id"]) for m in models]
        present = [c for c in cells if c is not None]
        if only_differences and len(present) == len(cells) and max(present) - min(present) <= 1e-12:
            continue
        best = None
        if len(present) > 1 and max(present) != min(present):
            best = min(present) if metric in LOWER_IS_BETTER else max(present)
        rows.append({"dataset": s[0], "split": s[1], "variant": s[2], "processor": s[3], "metric": metric,
                     "values": cells, "best": best})
    return rows


def top_confusions(cm_doc: dict[str, Any], k: int = 20) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal cells (true class, predicted class, count, share of the true class)."""
    labels = cm_doc["labels"]
    if cm_doc.get("format") == "sparse":
        cells = [(i, j, n) for i, j, n in cm_doc["entries"]]
    else:
        cells = [(i, j, n) for i, row in enumerate(cm_doc["matrix"]) for j, n in enumerate(row)]
    support: dict[int, int] = {}
    for i, _, n in cells:
        support[i] = support.get(i, 0) + n
    off = sorted(((n, i, j) for i, j, n in cells if i != j and n > 0), key=lambda c: (-c[0], c[1], c[2]))[:k]
    return [{"true": labels[i], "predicted": labels[j], "count": n, "share": n / support[i] if support.get(i) else 0.0}
            for n, i, j in off]


def confusion_submatrix(cm_doc: dict[str, Any], classes: list[str] | None) -> dict[str, Any]:
    """The confusion matrix restricted to ``classes`` (rows and columns, in that order; all when None)."""
    labels = cm_doc["labels"]
    index = {label: i for i, label in enumerate(labels)}
    chosen = [c for c in (classes if classes is not None else labels) if c in index]
    pos = {index[c]: k for k, c in enumerate(chosen)}
    out = [[0] * len(chosen) for _ in chosen]
    if cm_doc.get("format") == "sparse":
        for i, j, n in cm_doc["entries"]:
            if i in pos and j in pos:
                out[pos[i]][pos[j]] = n
    else:
        for i, k in pos.items():
            row = cm_doc["matrix"][i]
            for j, kk in pos.items():
                out[k][kk] = row[j]
    return {"labels": chosen, "matrix": out}


def confusion_focus(cm_doc: dict[str, Any], max_classes: int, top: int) -> list[str] | None:
    """The classes a readable heatmap shows: all when there are at most ``max_classes``, else the classes of
    the ``top`` largest confusions (in dataset order)."""
    labels = cm_doc["labels"]
    if len(labels) <= max_classes:
        return None
    involved = {c for cell in top_confusions(cm_doc, top) for c in (cell["true"], cell["predicted"])}
    return [c for c in labels if c in involved][:max_classes]
