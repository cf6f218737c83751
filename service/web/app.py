"""The zooeval web service: the pages for people and the API for programs, in one FastAPI app
(``zooeval serve``). See service.web.auth for who may use what."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.store import Store
from core.store_views import ensure_view_indexes
from service.web import api, views
from service.web.auth import load_or_create_token
from service.web.models_view import INDEXED_METRICS, metric_path
from service.web.pages import PageNotFound
from service.web.render import STATIC, render

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # plotly.js injects its own styles; its WebGL traces compile code at run time
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-eval'; worker-src blob:; frame-ancestors 'none'",
}


def plotly_js() -> Path:
    """plotly.min.js of the installed plotly package (served locally, never from a CDN)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall plotly")
    return path


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_page(request: Request, status: int, message: str) -> Response:
    from service.web.views import LINKS

    html = render("error.html", {"title": f"Error {status}", "status": status, "message": message, "links": LINKS,
                                 "static": False, "nav": request.url.path})
    return HTMLResponse(html, status_code=status)


def _load_plugins() -> None:
    """Import what the pages use (task kinds, perturbations, processors, the claims' verdicts) now, not in the
    first request."""
    import service.claims  # noqa: F401
    from perturbations import variant_names
    from processors.base import PROCESSORS
    from tasks.base import TASKS

    list(TASKS), list(PROCESSORS), variant_names()


def create_app(store: Store, home: Path, token: str | None = None, open_views: bool = True,
               build_indexes: bool = True) -> FastAPI:
    """The app over ``store``. ``token``: the API token (default: service.web.auth.load_or_create_token under
    ``home``); ``open_views``: pages without the token (for a loopback bind only)."""
    app = FastAPI(title="zooeval", version="1", docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  description="The zooeval service API: models, results, diff against a baseline, statistics, export, "
                              "and evaluation cycles (start, progress, stop, resume). Every /api/v1 request needs "
                              "`Authorization: Bearer <token>` (ZOOEVAL_API_TOKEN, or ZOOEVAL_HOME/api-token).")
    app.state.store = store
    app.state.home = Path(home)
    app.state.token = token or load_or_create_token(Path(home))[0]
    app.state.open_views = open_views
    if build_indexes:
        ensure_view_indexes(store, [metric_path(m) for m in INDEXED_METRICS])
    _load_plugins()

    @app.exception_handler(views.ViewDenied)
    async def view_denied(request: Request, exc: views.ViewDenied) -> Response:
        if request.app.state.open_views:
            return _error_page(request, 403, "these pages are served only to the local host (open them at "
                                             "http://127.0.0.1:<port>/)")
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_api(request) or request.url.path == "/openapi.json":
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return _error_page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'body'))}: {e['msg']}" for e in exc.errors()]
        if _is_api(request):
            return JSONResponse({"detail": [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]},
                                status_code=422)
        return _error_page(request, 422, "; ".join(problems))

    @app.exception_handler(PageNotFound)
    async def not_found(request: Request, exc: PageNotFound) -> Response:
        return _error_page(request, 404, str(exc))

    @app.exception_handler(PyMongoError)
    async def database_down(request: Request, exc: PyMongoError) -> Response:
        message = f"the database cannot be reached: {type(exc).__name__}"
        if _is_api(request):
            return JSONResponse({"detail": message}, status_code=503)
        return _error_page(request, 503, message)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    plotly_path = plotly_js()

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly() -> FileResponse:
        return FileResponse(plotly_path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    app.include_router(api.router)
    app.include_router(views.login_router)
    app.include_router(views.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


__all__ = ["create_app", "plotly_js"]
