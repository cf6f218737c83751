"""What each page shows: one function per page builds its template context from the store. The running service
(service.web.views) and the static site (service.web.site) render the same contexts with the same templates;
only the links differ (service.web.links)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core import store_views as sv
from core.store import Store
from processors.base import processor_label
from service.web import analysis, charts, media
from service.web.links import Links
from service.web.models_view import NAME_PATTERN, ModelFilters, metric_choices, metric_path, metric_rows, models_page

MIS_PAGE = 50  #: misclassifications per page
HEATMAP_MAX_CLASSES = 40  #: a confusion matrix with more classes is shown as its largest confusions


class PageNotFound(LookupError):
    """The page names something the store does not have (a model, dataset, run)."""


# -- shared ------------------------------------------------------------------------------------------------------
def task_kind(name: str | None):
    from tasks.base import TASKS

    return TASKS.get(name) if name in TASKS else None


def headline_metric(dataset_doc: dict[str, Any]) -> str | None:
    """The first column of the dataset's task kind after the sample count: accuracy, AP, pearson, ..."""
    from tasks.base import task_for_dataset

    try:
        kind = task_for_dataset(dataset_doc)
    except KeyError:
        return None
    return next((c.key for c in kind.columns if c.key not in ("n", "n_images")), None)


def result_columns(result: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(header, key, decimals) of the overall values a result table shows: its task kind's columns, else every
    numeric value."""
    from tasks.base import task_for_result

    kind = task_for_result(result)
    if kind is not None and kind.columns:
        return [(c.header, c.key, c.decimals) for c in kind.columns]
    return [(k, k, 4) for k, v in (result.get("overall") or {}).items() if isinstance(v, (int, float))]


def leaderboard(store: Store, dataset: str, variant: str, metric: str, limit: int) -> list[dict[str, Any]]:
    """The best current results on (dataset, variant) by ``metric``: rows of the models table."""
    f = ModelFilters(sort="metric", metric=metric, dataset=dataset, variant=variant, limit=limit)
    return models_page(store, f).rows


def card_url(model: dict[str, Any]) -> str | None:
    if model.get("source") == "huggingface":
        return f"https://huggingface.co/{model['name']}"
    return None


def run_state(run: dict[str, Any], holder: dict[str, Any] | None) -> str:
    """A run's status, "interrupted" for a running one whose cycle lock is gone (as `zooeval status` says)."""
    if run.get("status") == "running" and holder is None:
        return "interrupted"
    return run.get("status") or "?"


def lock_holder(store: Store) -> dict[str, Any] | None:
    from service.lock import CycleLock

    return CycleLock(store).holder()


# -- home --------------------------------------------------------------------------------------------------------
def home_page(store: Store, links: Links) -> dict[str, Any]:
    datasets = store.datasets()
    boards = []
    for name, doc in sorted(datasets.items()):
        metric = headline_metric(doc)
        if metric is None:
            continue
        rows = leaderboard(store, name, "original", metric, 5)
        boards.append({"dataset": name, "metric": metric, "rows": rows,
                       "more": links.models(sort="metric", metric=metric, dataset=name, variant="original")})
    run = store.last_run()
    return {"title": "zooeval", "counts": {"models": store.count("models", {"status": "active"}),
                                           "datasets": len(datasets)},
            "boards": boards, "run": run, "run_state": run_state(run, lock_holder(store)) if run else None}


# -- models ------------------------------------------------------------------------------------------------------
def models_table(store: Store, f: ModelFilters, links: Links) -> dict[str, Any]:
    page = models_page(store, f)
    datasets = sorted(store.datasets())
    choices = {"source": sv.distinct_values(store, "models", "source"), "task": sv.distinct_values(store, "models", "task"),
               "license": sv.distinct_values(store, "models", "license"), "dataset": datasets,
               "metric": metric_choices(), "variant": _variants(store, f.dataset)}
    sort_links = {}
    for column in ("name", "source", "task", "license", "last_modified"):
        sort_links[column] = links.models(**f.params(sort=f"-{column}" if f.sort == column else column, cursor=None))
    if f.leaderboard:
        sort_links["value"] = links.models(**f.params(sort="-metric" if f.sort == "metric" else "metric", cursor=None))
    return {"title": "Models", "f": f, "page": page, "choices": choices, "sort_links": sort_links,
            "next": links.models(**f.params(cursor=page.next_cursor)) if page.next_cursor else None,
            "first": links.models(**f.params(cursor=None)) if f.cursor else None,
            "csv": links.models_export("csv", **f.params(cursor=None, limit=None)),
            "json": links.models_export("json", **f.params(cursor=None, limit=None))}


def _variants(store: Store, dataset: str | None) -> list[str]:
    doc = store.datasets().get(dataset or "") if dataset else None
    return ["original", *(doc.get("supported_variants") or [])] if doc else ["original"]


# -- model -------------------------------------------------------------------------------------------------------
class ModelPageQuery(BaseModel):
    """Which result the model page details, and how its confusion matrix and misclassifications are shown."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)
    split: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    variant: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    processor: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)
    cm_top: int = Field(20, ge=1, le=200, description="largest confusions listed (and shown in the heatmap)")
    cm_classes: str | None = Field(None, max_length=4000, description="comma-separated classes: zoom the heatmap")
    mis_offset: int = Field(0, ge=0, le=10**7)


def pick_result(summaries: list[dict[str, Any]], q: ModelPageQuery) -> dict[str, Any] | None:
    """The result the query names; by default the first original-variant result."""
    def matches(r: dict[str, Any]) -> bool:
        return all(getattr(q, k) in (None, v) for k, v in (("dataset", r["dataset"]), ("split", r["split"]),
                                                            ("variant", r["variant"]),
                                                            ("processor", processor_label(r))))

    chosen = [r for r in summaries if matches(r)]
    if not chosen:
        return None
    if q.variant is None:
        chosen.sort(key=lambda r: r["variant"] != "original")
    return chosen[0]


def model_page(store: Store, home: Path, key: str, q: ModelPageQuery, links: Links) -> dict[str, Any]:
    model = store.get_model(key)
    if model is None:
        raise PageNotFound(f"no model {key!r} in the store")
    key = model["_id"]
    summaries = sv.result_summaries(store, {"model_key": key})
    selected = pick_result(summaries, q)
    if selected is None and any(getattr(q, k) for k in ("dataset", "split", "variant", "processor")):
        raise PageNotFound(f"model {model['name']!r} has no current result on dataset {q.dataset!r}, split {q.split!r}, "
                           f"variant {q.variant!r}, processor {q.processor!r}")
    detail = _result_detail(store, home, model, sv.result_by_id(store, selected["_id"]), q, links) if selected else None
    tables = _result_tables(summaries, model, links)
    failures = _failure_groups(store.failures({"model_key": key}, {"traceback": 0}))
    from service.claims import current_verdicts

    verdicts = current_verdicts(store, [model]).get(key, []) if model.get("claims") else []
    base = _base_model(store, model)
    datasets = sorted({r["dataset"] for r in summaries})
    return {"title": model["name"], "model": model, "card_url": card_url(model), "tables": tables, "detail": detail,
            "failures": failures, "verdicts": verdicts, "base": base, "n_results": len(summaries),
            "variant_links": [(d, links.variants(key, d)) for d in datasets],
            "compare_base": links.compare([key, base["_id"]], baseline=base["_id"]) if base else None,
            "files": sorted((model.get("files") or {}).items())}


def _base_model(store: Store, model: dict[str, Any]) -> dict[str, Any] | None:
    """The stored model the card names as its base model, if any."""
    base = model.get("base_model") or (model.get("adapter") or {}).get("base_model")
    if isinstance(base, list):
        base = base[0] if base else None
    if not isinstance(base, str) or not base:
        return None
    return store.get_model(base) or store.get_model(f"{model.get('source')}/{base}")


def _result_tables(summaries: list[dict[str, Any]], model: dict[str, Any], links: Links) -> list[dict[str, Any]]:
    """The model's results grouped by task kind, each with its columns and a link per row."""
    groups: dict[str, dict[str, Any]] = {}
    for r in summaries:
        cols = result_columns(r)
        group = groups.setdefault(r.get("task") or r["module"].split("/")[0], {"columns": cols, "rows": []})
        group["rows"].append({
            "r": r, "values": [(r["overall"].get(k), d) for _, k, d in cols],
            "ips": (r.get("runtime") or {}).get("instances_per_second"),
            "link": links.model(model["_id"], dataset=r["dataset"], split=r["split"], variant=r["variant"],
                                processor=processor_label(r))})
    return [{"task": t, **g} for t, g in groups.items()]


def _failure_groups(failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failures with the same dataset, class and reason as one row listing their variants."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for f in failures:
        groups.setdefault((f.get("dataset"), f["error_class"], f["reason"]), []).append(f)
    rows = []
    for (dataset, error_class, reason), fails in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rows.append({"dataset": dataset, "error_class": error_class, "reason": reason,
                     "variants": sorted(str(f.get("variant")) for f in fails),
                     "attempts": max(int(f.get("attempts") or 0) for f in fails),
                     "parked": all(f.get("permanent") for f in fails),
                     "last_at": max((f.get("last_at") for f in fails if f.get("last_at")), default=None)})
    return rows


def _result_detail(store: Store, home: Path, model: dict[str, Any], r: dict[str, Any] | None, q: ModelPageQuery,
                   links: Links) -> dict[str, Any] | None:
    if r is None:
        return None
    out: dict[str, Any] = {"r": r, "columns": result_columns(r), "runtime": r.get("runtime") or {}, "charts": {}}
    per_class = r.get("per_class") or {}
    metric = analysis.per_class_metric(r)
    if per_class and metric:
        metrics = ("precision", "recall", "f1") if metric == "f1" else ("AP50", "AP") if metric == "AP" else (metric,)
        metrics = tuple(m for m in metrics if isinstance(next(iter(per_class.values())).get(m), (int, float)))
        fig, shown = charts.per_class_bars(per_class, metrics, f"per class: {', '.join(metrics)}")
        out["charts"]["per_class"] = fig
        out["per_class_rows"] = [(c, per_class[c]) for c in sorted(per_class)] if len(per_class) <= 200 else \
            [(c, per_class[c]) for c in shown]
        out["per_class_metrics"] = [k for k, v in next(iter(per_class.values())).items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool)]
        out["per_class_total"] = len(per_class)
    cm = r.get("confusion_matrix")
    if cm:
        out["confusions"] = analysis.top_confusions(cm, q.cm_top)
        zoom = [c.strip() for c in q.cm_classes.split(",") if c.strip()] if q.cm_classes else None
        classes = zoom or analysis.confusion_focus(cm, HEATMAP_MAX_CLASSES, q.cm_top)
        sub = analysis.confusion_submatrix(cm, classes[:HEATMAP_MAX_CLASSES * 2] if classes else None)
        note = None if classes is None else (f"zoomed to {len(sub['labels'])} chosen classes" if zoom else
                                             f"the {len(sub['labels'])} classes of the {q.cm_top} largest confusions "
                                             f"(of {len(cm['labels'])} classes)")
        out["charts"]["confusion"] = charts.confusion_heatmap(sub, "confusion matrix" + (f": {note}" if note else ""))
        out["cm_note"] = note
        out["cm_labels"] = sub["labels"]
        out["cm_n_classes"] = len(cm["labels"])
    mis = sorted(r.get("misclassifications") or [], key=lambda m: (-(m.get("confidence") or 0.0), str(m.get("instance"))))
    if mis or "misclassifications" in r:
        shown = mis[q.mis_offset:q.mis_offset + MIS_PAGE]
        dataset = store.datasets().get(r["dataset"]) or {}
        inputs, note = media.inputs_for(dataset, r, home, [str(m["instance"]) for m in shown])
        folder, _ = media.sample_folder(dataset, r, home) if dataset else (None, None)
        rows = []
        for m in shown:
            sample = inputs.get(str(m["instance"])) or {}
            image = None
            if sample.get("file") and folder is not None:
                path = media.safe_file(folder, sample["file"])
                image = links.sample_image(r["_id"], str(m["instance"]), path) if path else None
            rows.append({**m, "text": sample.get("text"), "text_pair": sample.get("text_pair"), "image": image})
        out["mis"] = {"rows": rows, "total": len(mis), "offset": q.mis_offset, "note": note,
                      "truncated": r.get("misclassifications_truncated"), "incorrect": r["overall"].get("incorrect"),
                      "next": links.model(model["_id"], **_selection(r), mis_offset=q.mis_offset + MIS_PAGE)
                      if q.mis_offset + MIS_PAGE < len(mis) and not links.static else None,
                      "prev": links.model(model["_id"], **_selection(r), mis_offset=max(q.mis_offset - MIS_PAGE, 0))
                      if q.mis_offset and not links.static else None}
    misdetections = r.get("misdetections")
    if misdetections:
        fps = sorted(misdetections.get("false_positives") or [], key=lambda d: -(d.get("confidence") or d.get("score") or 0))
        out["misdetections"] = {"false_positives": fps[:MIS_PAGE], "missed": (misdetections.get("missed") or [])[:MIS_PAGE],
                                "n_false_positives": len(fps), "n_missed": len(misdetections.get("missed") or [])}
    out["selection"] = _selection(r)
    return out


def _selection(r: dict[str, Any]) -> dict[str, str]:
    return {"dataset": r["dataset"], "split": r["split"], "variant": r["variant"],
            "processor": processor_label(r)}


# -- variants ----------------------------------------------------------------------------------------------------
class VariantsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)
    threshold: float = Field(0.01, ge=0, le=1e6, allow_inf_nan=False)


def variants_page(store: Store, key: str, q: VariantsQuery, links: Links) -> dict[str, Any]:
    model = store.get_model(key)
    if model is None:
        raise PageNotFound(f"no model {key!r} in the store")
    key = model["_id"]
    datasets = sorted({d["dataset"] for d in sv.result_variants(store, key)})
    if not datasets:
        raise PageNotFound(f"model {model['name']!r} has no results")
    dataset = q.dataset or datasets[0]
    if dataset not in datasets:
        raise PageNotFound(f"model {model['name']!r} has no results on dataset {dataset!r}")
    results = store.latest_results({"model_key": key, "dataset": dataset})
    comparison = analysis.variant_comparison(results, q.threshold)
    doc = store.datasets().get(dataset) or {"name": dataset}
    headline = headline_metric(doc) or "accuracy"
    variants = sorted({r["variant"] for r in comparison["overall"]})
    shown = [m for m in dict.fromkeys([headline, "macro_f1", "weighted_f1", "AP50", "spearman"])
             if any(r["metric"] == m for r in comparison["overall"])]
    pivot: dict[str, dict[str, Any]] = {}
    for row in comparison["per_class"]:
        pivot.setdefault(row["class"], {})[row["variant"]] = row
    per_class = sorted(pivot.items(), key=lambda kv: min((r["delta"] for r in kv[1].values()), default=0.0))
    originals = [r for r in results if r["variant"] == "original"]
    return {"title": f"{model['name']}: variants on {dataset}", "model": model, "dataset": dataset,
            "datasets": [(d, links.variants(key, d)) for d in datasets], "q": q, "variants": variants,
            "overall": [r for r in comparison["overall"] if r["metric"] in shown], "shown_metrics": shown,
            "original": originals[0] if originals else None, "per_class": per_class[:60], "n_classes": len(pivot),
            "per_class_metric": comparison["per_class"][0]["metric"] if comparison["per_class"] else None,
            "chart": charts.variant_bars(comparison["overall"], headline, f"{headline}: each variant minus the original")
            if comparison["overall"] else None}


# -- compare -----------------------------------------------------------------------------------------------------
class CompareQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    m: list[str] = Field(default_factory=list, max_length=12, description="the models to compare (keys or names)")
    only_differences: bool = False
    baseline: str | None = Field(None, max_length=400, description="a model key or name; default: the first model's "
                                                                    "base_model when it is stored")
    threshold: float = Field(0.01, ge=0, le=1e6, allow_inf_nan=False)
    dataset: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)


def compare_page(store: Store, q: CompareQuery, links: Links) -> dict[str, Any]:
    models = []
    for name in dict.fromkeys(q.m):
        doc = store.get_model(name)
        if doc is None:
            raise PageNotFound(f"no model {name!r} in the store")
        if doc["_id"] not in [m["_id"] for m in models]:
            models.append(doc)
    baseline = None
    if q.baseline:
        baseline = store.get_model(q.baseline)
        if baseline is None:
            raise PageNotFound(f"no baseline model {q.baseline!r} in the store")
    else:  # the base model named by the first picked model whose card names one that is stored
        baseline = next((b for b in (_base_model(store, m) for m in models) if b is not None), None)
    if baseline is not None and baseline["_id"] not in [m["_id"] for m in models]:
        models.append(baseline)
    query: dict[str, Any] = {"model_key": {"$in": [m["_id"] for m in models]}}
    if q.dataset:
        query["dataset"] = q.dataset
    results: dict[str, list[dict[str, Any]]] = {}
    for r in (sv.result_summaries(store, query) if models else []):
        results.setdefault(r["model_key"], []).append(r)
    rows = analysis.compare_table(models, results, q.only_differences)
    diffs = []
    if baseline is not None:
        for m in models:
            if m["_id"] != baseline["_id"]:
                d = analysis.diff_results(results.get(m["_id"], []), results.get(baseline["_id"], []), q.threshold)
                diffs.append({"model": m, "rows": d, "flagged": sum(1 for r in d if r["flag"] == "regression"),
                              "improved": sum(1 for r in d if r["flag"] == "improvement")})
    keys = [m["_id"] for m in models]
    return {"title": "Compare models", "models": models, "rows": rows, "q": q, "baseline": baseline, "diffs": diffs,
            "toggle": links.compare(keys, **{**q.model_dump(exclude={"m"}), "only_differences": not q.only_differences}),
            "model_links": {m["_id"]: links.model(m["_id"]) for m in models},
            "baseline_links": {m["_id"]: links.compare(keys, **{**q.model_dump(exclude={"m"}), "baseline": m["_id"]})
                               for m in models},
            "datasets": sorted({r["dataset"] for rs in results.values() for r in rs})}


# -- scatter -----------------------------------------------------------------------------------------------------
class ScatterQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_]+$")
    dataset: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)
    variant: str = Field("original", max_length=100, pattern=NAME_PATTERN)
    x: Literal["throughput", "latency"] = "throughput"
    source: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    task: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    q: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)
    log_x: bool = True
    points: int = Field(500, ge=10, le=5000, description="at most this many models (the best by the metric)")


def scatter_page(store: Store, q: ScatterQuery, links: Links) -> dict[str, Any]:
    datasets = store.datasets()
    dataset = q.dataset or next(iter(sorted(datasets)), None)
    if dataset is None:
        return {"title": "Scatter", "q": q, "chart": None, "points": [], "datasets": [], "metrics": metric_choices(),
                "variants": ["original"], "dataset": None, "metric": q.metric}
    if dataset not in datasets:
        raise PageNotFound(f"no dataset {dataset!r}; known: {', '.join(sorted(datasets))}")
    metric = q.metric or headline_metric(datasets[dataset]) or "accuracy"
    if metric not in metric_choices():
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(metric_choices())}")
    f = ModelFilters(sort="metric", metric=metric, dataset=dataset, variant=q.variant, source=q.source, task=q.task,
                     q=q.q, limit=q.points)
    points = []
    for row in metric_rows(store, f):
        runtime = row.get("runtime") or {}
        x = runtime.get("instances_per_second")
        if q.x == "latency":  # batch-1 median latency where the single-stream scenario ran, else 1000 / throughput
            x = (runtime.get("single_stream") or {}).get("p50_ms") or (1000.0 / x if x else None)
        value = sv.get_path(row, metric_path(metric))
        if x is not None and value is not None:
            points.append({"x": x, "y": value, "name": f"{row.get('model_name')} ({row['split']})", "key": row["model_key"],
                           "url": links.model(row["model_key"], dataset=row["dataset"], split=row["split"],
                                              variant=row["variant"], processor=processor_label(row))})
    x_title = "instances per second" if q.x == "throughput" else \
        "latency per instance (ms; batch-1 p50 where measured, else 1000 / throughput)"
    chart = charts.scatter(points, x_title, metric,
                           f"{metric} on {dataset} ({q.variant}) against {'throughput' if q.x == 'throughput' else 'latency'}",
                           log_x=q.log_x) if points else None
    return {"title": "Scatter", "q": q, "chart": chart, "points": points, "capped": len(points) >= q.points,
            "datasets": sorted(datasets), "dataset": dataset, "metric": metric, "metrics": metric_choices(),
            "variants": _variants(store, dataset)}


# -- datasets ----------------------------------------------------------------------------------------------------
def datasets_page(store: Store, links: Links) -> dict[str, Any]:
    rows = []
    for name, d in sorted(store.datasets().items()):
        kind = None
        try:
            from tasks.base import task_for_dataset

            kind = task_for_dataset(d).name
        except KeyError:
            pass
        rows.append({"name": name, "task": kind or d.get("task") or d.get("datatype"), "classes": len(d.get("classes") or []),
                     "splits": [(s["name"], s["total"]) for s in d.get("splits") or []],
                     "variants": d.get("supported_variants") or [], "revision": (d.get("revision") or "")[:12],
                     "link": links.dataset(name)})
    return {"title": "Datasets", "rows": rows}


def dataset_page(store: Store, name: str, links: Links) -> dict[str, Any]:
    d = store.datasets().get(name)
    if d is None:
        raise PageNotFound(f"no dataset {name!r} in the store")
    splits = [s["name"] for s in d.get("splits") or []]
    counts = {s["name"]: s.get("class_counts") or {} for s in d.get("splits") or []}
    examples: dict[int, list[dict[str, Any]]] = {}
    root = Path(d["path"]) if d.get("path") else None
    for e in store.dataset_examples(name):
        value = e.get("example")
        item: dict[str, Any] = {"text": None, "image": None}
        if isinstance(value, str) and root is not None and Path(value).suffix.lower() in media.IMAGE_TYPES:
            path = media.safe_file(root, value)
            item["image"] = links.example_image(name, value, path) if path else None
            item["text"] = None if path else value
        else:
            item["text"] = value if isinstance(value, str) else str(value)
        examples.setdefault(e.get("class_id"), []).append(item)
    classes = d.get("classes") or []
    rows = [{"id": c["id"], "label": c["label"], "extra": c.get("extra") or {},
             "counts": [counts[s].get(c["label"], 0) for s in splits], "examples": examples.get(c["id"], [])[:3]}
            for c in classes[:1000]]
    metric = headline_metric(d)
    board = leaderboard(store, name, "original", metric, 10) if metric else []
    return {"title": f"Dataset {name}", "d": d, "splits": splits, "rows": rows, "n_classes": len(classes),
            "metric": metric, "board": board,
            "board_link": links.models(sort="metric", metric=metric, dataset=name) if metric else None,
            "scatter_link": links.scatter(dataset=name, metric=metric, variant="original")}


# -- runs --------------------------------------------------------------------------------------------------------
_BREAKDOWNS: dict[tuple, dict[str, Any]] = {}


def run_progress(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """service.run_status.run_breakdown of the run; remembered for a finished run (its counts no longer change)."""
    from service.run_status import run_breakdown

    if run.get("status") == "running" or not run.get("ended_at"):
        return run_breakdown(store, run)
    key = (store.db_name, run["_id"], run["ended_at"])
    if key not in _BREAKDOWNS:
        if len(_BREAKDOWNS) > 64:
            _BREAKDOWNS.pop(next(iter(_BREAKDOWNS)))
        _BREAKDOWNS[key] = run_breakdown(store, run)
    return _BREAKDOWNS[key]


def runs_page(store: Store, links: Links) -> dict[str, Any]:
    holder = lock_holder(store)
    runs = sv.list_runs(store, 100)
    return {"title": "Runs", "runs": [{"run": r, "state": run_state(r, holder), "link": links.run(r["_id"])} for r in runs],
            "holder": holder}


def run_page(store: Store, run_id: str, links: Links) -> dict[str, Any]:
    run = sv.get_run(store, run_id)
    if run is None:
        raise PageNotFound(f"no run {run_id!r}")
    holder = lock_holder(store)
    state = run_state(run, holder)
    progress = run_progress(store, run)
    current = run.get("current") if state == "running" else None
    failures = sv.failures_by_class(store, {"run_id": run_id})
    by_model = sorted(progress["model"].items(), key=lambda kv: (-kv[1]["failed"], -kv[1]["pending"], kv[0]))
    return {"title": f"Run {run_id}", "run": run, "state": state, "progress": progress, "current": current,
            "failures": failures, "by_model": by_model[:500], "n_models": len(by_model),
            "by_dataset": sorted(progress["dataset"].items()), "holder": holder,
            "model_links": {k: links.model(k) for k, _ in by_model[:500]}}


def format_time(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.tzinfo else "")
    return "" if value is None else str(value)
