"""Who may use the service: a bearer token for every API request, and the views open on a loopback address.

The token is ``ZOOEVAL_API_TOKEN`` when set, else the one in ``ZOOEVAL_HOME/api-token`` (generated on first
start, file mode 0600). It is compared in constant time (hmac.compare_digest); a missing or wrong token is a
401 that says only that a valid bearer token is needed.

Views: on a loopback address (127.0.0.1, ::1, localhost) they are open to the local user, and requests whose
Host header is not a loopback name are refused (a web page elsewhere cannot reach them by DNS rebinding).
Bound to any other address, views need the token too: as the bearer header or the session cookie that
``/login`` sets after checking it.
"""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

TOKEN_ENV = "ZOOEVAL_API_TOKEN"
TOKEN_FILE = "api-token"
SESSION_COOKIE = "zooeval_session"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
UNAUTHORIZED = "a valid bearer token is required (Authorization: Bearer <token>)"


def load_or_create_token(home: Path) -> tuple[str, str]:
    """The API token and where it comes from: ``ZOOEVAL_API_TOKEN``, or the token file under ``home``
    (created with mode 0600 when missing)."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        if len(env) < 16:
            raise ValueError(f"{TOKEN_ENV} is too short: use at least 16 characters")
        return env, f"the environment variable {TOKEN_ENV}"
    path = Path(home) / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
    token = path.read_text().strip()
    if len(token) < 16:
        raise ValueError(f"{path} holds no usable token (at least 16 characters); delete it to get a new one")
    return token, str(path)


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the service's."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    header = request.headers.get("authorization") or ""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def request_host(request: Request) -> str:
    """The Host header's name without the port."""
    host = (request.headers.get("host") or "").strip().lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


_BEARER = HTTPBearer(auto_error=False, description="the service's API token")


def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_BEARER)) -> None:
    """FastAPI dependency of every API route: 401 unless the bearer token is the service's."""
    given = credentials.credentials if credentials is not None and credentials.scheme.lower() == "bearer" else None
    if not token_matches(given, request.app.state.token):
        raise HTTPException(status_code=401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


def view_allowed(request: Request) -> bool:
    """Whether a view may be shown: open views need a loopback Host header; otherwise the token (header or
    session cookie)."""
    if request.app.state.open_views:
        return is_loopback(request_host(request))
    given = bearer(request) or request.cookies.get(SESSION_COOKIE)
    return token_matches(given, request.app.state.token)
