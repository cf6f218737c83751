"""The models table: filters, sort and keyset pages, shared by the Models view, its CSV/JSON export and the
API (``/api/v1/models``, ``/api/v1/export``).

Two modes. Without a metric the rows are models, sorted by a model field. With ``sort=metric`` (or
``-metric``) the table is a leaderboard: one row per current result on the chosen dataset and variant, by the
metric's value (a model evaluated on two splits or by two modules of the dataset has one row for each).
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core import store_views as sv
from core.store import Store
from processors.base import processor_label

MODEL_FIELDS = {"name": 1, "source": 1, "task": 1, "datasets": 1, "inferred_datasets": 1, "license": 1, "revision": 1,
                "last_modified": 1, "first_seen": 1, "status": 1, "base_model": 1}
RESULT_FIELDS = {"model_name": 1, "source": 1, "task": 1, "model_revision": 1, "runtime.instances_per_second": 1,
                 "runtime.time_per_instance": 1, "runtime.single_stream.p50_ms": 1}
#: the runtime values a metric sort or the scatter can use, by their short name
RUNTIME_METRICS = {"instances_per_second": "runtime.instances_per_second",
                   "time_per_instance": "runtime.time_per_instance"}
#: the metrics with a leaderboard index (service.web.app creates them); any other column sorts without one
INDEXED_METRICS = ("accuracy", "macro_f1", "AP", "pearson", "instances_per_second")
#: a filter needing another collection is turned into an ``_id $in`` list when it matches at most this many
#: models and the list is found within SELECTIVE_MS; else it is checked batch by batch while paging
SELECTIVE_MAX = 20_000
SELECTIVE_MS = 60
COUNT_MS = 60

#: the direction of a sort name without "-" (dates: newest first); "-name" reverses it
NATURAL_DIRECTION = {"last_modified": -1, "first_seen": -1}
SortName = Literal["name", "-name", "source", "-source", "task", "-task", "license", "-license", "last_modified",
                   "-last_modified", "first_seen", "-first_seen", "metric", "-metric"]
NAME_PATTERN = r"^[^\x00-\x1f]*$"


def metric_choices() -> list[str]:
    """Every metric a column of an installed task kind shows (tasks.base.TaskKind.columns), and the runtime."""
    from tasks.base import TASKS

    names: list[str] = []
    for kind in TASKS:
        names += [c.key for c in kind.columns if c.key not in ("n", "n_images")]
    return list(dict.fromkeys(names)) + list(RUNTIME_METRICS)


def metric_path(metric: str) -> str:
    """Where a metric lives in a result document."""
    return RUNTIME_METRICS.get(metric, f"overall.{metric}")


class ModelFilters(BaseModel):
    """The filters, sort and page of the models table (the URL's query string)."""

    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(None, max_length=200, pattern=NAME_PATTERN, description="case-insensitive part of the name")
    source: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    task: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    trained_on: str | None = Field(None, max_length=200, pattern=NAME_PATTERN,
                                   description="declared or inferred training dataset")
    evaluated_on: str | None = Field(None, max_length=200, pattern=NAME_PATTERN, description="has results on this dataset")
    license: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    has_results: bool | None = None
    failed: bool | None = Field(None, description="has (true) or has no (false) stored failures")
    include_removed: bool = False
    sort: SortName = "name"
    metric: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_]+$",
                               description="with sort=metric: the metric (a column of the task kinds, or a runtime value)")
    dataset: str | None = Field(None, max_length=200, pattern=NAME_PATTERN, description="with sort=metric: the dataset")
    variant: str = Field("original", max_length=100, pattern=NAME_PATTERN, description="with sort=metric: the variant")
    limit: int = Field(50, ge=1, le=2000)
    cursor: str | None = Field(None, max_length=2000, description="the next_cursor of the previous page")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_any(cls, data: Any) -> Any:
        """A filter form's empty field ("any") is the same as leaving the parameter out."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data

    @model_validator(mode="after")
    def _metric_needs_dataset(self) -> "ModelFilters":
        if self.sort.lstrip("-") == "metric":
            if not self.metric or not self.dataset:
                raise ValueError("sort=metric needs metric=<name> and dataset=<dataset name> (and variant, default "
                                 "original)")
            choices = metric_choices()
            if self.metric not in choices:
                raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(choices)}")
        return self

    @property
    def leaderboard(self) -> bool:
        return self.sort.lstrip("-") == "metric"

    def params(self, **changes: Any) -> dict[str, Any]:
        """The query-string parameters that differ from the defaults (for links), with ``changes`` applied."""
        data = self.model_dump()
        data.update(changes)
        defaults = ModelFilters.model_construct().model_dump()
        return {k: v for k, v in data.items() if v is not None and v != defaults.get(k) and k in ModelFilters.model_fields}


# -- cursors ---------------------------------------------------------------------------------------------------
def encode_cursor(after: tuple[Any, str] | None) -> str | None:
    if after is None:
        return None
    value, last_id = after
    if isinstance(value, dt.datetime):
        value = {"$date": value.isoformat()}
    raw = json.dumps([value, last_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class BadCursor(ValueError):
    """A cursor that this service did not hand out."""


def decode_cursor(cursor: str | None) -> tuple[Any, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, last_id = json.loads(raw)
        if isinstance(value, dict):
            value = dt.datetime.fromisoformat(value["$date"])
        if not isinstance(last_id, str) or not (value is None or isinstance(value, (str, int, float, dt.datetime))):
            raise TypeError
    except (ValueError, TypeError, KeyError):
        raise BadCursor("cursor is not one this service handed out: start again without it") from None
    return value, last_id


# -- queries ---------------------------------------------------------------------------------------------------
def model_query(f: ModelFilters) -> dict[str, Any]:
    """The filters that read only the model documents, as a MongoDB query."""
    parts: list[dict[str, Any]] = []
    if not f.include_removed:
        parts.append({"status": "active"})
    if f.q:
        parts.append({"name": {"$regex": re.escape(f.q), "$options": "i"}})
    for key in ("source", "task", "license"):
        if getattr(f, key):
            parts.append({key: getattr(f, key)})
    if f.trained_on:
        parts.append({"$or": [{"datasets": f.trained_on}, {"inferred_datasets": f.trained_on}]})
    return {"$and": parts} if len(parts) > 1 else (parts[0] if parts else {})


def _selective_keys(store: Store, collection: str, query: dict[str, Any]) -> list[str] | None:
    """The models with a document in ``collection`` matching ``query``, when few enough to list quickly."""
    keys = sv.distinct_model_keys(store, collection, query, SELECTIVE_MS)
    return keys if keys is not None and len(keys) <= SELECTIVE_MAX else None


def _cross_filters(store: Store, f: ModelFilters) -> tuple[dict[str, Any], list]:
    """The filters that need results or failures: an ``_id`` restriction when selective, else checks to run on
    each batch of candidate models (functions keys -> kept keys)."""
    restrict: list[set[str]] = []
    checks = []
    if f.evaluated_on:
        keys = _selective_keys(store, "results", {"dataset": f.evaluated_on})
        if keys is not None:
            restrict.append(set(keys))
        else:
            checks.append(lambda ks: sv.models_with(store, "results", ks, {"dataset": f.evaluated_on}))
    if f.failed is not None:
        keys = _selective_keys(store, "failures", {})
        if keys is not None and f.failed:
            restrict.append(set(keys))
        elif keys is not None:
            failed = set(keys)
            checks.append(lambda ks: set(ks) - failed)
        else:
            checks.append(lambda ks: sv.models_with(store, "failures", ks) if f.failed
                          else set(ks) - sv.models_with(store, "failures", ks))
    if f.has_results is not None:
        checks.append(lambda ks: sv.models_with(store, "results", ks) if f.has_results
                      else set(ks) - sv.models_with(store, "results", ks))
    query: dict[str, Any] = {}
    if restrict:
        query = {"_id": {"$in": sorted(set.intersection(*restrict))}}
    return query, checks


def _apply(checks: list, keys: list[str]) -> set[str]:
    kept = set(keys)
    for check in checks:
        if not kept:
            break
        kept &= check(sorted(kept))
    return kept


class ModelsPage:
    """One page of the table: rows (dicts ready for a template or JSON), the next cursor, and the total when it
    could be counted cheaply."""

    def __init__(self, rows: list[dict[str, Any]], next_cursor: str | None, total: int | None, complete: bool,
                 scanned: int) -> None:
        self.rows = rows
        self.next_cursor = next_cursor
        self.total = total
        self.complete = complete
        self.scanned = scanned


def _trained_on(m: dict[str, Any]) -> str:
    declared = ", ".join(m.get("datasets") or [])
    inferred = ", ".join(m.get("inferred_datasets") or [])
    return declared or (f"{inferred} (inferred)" if inferred else "")


def _model_row(m: dict[str, Any], n_results: dict[str, int], n_failures: dict[str, int]) -> dict[str, Any]:
    return {"key": m["_id"], "name": m.get("name"), "source": m.get("source"), "task": m.get("task"),
            "trained_on": _trained_on(m), "license": m.get("license"), "revision": (m.get("revision") or "")[:12],
            "last_modified": m.get("last_modified"), "status": m.get("status"),
            "results": n_results.get(m["_id"], 0), "failures": n_failures.get(m["_id"], 0)}


def _count(store: Store, query: dict[str, Any]) -> int | None:
    return sv.count_within(store, "models", query, COUNT_MS)


def models_page(store: Store, f: ModelFilters, max_scan: int = 50_000) -> ModelsPage:
    """The page of the table ``f`` asks for."""
    if f.leaderboard:
        return _leaderboard_page(store, f, max_scan)
    after = decode_cursor(f.cursor)
    base = model_query(f)
    cross, checks = _cross_filters(store, f)
    query = {"$and": [base, cross]} if base and cross else (base or cross)
    field = f.sort.lstrip("-")
    direction = NATURAL_DIRECTION.get(field, 1) * (-1 if f.sort.startswith("-") else 1)
    keep = (lambda docs: _apply(checks, [d["_id"] for d in docs])) if checks else None
    page = sv.keyset_page(store, "models", query, field, direction, after, f.limit, MODEL_FIELDS, keep=keep,
                          max_scan=max_scan)
    keys = [m["_id"] for m in page.rows]
    n_results, n_failures = sv.counts_for(store, "results", keys), sv.counts_for(store, "failures", keys)
    rows = [_model_row(m, n_results, n_failures) for m in page.rows]
    if page.after is None and after is None:
        total = len(rows)  # everything fitted on the first page
    else:
        total = _count(store, query) if not checks else None
    return ModelsPage(rows, encode_cursor(page.after), total, page.complete, page.scanned)


def _metric_page(store: Store, f: ModelFilters, max_scan: int = 50_000) -> sv.Page:
    """The current results of the leaderboard page ``f`` asks for (result documents, light projection)."""
    after = decode_cursor(f.cursor)
    base = model_query(f)
    cross, checks = _cross_filters(store, f)
    query: dict[str, Any] = {"dataset": f.dataset, "variant": f.variant}
    if cross:
        query["model_key"] = {"$in": cross["_id"]["$in"]}

    def keep_models(keys: list[str]) -> set[str]:
        kept = {d["_id"] for d in store.find_models({"$and": [{"_id": {"$in": keys}}, base]}, {"_id": 1})} \
            if base else set(keys)
        return _apply(checks, sorted(kept)) if checks else kept

    direction = 1 if f.sort.startswith("-") else -1  # metric: best (highest) first; -metric: lowest first
    return sv.metric_page(store, query, metric_path(f.metric or ""), direction, after, f.limit,
                          RESULT_FIELDS | {"split": 1, "module": 1},
                          keep_models=keep_models if (base or checks) else None, max_scan=max_scan)


def metric_rows(store: Store, f: ModelFilters) -> list[dict[str, Any]]:
    """The result documents of one leaderboard page (no model documents joined): for charts."""
    return _metric_page(store, f).rows


def _leaderboard_page(store: Store, f: ModelFilters, max_scan: int) -> ModelsPage:
    page = _metric_page(store, f, max_scan)
    path = metric_path(f.metric or "")
    keys = sorted({r["model_key"] for r in page.rows})
    models = {m["_id"]: m for m in store.find_models({"_id": {"$in": keys}}, MODEL_FIELDS)} if keys else {}
    n_results, n_failures = sv.counts_for(store, "results", keys), sv.counts_for(store, "failures", keys)
    rows = []
    for r in page.rows:
        model = models.get(r["model_key"]) or {"_id": r["model_key"], "name": r.get("model_name"), "source": r.get("source")}
        row = _model_row(model, n_results, n_failures)
        row.update(result_id=r["_id"], dataset=r["dataset"], split=r["split"], variant=r["variant"],
                   module=r["module"], processor=processor_label(r), metric=f.metric,
                   value=sv.get_path(r, path), instances_per_second=(r.get("runtime") or {}).get("instances_per_second"))
        rows.append(row)
    return ModelsPage(rows, encode_cursor(page.after), None, page.complete, page.scanned)


def iter_rows(store: Store, f: ModelFilters, page_size: int = 500) -> Iterator[dict[str, Any]]:
    """Every row of the table (all pages): what the export writes."""
    current = f.model_copy(update={"limit": page_size, "cursor": None})
    while True:
        page = models_page(store, current, max_scan=10**9)
        yield from page.rows
        if not page.next_cursor:
            return
        current = current.model_copy(update={"cursor": page.next_cursor})


EXPORT_COLUMNS = ["key", "name", "source", "task", "trained_on", "license", "revision", "last_modified", "status",
                  "results", "failures"]
LEADERBOARD_COLUMNS = ["dataset", "split", "variant", "module", "processor", "metric", "value", "instances_per_second"]


def export_columns(f: ModelFilters) -> list[str]:
    return EXPORT_COLUMNS + (LEADERBOARD_COLUMNS if f.leaderboard else [])
