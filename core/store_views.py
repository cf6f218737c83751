"""Read-only queries of the web views and the service API (service/web) that core.store does not offer:
keyset pages of models and of results sorted by a metric, the current (newest) result among candidates,
counts for one page of models, runs, failures by class, and the indexes that keep these fast at 100,000
models and 1,000,000 results (:func:`ensure_view_indexes`).

Paging is by keyset (the last row's sort value and ``_id``), never by skipping, so page 2,000 costs what
page 1 costs. A filter that needs another collection (evaluated on a dataset, failed) is applied to each
batch of candidates in one indexed ``$in`` query (:class:`Page` ``scanned`` says how many were looked at).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import ExecutionTimeout, OperationFailure

from core.store import Store

#: the fields that identify a result's lineage: a newer result with the same values supersedes it
#: (the grouping of Store.latest_results)
RESULT_GROUP = ("model_key", "module", "dataset", "split", "variant", "processor", "processor_spec")

#: a result's lineage and age: which of a set of results are current is read from this index alone (covered)
LINEAGE_INDEX = [("model_key", ASCENDING), ("dataset", ASCENDING), ("variant", ASCENDING), ("split", ASCENDING),
                 ("module", ASCENDING), ("processor", ASCENDING), ("processor_spec", ASCENDING),
                 ("created_at", DESCENDING), ("_id", ASCENDING)]

#: sortable model fields of the models table
MODEL_SORT_FIELDS = ("name", "source", "task", "license", "last_modified", "first_seen")

VIEW_INDEXES: dict[str, list[list[tuple[str, int]]]] = {
    "models": [[(f, ASCENDING), ("_id", ASCENDING)] for f in MODEL_SORT_FIELDS] + [[("inferred_datasets", ASCENDING)]],
    "results": [[("dataset", ASCENDING), ("model_key", ASCENDING)], LINEAGE_INDEX,
                # Store.run_progress groups a run's results by model or dataset and inference: covered by these
                [("run_id", ASCENDING), ("model_key", ASCENDING), ("inference_id", ASCENDING)],
                [("run_id", ASCENDING), ("dataset", ASCENDING), ("inference_id", ASCENDING)]],
    "failures": [[("run_id", ASCENDING), ("error_class", ASCENDING)], [("run_id", ASCENDING), ("model_key", ASCENDING)],
                 [("run_id", ASCENDING), ("dataset", ASCENDING)]],
}


def metric_index(metric_path: str) -> list[tuple[str, int]]:
    """The index of a metric leaderboard: results of one dataset and variant by the value at ``metric_path``
    (e.g. ``overall.accuracy``, ``runtime.instances_per_second``)."""
    return [("dataset", ASCENDING), ("variant", ASCENDING), (metric_path, ASCENDING), ("_id", ASCENDING)]


def ensure_view_indexes(store: Store, metric_paths: Iterable[str] = ()) -> None:
    """Create the indexes the views need (a no-op when they exist; minutes on a large store the first time)."""
    for collection, indexes in VIEW_INDEXES.items():
        for keys in indexes:
            store.db[collection].create_index(keys)
    for path in metric_paths:
        store.db.results.create_index(metric_index(path))


@dataclass
class Page:
    """One page of rows in sort order; ``after`` is the keyset of the next page (None: this is the last);
    ``scanned`` the candidates read to fill it (more than the rows when a post-filter dropped some)."""

    rows: list[dict[str, Any]]
    after: tuple[Any, str] | None
    scanned: int = 0
    complete: bool = True  #: False when the scan limit stopped the page before it was full
    extra: dict[str, Any] = field(default_factory=dict)


def _keyset(field_name: str, direction: int, after: tuple[Any, str] | None) -> dict[str, Any]:
    """The filter of rows after ``after`` = (value, _id) in the order [(field, direction), (_id, direction)]
    (one index {field: 1, _id: 1} serves both directions), where MongoDB puts missing and null values first
    ascending and last descending."""
    if after is None:
        return {}
    value, last_id = after
    if direction == ASCENDING:
        if value is None:
            return {"$or": [{field_name: None, "_id": {"$gt": last_id}}, {field_name: {"$ne": None}}]}
        return {"$or": [{field_name: {"$gt": value}}, {field_name: value, "_id": {"$gt": last_id}}]}
    if value is None:
        return {field_name: None, "_id": {"$lt": last_id}}
    return {"$or": [{field_name: {"$lt": value}}, {field_name: value, "_id": {"$lt": last_id}}, {field_name: None}]}


def get_path(doc: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of a document, or None."""
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def _and(*queries: dict[str, Any]) -> dict[str, Any]:
    parts = [q for q in queries if q]
    return {} if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def keyset_page(store: Store, collection: str, query: dict[str, Any], sort_field: str, direction: int,
                after: tuple[Any, str] | None, limit: int, projection: dict[str, Any] | None = None,
                keep: Callable[[list[dict[str, Any]]], set[str]] | None = None, batch: int = 1000,
                max_scan: int = 50_000) -> Page:
    """Up to ``limit`` documents of ``collection`` matching ``query`` in the order [(sort_field, direction),
    (_id, direction)] after the keyset ``after``. ``keep`` (optional) gets each batch of candidates and returns the ids
    to keep; at most ``max_scan`` candidates are read per page (then ``complete`` is False and ``after`` points
    past the last candidate read)."""
    rows: list[dict[str, Any]] = []
    scanned = 0
    cursor_after = after
    order = [(sort_field, direction), ("_id", direction)]
    while True:
        want = limit + 1 - len(rows) if keep is None else batch
        docs = list(store.db[collection].find(_and(query, _keyset(sort_field, direction, cursor_after)), projection)
                    .sort(order).limit(want))
        scanned += len(docs)
        kept = keep(docs) if keep is not None and docs else None
        for doc in docs:
            if kept is None or doc["_id"] in kept:
                rows.append(doc)
                if len(rows) > limit:
                    last = rows[limit - 1]
                    return Page(rows[:limit], (get_path(last, sort_field), last["_id"]), scanned)
        if len(docs) < want:
            return Page(rows, None, scanned)
        cursor_after = (get_path(docs[-1], sort_field), docs[-1]["_id"])
        if scanned >= max_scan:
            return Page(rows, cursor_after, scanned, complete=False)


def models_with(store: Store, collection: str, keys: list[str], query: dict[str, Any] | None = None) -> set[str]:
    """Which of the model ``keys`` have a document in ``collection`` ("results" or "failures") matching ``query``."""
    if not keys:
        return set()
    return set(store.db[collection].distinct("model_key", {"model_key": {"$in": keys}, **(query or {})}))


def counts_for(store: Store, collection: str, keys: list[str]) -> dict[str, int]:
    """Documents per model in ``collection`` for the model ``keys`` only (one page of a table)."""
    if not keys:
        return {}
    pipeline = [{"$match": {"model_key": {"$in": keys}}}, {"$group": {"_id": "$model_key", "n": {"$sum": 1}}}]
    return {d["_id"]: d["n"] for d in store.db[collection].aggregate(pipeline)}


def group_key(result: dict[str, Any]) -> tuple:
    return tuple(result.get(k) for k in RESULT_GROUP)


def current_ids(store: Store, results: list[dict[str, Any]]) -> set[str]:
    """Which of ``results`` (each with the RESULT_GROUP fields, ``created_at`` and ``_id``) are current: the
    newest of their group, as Store.latest_results decides (created_at descending, then _id)."""
    if not results:
        return set()
    query = {field_name: {"$in": sorted({r[field_name] for r in results})} for field_name in ("model_key", "dataset", "variant")}
    newest: dict[tuple, tuple] = {}
    projection = {k: 1 for k in RESULT_GROUP} | {"created_at": 1}
    try:
        docs = list(store.db.results.find(query, projection).hint(LINEAGE_INDEX))
    except OperationFailure:  # the index is not built (ensure_view_indexes not run on this database)
        docs = list(store.db.results.find(query, projection))
    for doc in docs:
        key = group_key(doc)
        rank = (-doc["created_at"].timestamp(), doc["_id"])
        if key not in newest or rank < newest[key]:
            newest[key] = rank
    return {r["_id"] for r in results if newest.get(group_key(r), (None, None))[1] == r["_id"]}


def metric_page(store: Store, query: dict[str, Any], metric_path: str, direction: int, after: tuple[Any, str] | None,
                limit: int, projection: dict[str, Any] | None = None,
                keep_models: Callable[[list[str]], set[str]] | None = None, max_scan: int = 50_000) -> Page:
    """Current results matching ``query`` (which names one dataset and variant) ordered by ``metric_path``,
    keyset-paged; only results with a number there. ``keep_models`` (optional) filters by model key."""
    fields = {k: 1 for k in RESULT_GROUP} | {"created_at": 1, metric_path: 1}
    if projection:
        fields |= projection

    def keep(docs: list[dict[str, Any]]) -> set[str]:
        ids = current_ids(store, docs)
        if keep_models is not None:
            allowed = keep_models(sorted({d["model_key"] for d in docs if d["_id"] in ids}))
            ids = {d["_id"] for d in docs if d["_id"] in ids and d["model_key"] in allowed}
        return ids

    numeric = {metric_path: {"$type": "number"}}
    return keyset_page(store, "results", _and(query, numeric), metric_path, direction, after, limit, fields, keep=keep,
                       batch=max(limit + limit // 4, 100), max_scan=max_scan)


def latest_values(store: Store, query: dict[str, Any], fields: Iterable[str]) -> list[dict[str, Any]]:
    """Current results matching ``query``, only the RESULT_GROUP fields, ``task`` and ``fields`` (dotted paths):
    the light form of Store.latest_results for statistics over many models."""
    projection = {k: 1 for k in RESULT_GROUP} | {"created_at": 1, "task": 1} | {f: 1 for f in fields}
    newest: dict[tuple, dict[str, Any]] = {}
    for doc in store.db.results.find(query, projection):
        key = group_key(doc)
        have = newest.get(key)
        if have is None or (-doc["created_at"].timestamp(), doc["_id"]) < (-have["created_at"].timestamp(), have["_id"]):
            newest[key] = doc
    return list(newest.values())


def result_by_id(store: Store, result_id: str) -> dict[str, Any] | None:
    return store.db.results.find_one({"_id": result_id})


def result_summaries(store: Store, query: dict[str, Any]) -> list[dict[str, Any]]:
    """The current results matching ``query`` without their bulky parts (per class, confusion matrix,
    misclassifications, detections, multiple choice's per-item outcomes): what tables of many results show."""
    bulky = {"per_class": 0, "confusion_matrix": 0, "misclassifications": 0, "misdetections": 0, "per_supercategory": 0,
             "per_item": 0, "env": 0, "label_mapping": 0}
    key = {k: f"${k}" for k in RESULT_GROUP}
    pipeline = [{"$match": query}, {"$project": bulky}, {"$sort": {"created_at": -1, "_id": 1}},
                {"$group": {"_id": key, "doc": {"$first": "$$ROOT"}}}, {"$replaceRoot": {"newRoot": "$doc"}},
                {"$sort": {"model_name": 1, "dataset": 1, "split": 1, "variant": 1, "processor": 1}}]
    return list(store.db.results.aggregate(pipeline, allowDiskUse=True))


def list_runs(store: Store, limit: int, before: Any = None) -> list[dict[str, Any]]:
    """The newest runs first (started before ``before`` when given), without their per-model plans."""
    query = {"started_at": {"$lt": before}} if before is not None else {}
    projection = {"planned_by_model": 0, "planned_by_dataset": 0}
    return list(store.db.runs.find(query, projection).sort("started_at", DESCENDING).limit(limit))


def get_run(store: Store, run_id: str) -> dict[str, Any] | None:
    return store.db.runs.find_one({"_id": run_id})


def failures_by_class(store: Store, query: dict[str, Any]) -> dict[str, int]:
    """Failures matching ``query`` counted per error class."""
    pipeline = [{"$match": query}, {"$group": {"_id": "$error_class", "n": {"$sum": 1}}}, {"$sort": {"n": -1}}]
    return {d["_id"]: d["n"] for d in store.db.failures.aggregate(pipeline)}


def distinct_values(store: Store, collection: str, field_name: str, query: dict[str, Any] | None = None) -> list[Any]:
    """The distinct values of a field (for filter choices), sorted, None left out."""
    return sorted(v for v in store.db[collection].distinct(field_name, query or {}) if v is not None)


def result_variants(store: Store, model_key: str) -> list[dict[str, Any]]:
    """A model's current results reduced to what picks one: dataset, split, variant, processor, module, _id."""
    fields = {k: 1 for k in RESULT_GROUP} | {"created_at": 1, "task": 1, "model_revision": 1}
    newest: dict[tuple, dict[str, Any]] = {}
    for doc in store.db.results.find({"model_key": model_key}, fields):
        key = group_key(doc)
        have = newest.get(key)
        if have is None or (-doc["created_at"].timestamp(), doc["_id"]) < (-have["created_at"].timestamp(), have["_id"]):
            newest[key] = doc
    return sorted(newest.values(), key=lambda d: (d["dataset"], d["split"], d["variant"] != "original", d["variant"],
                                                  d["processor"], d["module"]))


__all__ = ["Page", "RESULT_GROUP", "MODEL_SORT_FIELDS", "counts_for", "current_ids", "distinct_values",
           "ensure_view_indexes", "failures_by_class", "get_path", "get_run", "keyset_page", "latest_values", "list_runs",
           "metric_index", "metric_page", "models_with", "result_by_id", "result_summaries", "result_variants"]


def distinct_model_keys(store: Store, collection: str, query: dict[str, Any], max_ms: int) -> list[str] | None:
    """The distinct ``model_key`` of the documents of ``collection`` matching ``query``, or None when that takes
    longer than ``max_ms`` milliseconds."""
    try:
        return store.db[collection].distinct("model_key", query, maxTimeMS=max_ms)
    except ExecutionTimeout:
        return None


def count_within(store: Store, collection: str, query: dict[str, Any], max_ms: int) -> int | None:
    """How many documents of ``collection`` match ``query``, or None when counting takes longer than ``max_ms``."""
    try:
        return store.db[collection].count_documents(query, maxTimeMS=max_ms)
    except ExecutionTimeout:
        return None
