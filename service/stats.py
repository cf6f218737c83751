"""Summary statistics of the stored results across models (AI-BMT's statistics view): for every task x dataset x
split x variant x processor x metric, the count, mean, standard deviation, minimum, quartiles, maximum and
interquartile range of the metric over the models that have it, computed by pandas (``DataFrame.describe``:
sample standard deviation, ddof 1, and linear-interpolation quantiles, numpy's default).

The values are the overall metrics of the current results (the newest result of each model, module, dataset,
split, variant and processor: Store.latest_results) and their runtime figures (``runtime:<name>``: throughput,
time per instance, load and warm-up seconds, and the single-stream latency percentiles where recorded).
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from processors.base import processor_label

#: The runtime figures summarised beside the metrics (the keys of a result's ``runtime`` record).
RUNTIME_FIGURES = ("instances_per_second", "time_per_instance", "load_s", "warmup_s")
#: The single-stream scenario's figures (``runtime.single_stream``), summarised as ``runtime:single_stream_<name>``.
SINGLE_STREAM_FIGURES = ("p50_ms", "p90_ms", "p99_ms", "mean_ms")
GROUP = ["task", "dataset", "split", "variant", "processor", "metric"]
COLUMNS = [*GROUP, "count", "mean", "std", "min", "q1", "median", "q3", "max", "iqr"]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_rows(results: Iterable[dict[str, Any]], metric: str | None = None) -> Iterator[dict[str, Any]]:
    """One row per (result, overall metric or runtime figure) holding a number; ``metric``: only that name."""
    for r in results:
        base = {"task": r.get("task") or "?", "dataset": r["dataset"], "split": r["split"], "variant": r["variant"],
                "processor": processor_label(r), "model": r["model_name"]}
        values = {k: v for k, v in (r.get("overall") or {}).items() if _number(v)}
        runtime = r.get("runtime") or {}
        values.update({f"runtime:{k}": runtime[k] for k in RUNTIME_FIGURES if _number(runtime.get(k))})
        single = runtime.get("single_stream") or {}
        values.update({f"runtime:single_stream_{k}": single[k] for k in SINGLE_STREAM_FIGURES if _number(single.get(k))})
        for name, value in values.items():
            if metric is None or name == metric:
                yield {**base, "metric": name, "value": float(value)}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statistics of each group of ``rows`` (GROUP), sorted by group; ``std`` is None for a single model."""
    import pandas as pd

    if not rows:
        return []
    frame = pd.DataFrame(rows)
    described = frame.groupby(GROUP, sort=True)["value"].describe()
    out = []
    for key, s in described.iterrows():
        out.append({**dict(zip(GROUP, key)), "count": int(s["count"]), "mean": s["mean"],
                    "std": None if pd.isna(s["std"]) else s["std"], "min": s["min"], "q1": s["25%"],
                    "median": s["50%"], "q3": s["75%"], "max": s["max"], "iqr": s["75%"] - s["25%"]})
    return out


def result_query(task: str | None = None, dataset: str | None = None, variant: str | None = None) -> dict[str, Any]:
    """The results query of the filters given."""
    query: dict[str, Any] = {}
    for field, value in (("task", task), ("dataset", dataset), ("variant", variant)):
        if value:
            query[field] = value
    return query


def store_statistics(store, task: str | None = None, dataset: str | None = None, variant: str | None = None,
                     metric: str | None = None) -> list[dict[str, Any]]:
    """The statistics of the store's current results, filtered by task, dataset, variant and metric name."""
    results = store.latest_results(result_query(task, dataset, variant))
    return summarise(list(value_rows(results, metric)))
