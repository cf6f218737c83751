"""The service API under /api/v1 (documented at /openapi.json). Every route needs the bearer token
(service.web.auth); bad parameters are a 422 naming them, unknown things a 404, a cycle conflict a 409."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Annotated, Any, Iterator, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from core import store_views as sv
from service.web import analysis
from service.web.auth import require_token
from service.web.models_view import NAME_PATTERN, BadCursor, ModelFilters, export_columns, iter_rows, models_page
from service.web.pages import lock_holder, run_progress, run_state
from service.web.render import clean
from service.web.runs import CycleConflict, CycleStartFailed, RunOptions, public_holder, request_stop, start_cycle


class Problem(BaseModel):
    """An error: what was wrong."""

    detail: Any


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {400: "the request body is not valid JSON", 401: "missing or wrong bearer token", 404: "no such thing in the store",
             409: "a cycle conflict (another cycle holds the lock, or none runs)", 422: "a parameter is not valid",
             503: "the cycle could not be started"}
    return {code: {"model": Problem, "description": texts[code]} for code in codes}


router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)], responses=_responses(401))


def ok(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(clean(value), status_code=status)


def _store(request: Request):
    return request.app.state.store


def _model_or_404(store, key: str) -> dict[str, Any]:
    doc = store.get_model(key)
    if doc is None:
        raise HTTPException(404, f"no model {key!r} in the store")
    return doc


def _page(store, f: ModelFilters):
    try:
        return models_page(store, f)
    except BadCursor as exc:
        raise HTTPException(422, str(exc)) from None


# -- models --------------------------------------------------------------------------------------------------------
class ModelsOut(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")
    total: int | None = Field(description="matching models, when they could be counted quickly")
    complete: bool = Field(description="false when the page stopped at the scan limit before it was full")


@router.get("/models", response_model=ModelsOut, responses=_responses(422),
            summary="Models: filter, sort (by a field, or sort=metric for a leaderboard), keyset pages")
def list_models(request: Request, filters: Annotated[ModelFilters, Query()]) -> JSONResponse:
    page = _page(_store(request), filters)
    return ok({"items": page.rows, "next_cursor": page.next_cursor, "total": page.total, "complete": page.complete})


MODEL_FIELDS = {"config": 0, "claims": 0}


@router.get("/models/{model_key:path}", responses=_responses(404), summary="One model: metadata, results, failures")
def get_model(request: Request, model_key: Annotated[str, Path(max_length=400)]) -> JSONResponse:
    store = _store(request)
    doc = _model_or_404(store, model_key)
    results = sv.result_summaries(store, {"model_key": doc["_id"]})
    failures = store.failures({"model_key": doc["_id"]}, {"traceback": 0})
    config = doc.get("config") or {}
    model = {k: v for k, v in doc.items() if k not in MODEL_FIELDS}
    model["labels"] = len(config.get("id2label") or {})
    model["architectures"] = config.get("architectures")
    return ok({"model": model, "results": results, "failures": failures})


# -- results -------------------------------------------------------------------------------------------------------
class ResultsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, max_length=400, description="model key or name")
    dataset: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)
    split: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    variant: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    processor: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)
    details: bool = Field(False, description="include per-class values, confusion matrix and misclassifications")
    superseded: bool = Field(False, description="also results superseded by a newer revision or processor version")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=2000)


BULKY = {"per_class": 0, "confusion_matrix": 0, "misclassifications": 0, "misdetections": 0, "per_supercategory": 0}


@router.get("/results", responses=_responses(404, 422), summary="Results (current by default): filter, keyset pages")
def list_results(request: Request, q: Annotated[ResultsQuery, Query()]) -> JSONResponse:
    from service.web.models_view import decode_cursor, encode_cursor

    store = _store(request)
    query: dict[str, Any] = {}
    if q.model:
        query["model_key"] = _model_or_404(store, q.model)["_id"]
    for key in ("dataset", "split", "variant", "processor"):
        if getattr(q, key):
            query[key] = getattr(q, key)
    try:
        after = decode_cursor(q.cursor)
    except BadCursor as exc:
        raise HTTPException(422, str(exc)) from None
    keep = None if q.superseded else (lambda docs: sv.current_ids(store, docs))
    page = sv.keyset_page(store, "results", query, "_id", 1, after, q.limit, None if q.details else BULKY, keep=keep,
                          batch=max(q.limit * 2, 100))
    return ok({"items": page.rows, "next_cursor": encode_cursor(page.after), "complete": page.complete})


# -- diff and stats -----------------------------------------------------------------------------------------------
class DiffQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=400, description="model key or name")
    baseline: str | None = Field(None, max_length=400, description="default: the model card's base_model")
    threshold: float = Field(0.01, ge=0, le=1e6, allow_inf_nan=False,
                             description="a change of at least this much (absolute) is flagged")
    dataset: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)


@router.get("/diff", responses=_responses(404, 422),
            summary="A model against a baseline: every metric of every shared result, changes past the threshold flagged")
def diff(request: Request, q: Annotated[DiffQuery, Query()]) -> JSONResponse:
    from service.web.pages import _base_model

    store = _store(request)
    model = _model_or_404(store, q.model)
    if q.baseline:
        baseline = _model_or_404(store, q.baseline)
    else:
        baseline = _base_model(store, model)
        if baseline is None:
            raise HTTPException(422, f"model {model['name']!r} names no stored base model (base_model "
                                     f"{model.get('base_model')!r}); pass baseline=<model>")
    query = {"dataset": q.dataset} if q.dataset else {}
    mine = sv.result_summaries(store, {"model_key": model["_id"], **query})
    theirs = sv.result_summaries(store, {"model_key": baseline["_id"], **query})
    rows = analysis.diff_results(mine, theirs, q.threshold)
    return ok({"model": model["_id"], "baseline": baseline["_id"], "threshold": q.threshold, "rows": rows,
               "regressions": sum(1 for r in rows if r["flag"] == "regression"),
               "improvements": sum(1 for r in rows if r["flag"] == "improvement")})


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    dataset: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)
    variant: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    split: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    processor: str | None = Field(None, max_length=200, pattern=NAME_PATTERN)
    metric: list[str] = Field(default_factory=list, max_length=50, description="only these metrics (repeatable)")


@router.get("/stats", responses=_responses(422),
            summary="Per task x dataset x variant, per metric: count, mean, std, min, quartiles, max across models")
def stats(request: Request, q: Annotated[StatsQuery, Query()]) -> JSONResponse:
    store = _store(request)
    query = {k: getattr(q, k) for k in ("task", "dataset", "variant", "split", "processor") if getattr(q, k)}
    results = sv.latest_values(store, query, ["overall", "runtime.instances_per_second"])
    for r in results:
        if not r.get("task"):
            from tasks.base import task_for_result

            kind = task_for_result(r)
            r["task"] = kind.name if kind else None
    return ok({"rows": analysis.stats(results, q.metric or None), "results": len(results)})


# -- export --------------------------------------------------------------------------------------------------------
class ExportFilters(ModelFilters):
    format: Literal["csv", "json"] = "csv"


def export_response(store, f: ModelFilters, fmt: str) -> StreamingResponse:
    """Every row of the filtered models view as CSV or JSON (a list of objects), streamed."""
    columns = export_columns(f)
    rows = iter_rows(store, f)
    try:
        first = next(rows, None)
    except BadCursor as exc:
        raise HTTPException(422, str(exc)) from None

    def all_rows() -> Iterator[dict[str, Any]]:
        if first is not None:
            yield first
            yield from rows

    def as_csv() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in all_rows():
            writer.writerow(clean(row))
            if buf.tell() > 65536:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    def as_json() -> Iterator[str]:
        yield "["
        for i, row in enumerate(all_rows()):
            yield ("," if i else "") + json.dumps({k: clean(row.get(k)) for k in columns})
        yield "]"

    media = "text/csv" if fmt == "csv" else "application/json"
    return StreamingResponse(as_csv() if fmt == "csv" else as_json(), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="models.{fmt}"'})


@router.get("/export", responses={200: {"content": {"text/csv": {}, "application/json": {}},
                                        "description": "every row of the filtered view"}, **_responses(422)},
            summary="Export the filtered models view (all pages) as CSV or JSON")
def export(request: Request, f: Annotated[ExportFilters, Query()]) -> StreamingResponse:
    return export_response(_store(request), ModelFilters(**f.model_dump(exclude={"format"})), f.format)


# -- datasets ------------------------------------------------------------------------------------------------------
@router.get("/datasets", summary="The registered datasets")
def list_datasets(request: Request) -> JSONResponse:
    docs = _store(request).datasets().values()
    return ok({"items": [{k: d.get(k) for k in ("name", "task", "datatype", "revision", "supported_variants")}
                         | {"classes": len(d.get("classes") or []), "splits": [{"name": s["name"], "total": s["total"]}
                                                                              for s in d.get("splits") or []]}
                         for d in docs]})


@router.get("/datasets/{name:path}", responses=_responses(404), summary="One dataset: metadata, classes, splits, examples")
def get_dataset(request: Request, name: Annotated[str, Path(max_length=200)]) -> JSONResponse:
    store = _store(request)
    doc = store.datasets().get(name)
    if doc is None:
        raise HTTPException(404, f"no dataset {name!r}")
    examples = [{"class_id": e.get("class_id"), "example": e.get("example")} for e in store.dataset_examples(name)]
    return ok({"dataset": doc, "examples": examples})


# -- runs ----------------------------------------------------------------------------------------------------------
class RunsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=200)
    before: dt.datetime | None = Field(None, description="only runs started before this time (the previous page's "
                                                         "last started_at)")


@router.get("/runs", responses=_responses(422), summary="Runs, newest first")
def list_runs(request: Request, q: Annotated[RunsQuery, Query()]) -> JSONResponse:
    store = _store(request)
    holder = lock_holder(store)
    before = q.before if q.before is None or q.before.tzinfo else q.before.replace(tzinfo=dt.timezone.utc)
    runs = sv.list_runs(store, q.limit, before)
    return ok({"items": [{**r, "state": run_state(r, holder)} for r in runs], "lock": public_holder(holder)})


@router.get("/runs/{run_id}", responses=_responses(404),
            summary="One run: state, the running task with its ETA, planned/done/failed/running/pending per model and "
                    "dataset")
def get_run(request: Request, run_id: Annotated[str, Path(max_length=100)]) -> JSONResponse:
    store = _store(request)
    run = sv.get_run(store, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    holder = lock_holder(store)
    state = run_state(run, holder)
    body = {k: v for k, v in run.items() if k not in ("planned_by_model", "planned_by_dataset")}
    return ok({**body, "state": state, "current": run.get("current") if state == "running" else None,
               "progress": run_progress(store, run), "failures_by_class": sv.failures_by_class(store, {"run_id": run_id}),
               "lock": public_holder(holder)})


def _start(request: Request, command: str, args: list[str]) -> JSONResponse:
    try:
        started = start_cycle(_store(request), request.app.state.home, command, args)
    except CycleConflict as exc:
        return ok({"detail": str(exc), "holder": exc.holder}, 409)
    except CycleStartFailed as exc:
        return ok({"detail": str(exc)}, 503)
    return ok(started, 202)


@router.post("/runs", status_code=202, responses={202: {"description": "the cycle started (it holds the lock)"},
                                                   **_responses(400, 409, 422, 503)},
             summary="Start a cycle with the options of `zooeval run`")
def start_run(request: Request, options: Annotated[RunOptions, Body()] = None) -> JSONResponse:
    options = options or RunOptions()
    return _start(request, "run", options.cli_args())


@router.post("/runs/resume", status_code=202, responses={202: {"description": "the cycle started"},
                                                          **_responses(404, 409, 503)},
             summary="Run again with the last cycle's options (completed tasks are not redone)")
def resume_run(request: Request) -> JSONResponse:
    from service.cycle import load_options

    if load_options(_store(request)) is None:
        raise HTTPException(404, "no cycle has run yet: start one with POST /api/v1/runs")
    return _start(request, "resume", [])


@router.post("/runs/stop", status_code=202, responses={202: {"description": "the stop was requested"},
                                                        **_responses(409)},
             summary="Ask the running cycle to stop after its current batch")
def stop_run(request: Request) -> JSONResponse:
    try:
        return ok(request_stop(_store(request)), 202)
    except CycleConflict as exc:
        return ok({"detail": str(exc)}, 409)
