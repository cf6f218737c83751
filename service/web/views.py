"""The pages of the running service (server-rendered HTML), the media they show, and /login. Not part of the
OpenAPI document: the API is /api/v1."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from service.web import media, pages
from service.web.auth import SESSION_COOKIE, token_matches, view_allowed
from service.web.links import ServerLinks
from service.web.models_view import NAME_PATTERN, BadCursor, ModelFilters
from service.web.render import render

LINKS = ServerLinks()


class ViewDenied(Exception):
    """A view requested without the right to see it (see service.web.auth.view_allowed)."""


def require_view(request: Request) -> None:
    if not view_allowed(request):
        raise ViewDenied()


router = APIRouter(include_in_schema=False, dependencies=[Depends(require_view)])
login_router = APIRouter(include_in_schema=False)


def page(request: Request, template: str, context: dict, status: int = 200) -> HTMLResponse:
    return HTMLResponse(render(template, {**context, "links": LINKS, "static": False, "nav": request.url.path}),
                        status_code=status)


def _store(request: Request):
    return request.app.state.store


@router.get("/")
def home(request: Request) -> HTMLResponse:
    return page(request, "home.html", pages.home_page(_store(request), LINKS))


@router.get("/models")
def models(request: Request, f: Annotated[ModelFilters, Query()]) -> HTMLResponse:
    try:
        return page(request, "models.html", pages.models_table(_store(request), f, LINKS))
    except BadCursor as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/models.csv")
def models_csv(request: Request, f: Annotated[ModelFilters, Query()]) -> Response:
    from service.web.api import export_response

    return export_response(_store(request), f, "csv")


@router.get("/models.json")
def models_json(request: Request, f: Annotated[ModelFilters, Query()]) -> Response:
    from service.web.api import export_response

    return export_response(_store(request), f, "json")


@router.get("/model/{key:path}")
def model(request: Request, key: str, q: Annotated[pages.ModelPageQuery, Query()]) -> HTMLResponse:
    return page(request, "model.html", pages.model_page(_store(request), request.app.state.home, key, q, LINKS))


@router.get("/variants/{key:path}")
def variants(request: Request, key: str, q: Annotated[pages.VariantsQuery, Query()]) -> HTMLResponse:
    return page(request, "variants.html", pages.variants_page(_store(request), key, q, LINKS))


@router.get("/compare")
def compare(request: Request, q: Annotated[pages.CompareQuery, Query()]) -> HTMLResponse:
    return page(request, "compare.html", pages.compare_page(_store(request), q, LINKS))


@router.get("/scatter")
def scatter(request: Request, q: Annotated[pages.ScatterQuery, Query()]) -> HTMLResponse:
    try:
        context = pages.scatter_page(_store(request), q, LINKS)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return page(request, "scatter.html", context)


@router.get("/datasets")
def datasets(request: Request) -> HTMLResponse:
    return page(request, "datasets.html", pages.datasets_page(_store(request), LINKS))


@router.get("/dataset/{name:path}")
def dataset(request: Request, name: str) -> HTMLResponse:
    return page(request, "dataset.html", pages.dataset_page(_store(request), name, LINKS))


@router.get("/runs")
def runs(request: Request) -> HTMLResponse:
    return page(request, "runs.html", pages.runs_page(_store(request), LINKS))


@router.get("/run/{run_id}")
def run(request: Request, run_id: str) -> HTMLResponse:
    return page(request, "run.html", pages.run_page(_store(request), run_id, LINKS))


# -- media ---------------------------------------------------------------------------------------------------------
class SampleQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    result: str = Field(max_length=200)
    sample: str = Field(max_length=400)


@router.get("/media/sample")
def sample_image(request: Request, q: Annotated[SampleQuery, Query()]) -> FileResponse:
    """The image of one sample of a result (from the folder the result was computed on)."""
    from core.store_views import result_by_id

    store = _store(request)
    result = result_by_id(store, q.result)
    dataset = store.datasets().get(result["dataset"]) if result else None
    if result is None or dataset is None:
        raise HTTPException(404, "no such result")
    folder, _ = media.sample_folder(dataset, result, request.app.state.home)
    row = media.split_rows(folder, result["split"]).get(q.sample) if folder else None
    path = media.safe_file(folder, str(row["file"])) if row and row.get("file") else None
    if path is None:
        raise HTTPException(404, f"no image for sample {q.sample!r}")
    return FileResponse(path, media_type=media.IMAGE_TYPES[path.suffix.lower()], headers={"Cache-Control": "max-age=3600"})


class ExampleQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(max_length=200, pattern=NAME_PATTERN)
    path: str = Field(max_length=1000)


@router.get("/media/example")
def example_image(request: Request, q: Annotated[ExampleQuery, Query()]) -> FileResponse:
    """An image a dataset lists among its examples."""
    store = _store(request)
    dataset = store.datasets().get(q.dataset)
    listed = dataset is not None and any(e.get("example") == q.path for e in store.dataset_examples(q.dataset))
    from pathlib import Path

    path = media.safe_file(Path(dataset["path"]), q.path) if listed and dataset.get("path") else None
    if path is None:
        raise HTTPException(404, "no such example image")
    return FileResponse(path, media_type=media.IMAGE_TYPES[path.suffix.lower()], headers={"Cache-Control": "max-age=3600"})


# -- login (only when views need the token) -----------------------------------------------------------------------
@login_router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return page(request, "login.html", {"title": "Sign in", "error": None})


@login_router.post("/login")
async def login(request: Request) -> Response:
    """Check the token of the form (urlencoded) and set the session cookie."""
    from urllib.parse import parse_qs

    body = (await request.body())[:2000].decode("utf-8", errors="replace")
    token = (parse_qs(body).get("token") or [""])[0]
    if not token_matches(token, request.app.state.token):
        return page(request, "login.html", {"title": "Sign in", "error": "that is not the service's token"}, 401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response
