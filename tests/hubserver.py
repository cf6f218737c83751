"""A local stand-in for the Hugging Face Hub: enough of its HTTP API for the unmodified client.

It serves model repos from a folder (``ROOT/<org>/<name>/`` with config.json, weights and a README.md
card) and, for scale tests, a synthetic zoo of N models generated on the fly. Unmodified
``huggingface_hub`` (``list_models``, ``model_info``, ``hf_hub_download``, ``snapshot_download``) and
``transformers`` ``from_pretrained`` work against it. Routes (what the client sends, read from its source):

* ``GET /api/models``: ``search``, ``author``, ``filter`` (tags, all must match), ``pipeline_tag``,
  ``sort`` (every key orders by lastModified, then id), ``direction`` (-1, the Hub's default, or 1),
  ``limit`` (the page size, capped at ``max_page_size`` like the Hub's 1,000), ``full``, ``cardData``,
  ``config``, ``expand``/``expand[]``. Keyset paging: ``Link: <...&cursor=...>; rel="next"``.
* ``GET /api/models/{id}`` and ``/api/models/{id}/revision/{rev}`` (``blobs=true`` adds file sizes).
* ``GET /api/models/{id}/tree/{rev}[/{path}]`` (``recursive``).
* ``HEAD``/``GET /{id}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` (the git blob sha1),
  ``Content-Length`` and byte ranges.
* ``HEAD``/``GET /spaces/{id}/resolve/{rev}/{path}``: the files of the Spaces under ``ROOT/spaces/<org>/<name>/``
  (as for models: ``main`` or the space's sha, else RevisionNotFound), which is where ``evaluate.load("<name>")``
  finds a metric script: ``{HF_ENDPOINT}/spaces/evaluate-metric/<name>/resolve/v<evaluate version>/<name>.py``,
  then ``.../resolve/main/<name>.py`` (a HEAD for the ETag, then a GET). ``spaces`` is a reserved name on the
  Hub, so ``ROOT/spaces`` is never a model org.
* Dataset repos under ``ROOT/datasets/<org>/<name>/`` (parquet files such as ``data/train-00000-of-00001.parquet``
  and a README.md whose YAML lists ``configs`` and ``dataset_info``), with the routes ``datasets.load_dataset``
  and ``HfFileSystem`` use: ``GET /api/datasets/{id}`` and ``.../revision/{rev}`` (dataset_info),
  ``GET /api/datasets/{id}/tree/{rev}[/{path}]``, ``POST /api/datasets/{id}/paths-info/{rev}`` (form fields
  ``paths``) and ``HEAD``/``GET /datasets/{id}/resolve/{rev}/{path}`` (``bytes=N-`` and ``bytes=N-M`` ranges).
  Gating, privacy and revisions work as for models; ``datasets`` is a reserved name, never a model org.
* Errors carry ``X-Error-Code`` and ``X-Error-Message`` as on the Hub: ``RevisionNotFound`` and
  ``EntryNotFound`` (404), ``RepoNotFound`` (401 without a token, 404 with one), ``GatedRepo`` (401/403).

A repo's revision (``sha``) is a hash of its files' paths and bytes; ``lastModified`` is the newest file
mtime unless ``.hubmeta.json`` in the repo folder says ``{"lastModified": "<ISO 8601>"}``. Only the
current revision exists: any other sha is RevisionNotFound, as on the Hub after a force-push.

Gated and private repos: ``.hubmeta.json`` may also say ``"gated": "auto" | "manual"``, ``"private": true``
and ``"tokens": ["hf_...", ...]`` (the tokens with access, sent as ``Authorization: Bearer``; any other
token is a valid user without access). As on the Hub (and as ``hf_raise_for_status`` maps it):

* a gated repo is listed (``gated`` says how), its model_info and tree are public, but a file download
  without access is ``401`` (no token) or ``403`` (a token without access), ``X-Error-Code: GatedRepo``,
  so the client raises ``GatedRepoError``;
* a private repo without access is exactly a missing one: not listed, and model_info, tree and resolve
  answer ``RepoNotFound``, 401 without a token and 404 with one (``RepositoryNotFoundError``).

With a token that has access, both work like public repos. ``list_models(gated=...)`` filters on gating.

Faults are injected per test with :meth:`HubServer.inject` (429 with Retry-After and RateLimit headers,
5xx, stalls), optionally limited to a path prefix and a listing page.

In tests: ``with HubServer(root) as hub: HfApi(endpoint=hub.url)``. File downloads through
``hf_hub_download``/``snapshot_download`` take ``endpoint=`` too (or go through ``HfApi(endpoint=...)``);
``transformers`` has no such argument and uses ``huggingface_hub.constants.ENDPOINT``, which is read from
``HF_ENDPOINT`` when huggingface_hub is imported, so run it in a child process with ``HF_ENDPOINT`` set.

From a shell: ``python -m tests.hubserver ROOT [--synthetic N] [--port P]``, then
``HF_ENDPOINT=http://127.0.0.1:P zooeval scrape --source huggingface``.
"""
from __future__ import annotations

import base64
import bisect
import dataclasses
import datetime as dt
import hashlib
import heapq
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from scraper.repo_metadata import find_references, parse_card
from tasks.base import task_for_architectures

META_FILE = ".hubmeta.json"
LISTING_BASIC = ("id", "_id", "modelId", "likes", "downloads", "trendingScore", "private", "pipeline_tag",
                 "library_name", "tags", "createdAt")
LISTING_FULL = LISTING_BASIC + ("author", "sha", "lastModified", "gated", "disabled", "siblings")
SortKey = tuple[int, str]  # (lastModified in ms since the epoch, repo id)


def iso_ms(ms: int) -> str:
    """The Hub's timestamp format: ``2024-05-01T12:00:00.000Z``."""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("1", "true", "yes")


def _object_id(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()[:24]


class RepoMetaError(ValueError):
    """A repo folder's ``.hubmeta.json`` is not what the stand-in understands (answered as a 500 naming it)."""


class HubError(Exception):
    """An error answer: HTTP status, ``X-Error-Code`` and message."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


# -- repos from folders ------------------------------------------------------------------------------
@dataclasses.dataclass
class RepoFile:
    """One file of a repo: size, git blob sha1 (the ETag) and where it lies."""

    path: str
    size: int
    oid: str
    local: Path


@dataclasses.dataclass
class FolderRepo:
    """The current state of one repo folder, as the Hub would describe it."""

    id: str
    sha: str
    last_modified_ms: int
    files: dict[str, RepoFile]
    card: dict[str, Any] | None  # None: no README.md or front matter that does not parse
    config: dict[str, Any] | None  # None: no config.json or not a JSON object
    pipeline_tag: str | None
    library_name: str | None
    tags: list[str]
    gated: str | bool = False  # False, "auto" or "manual"
    private: bool = False
    tokens: frozenset[str] = frozenset()  # the tokens with access to a gated or private repo

    @property
    def key(self) -> SortKey:
        return (self.last_modified_ms, self.id)

    def has_access(self, token: str | None) -> bool:
        """Whether ``token`` may see a private repo and download a gated one's files."""
        return token is not None and token in self.tokens

    def visible_to(self, token: str | None) -> bool:
        """Whether the repo exists for ``token`` (a private repo does not, without access)."""
        return not self.private or self.has_access(token)

    def info(self, blobs: bool = False) -> dict[str, Any]:
        """Every field model_info and list_models can ask for."""
        siblings = []
        for f in sorted(self.files.values(), key=lambda f: f.path):
            s: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                s.update(size=f.size, blobId=f.oid)
            siblings.append(s)
        doc: dict[str, Any] = {
            "id": self.id, "_id": _object_id(self.id), "modelId": self.id, "author": self.id.split("/")[0],
            "sha": self.sha, "lastModified": iso_ms(self.last_modified_ms), "createdAt": iso_ms(self.last_modified_ms),
            "private": self.private, "gated": self.gated, "disabled": False, "downloads": 0, "likes": 0,
            "trendingScore": 0, "tags": self.tags, "pipeline_tag": self.pipeline_tag, "library_name": self.library_name,
            "siblings": siblings, "spaces": [], "usedStorage": sum(f.size for f in self.files.values()),
        }
        if self.card is not None:
            doc["cardData"] = self.card
        if self.config is not None:
            doc["config"] = {k: self.config[k] for k in ("architectures", "model_type", "auto_map") if k in self.config}
        return doc

    def dataset_info(self, blobs: bool = False) -> dict[str, Any]:
        """What dataset_info asks for a dataset repo (``ROOT/datasets/<org>/<name>/``): as info, without the model
        fields."""
        doc = {k: v for k, v in self.info(blobs).items()
               if k not in ("modelId", "pipeline_tag", "library_name", "config", "spaces", "trendingScore")}
        doc["description"] = (self.card or {}).get("pretty_name")
        return doc


def _git_blob_sha1(path: Path, size: int) -> str:
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class FolderZoo:
    """Repos under ``root/<org>/<name>/``, re-read whenever a file's size or mtime changes. Folders named in
    ``reserved`` (e.g. ``spaces``, which holds the Spaces) are not orgs."""

    def __init__(self, root: Path, reserved: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.reserved = frozenset(reserved)
        self._cache: dict[str, tuple[tuple, FolderRepo]] = {}
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(f"{org.name}/{repo.name}" for org in self.root.iterdir() if org.is_dir() and org.name not in self.reserved
                      for repo in org.iterdir() if repo.is_dir() and not repo.name.startswith("."))

    def get(self, repo_id: str) -> FolderRepo | None:
        parts = repo_id.split("/")
        if len(parts) != 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts) or parts[0] in self.reserved:
            return None
        folder = self.root / parts[0] / parts[1]
        if not folder.is_dir():
            return None
        paths = sorted(p for p in folder.rglob("*")
                       if p.is_file() and not any(x.startswith(".") for x in p.relative_to(folder).parts))
        meta_path = folder / META_FILE
        signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                          for p in paths + ([meta_path] if meta_path.exists() else []))
        with self._lock:
            cached = self._cache.get(repo_id)
        if cached and cached[0] == signature:
            return cached[1]
        repo = self._read(repo_id, folder, paths)
        with self._lock:
            self._cache[repo_id] = (signature, repo)
        return repo

    def all(self) -> list[FolderRepo]:
        return [r for r in (self.get(i) for i in self.ids()) if r is not None]

    @staticmethod
    def _read(repo_id: str, folder: Path, paths: list[Path]) -> FolderRepo:
        files: dict[str, RepoFile] = {}
        revision = hashlib.sha256()
        for p in paths:
            rel = p.relative_to(folder).as_posix()
            size = p.stat().st_size
            oid = _git_blob_sha1(p, size)
            files[rel] = RepoFile(rel, size, oid, p)
            revision.update(f"{rel}\0{oid}\0".encode())
        meta = _read_meta(folder / META_FILE)
        if meta.get("lastModified"):
            last_ms = int(dt.datetime.fromisoformat(meta["lastModified"].replace("Z", "+00:00")).timestamp() * 1000)
        else:
            last_ms = max((p.stat().st_mtime_ns // 1_000_000 for p in paths), default=0)
        config = _read_json(folder / "config.json") if "config.json" in files else None
        if not isinstance(config, dict):
            config = None
        card, text = None, ""
        if "README.md" in files:
            text = (folder / "README.md").read_text(errors="replace")
            meta_card, _, notes = parse_card(text)
            card = None if notes else meta_card
        card_meta = card or {}
        # Like the Hub: the card's pipeline_tag, else one inferred from the transformers architecture.
        pipeline_tag = card_meta.get("pipeline_tag")
        archs = (config or {}).get("architectures") or []
        pipeline_tag = pipeline_tag or task_for_architectures(archs)
        library = card_meta.get("library_name") or (
            "transformers" if config and ("architectures" in config or "model_type" in config) else None)
        tags = [str(t) for t in (card_meta.get("tags") or [])]
        tags += [t for t in (library, pipeline_tag) if t]
        tags += [f"dataset:{d}" for d in as_list(card_meta.get("datasets"))]
        tags += [f"license:{lic}" for lic in as_list(card_meta.get("license"))]
        tags += [r["name"] for r in find_references(text) if r["type"] == "arxiv"]
        if any(name.endswith(".safetensors") for name in files):
            tags.append("safetensors")
        return FolderRepo(repo_id, revision.hexdigest()[:40], last_ms, files, card, config, pipeline_tag, library,
                          list(dict.fromkeys(tags)), gated=meta.get("gated", False), private=meta.get("private", False),
                          tokens=frozenset(meta.get("tokens", [])))


def _read_meta(path: Path) -> dict[str, Any]:
    """A repo's ``.hubmeta.json`` (``{}`` when there is none), checked: a typo must not make a private repo public."""
    if not path.exists():
        return {}
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise RepoMetaError(f"{path}: not a JSON object")
    if meta.get("gated", False) not in (False, "auto", "manual"):
        raise RepoMetaError(f'{path}: "gated" must be "auto", "manual" or false, not {meta["gated"]!r}')
    if not isinstance(meta.get("private", False), bool):
        raise RepoMetaError(f'{path}: "private" must be true or false, not {meta["private"]!r}')
    tokens = meta.get("tokens", [])
    if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
        raise RepoMetaError(f'{path}: "tokens" must be a list of token strings, not {tokens!r}')
    return meta


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


# -- the synthetic zoo ---------------------------------------------------------------------------------
class SyntheticZoo:
    """N models made up on the fly: ``synthetic/model-0000000`` ... with a sha, a lastModified and a task.

    Model i has task ``TASKS[i % 2]`` and lastModified ``start + i`` seconds, so the listing by lastModified
    is model N-1 first. :meth:`change` gives models a new sha and a lastModified newer than everything
    else; :meth:`remove` deletes them. Nothing is stored per model except what was changed or removed.
    """

    TASKS = ("text-classification", "image-classification")
    PREFIX = "synthetic/model-"

    def __init__(self, n: int, start: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)) -> None:
        self.n = n
        self.t0_ms = int(start.timestamp() * 1000)
        self._clock_ms = self.t0_ms + n * 1000
        self._version: dict[int, int] = {}
        self._changed_ms: dict[int, int] = {}
        self._recent: list[tuple[int, int]] = []  # (lastModified ms, i), ascending; stale when re-changed
        self._recent_ms: list[int] = []
        self.removed: set[int] = set()
        self._lock = threading.Lock()

    def model_id(self, i: int) -> str:
        return f"{self.PREFIX}{i:07d}"

    def index(self, repo_id: str) -> int | None:
        if not repo_id.startswith(self.PREFIX) or not repo_id[len(self.PREFIX):].isdigit():
            return None
        i = int(repo_id[len(self.PREFIX):])
        return i if 0 <= i < self.n and i not in self.removed else None

    def sha(self, i: int) -> str:
        return hashlib.sha1(f"{i}:{self._version.get(i, 0)}".encode()).hexdigest()

    def last_modified_ms(self, i: int) -> int:
        return self._changed_ms.get(i, self.t0_ms + i * 1000)

    def _pick(self, fraction: float | None, count: int | None, seed: int) -> list[int]:
        live = self.n - len(self.removed)
        k = count if count is not None else round(live * (fraction or 0.0))
        rng = random.Random(seed)
        picked: set[int] = set()
        while len(picked) < min(k, live):
            i = rng.randrange(self.n)
            if i not in self.removed:
                picked.add(i)
        return sorted(picked)

    def change(self, fraction: float | None = None, count: int | None = None, seed: int = 0) -> list[str]:
        """Give ``count`` (or ``fraction`` of the live) models a new revision, newest lastModified. Returns their ids."""
        with self._lock:
            picked = self._pick(fraction, count, seed)
            for i in picked:
                self._clock_ms += 1000
                self._version[i] = self._version.get(i, 0) + 1
                self._changed_ms[i] = self._clock_ms
                self._recent.append((self._clock_ms, i))
                self._recent_ms.append(self._clock_ms)
        return [self.model_id(i) for i in picked]

    def remove(self, fraction: float | None = None, count: int | None = None, seed: int = 1) -> list[str]:
        """Delete ``count`` (or ``fraction`` of the live) models. Returns their ids."""
        with self._lock:
            picked = self._pick(fraction, count, seed)
            self.removed.update(picked)
        return [self.model_id(i) for i in picked]

    def info(self, i: int, blobs: bool = False) -> dict[str, Any]:
        repo_id, task = self.model_id(i), self.TASKS[i % 2]
        siblings = [{"rfilename": "config.json"}, {"rfilename": "model.safetensors"}]
        if blobs:
            siblings[0].update(size=512, blobId=self.sha(i))
            siblings[1].update(size=1 << 20, blobId=self.sha(i))
        return {
            "id": repo_id, "_id": f"{i:024x}", "modelId": repo_id, "author": "synthetic", "sha": self.sha(i),
            "lastModified": iso_ms(self.last_modified_ms(i)), "createdAt": iso_ms(self.t0_ms + i * 1000),
            "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0, "trendingScore": 0,
            "tags": ["transformers", task], "pipeline_tag": task, "library_name": "transformers", "siblings": siblings,
        }

    def iter_desc(self, after: SortKey | None, task: str | None) -> Iterator[tuple[SortKey, int]]:
        """(sort key, index) of the live models, newest first, strictly after ``after``, of ``task`` if given."""
        if task is not None and task not in self.TASKS:
            return
        want = None if task is None else self.TASKS.index(task)
        recent, recent_ms = self._recent, self._recent_ms
        base_top = self.t0_ms + (self.n - 1) * 1000
        in_recent = after is None or after[0] > base_top
        j = len(recent) if after is None else bisect.bisect_left(recent_ms, after[0]) if in_recent else 0
        for k in range(j - 1, -1, -1):
            ms, i = recent[k]
            if self._changed_ms.get(i) == ms and i not in self.removed and (want is None or i % 2 == want):
                yield (ms, self.model_id(i)), i
        top = self.n - 1 if in_recent else (after[0] - self.t0_ms) // 1000 - 1
        step = 1
        if want is not None:
            step = 2
            if top % 2 != want:
                top -= 1
        for i in range(top, -1, -step):
            if i not in self._changed_ms and i not in self.removed:
                yield (self.t0_ms + i * 1000, self.model_id(i)), i


# -- fault injection -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Fault:
    """What to do to the next matching requests instead of (or before) answering them.

    ``status`` answers with that HTTP status (429 adds ``Retry-After`` and ``RateLimit`` headers saying
    ``retry_after`` seconds); ``status=None`` with ``delay`` stalls then answers normally. ``times=None``
    applies to every matching request. ``path`` is a path prefix; ``page`` (1-based) limits it to one page
    of a listing."""

    status: int | None = 500
    times: int | None = 1
    delay: float = 0.0
    retry_after: int = 1
    path: str = "/"
    page: int | None = None
    hits: int = 0

    def matches(self, path: str, page: int | None) -> bool:
        return (path.startswith(self.path) and (self.page is None or self.page == page)
                and (self.times is None or self.hits < self.times))


@dataclasses.dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, list[str]]
    page: int | None
    status: int = 0


# -- the HTTP server -----------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.hub.handle(self, "GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.hub.handle(self, "HEAD")

    def do_POST(self) -> None:  # noqa: N802 (the paths-info route)
        self.server.hub.handle(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: tests read HubServer.requests
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: "HubServer"


class HubServer:
    """The stand-in Hub on ``127.0.0.1``: ``with HubServer(root) as hub: ... hub.url ...``.

    ``root``: folder of repos (``<org>/<name>/``), Spaces (``spaces/<org>/<name>/``) and dataset repos
    (``datasets/<org>/<name>/``, served as ``hub.datasets``); ``synthetic``: also
    serve that many synthetic models (``hub.synthetic``); ``page_size``: listing page size when the client sends
    no ``limit``; ``max_page_size``: the cap on ``limit`` (the Hub's is 1,000)."""

    def __init__(self, root: str | Path | None = None, *, synthetic: int = 0, page_size: int = 1000,
                 max_page_size: int = 1000, port: int = 0) -> None:
        self.folders = FolderZoo(Path(root), reserved=("spaces", "datasets")) if root is not None else None
        self.spaces = FolderZoo(Path(root) / "spaces") if root is not None else None
        self.datasets = FolderZoo(Path(root) / "datasets") if root is not None else None
        self.synthetic = SyntheticZoo(synthetic) if synthetic else None
        self.page_size, self.max_page_size = page_size, max_page_size
        self.requests: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.hub = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- test controls --------------------------------------------------------------------------
    def inject(self, fault: Fault) -> Fault:
        """Apply ``fault`` to the next matching requests (see :class:`Fault`); returns it (``.hits`` counts)."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def listing_requests(self) -> list[RequestRecord]:
        """The ``GET /api/models`` requests answered so far (one per page, retries included)."""
        with self._lock:
            return [r for r in self.requests if r.path == "/api/models"]

    # -- request handling ---------------------------------------------------------------------------
    def handle(self, req: _Handler, method: str) -> None:
        parts = urlsplit(req.path)
        path, query = unquote(parts.path), parse_qs(parts.query, keep_blank_values=True)
        if method == "POST":  # read the form body first, so a fault answer leaves the connection usable
            body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
            for key, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                query.setdefault(key, []).extend(values)
        page = self._page_of(path, query)
        record = RequestRecord(method, path, query, page)
        with self._lock:
            self.requests.append(record)
            fault = next((f for f in self._faults if f.matches(path, page)), None)
            if fault is not None:
                fault.hits += 1
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        try:
            if fault is not None and fault.status is not None:
                raise self._fault_error(fault)
            status, headers, body = self._route(req, method, path, query, _bearer_token(req))
        except RepoMetaError as exc:
            status, headers, body = self._error(HubError(500, None, str(exc)))
        except HubError as exc:
            status, headers, body = self._error(exc)
        record.status = status
        self._send(req, method, status, headers, body)

    @staticmethod
    def _error(exc: HubError) -> tuple[int, dict[str, str], bytes]:
        headers = {**exc.headers, "X-Error-Message": exc.message, "Content-Type": "application/json"}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        return exc.status, headers, json.dumps({"error": exc.message}).encode()

    @staticmethod
    def _fault_error(fault: Fault) -> HubError:
        if fault.status == 429:
            return HubError(429, None, "You have been rate-limited; you can retry this action later.", {
                "Retry-After": str(fault.retry_after), "RateLimit": f'"api";r=0;t={fault.retry_after}',
                "RateLimit-Policy": '"fixed window";"api";q=500;w=300'})
        return HubError(fault.status or 500, None, f"injected fault: HTTP {fault.status}")

    @staticmethod
    def _page_of(path: str, query: dict[str, list[str]]) -> int | None:
        if path != "/api/models":
            return None
        cursor = query.get("cursor")
        return _decode_cursor(cursor[-1])[1] if cursor else 1

    def _send(self, req: _Handler, method: str, status: int, headers: dict[str, str],
              body: bytes | tuple[Path, int, int]) -> None:
        req.send_response(status)
        length = body[2] if isinstance(body, tuple) else len(body)
        for k, v in headers.items():
            req.send_header(k, v)
        req.send_header("Content-Length", str(length))
        req.end_headers()
        if method == "HEAD":
            return
        if isinstance(body, tuple):
            path, start, n = body
            with open(path, "rb") as fh:
                fh.seek(start)
                while n > 0:
                    block = fh.read(min(n, 1 << 20))
                    if not block:
                        break
                    req.wfile.write(block)
                    n -= len(block)
        else:
            req.wfile.write(body)

    def _route(self, req: _Handler, method: str, path: str, query: dict[str, list[str]], token: str | None):
        if path.startswith("/api/datasets/"):
            return self._route_dataset_api(method, path, query, token)
        if method == "POST":
            raise HubError(405, None, "method not allowed")
        if path == "/api/models":
            if method != "GET":
                raise HubError(405, None, "method not allowed")
            return self._list(req, query, token)
        if path.startswith("/api/models/"):
            parts = path[len("/api/models/"):].split("/")
            repo_id, rest = "/".join(parts[:2]), parts[2:]
            if not rest:
                return self._json(self._info(repo_id, "main", query, token))
            if rest[0] == "revision" and len(rest) == 2:
                return self._json(self._info(repo_id, rest[1], query, token))
            if rest[0] == "tree" and len(rest) >= 2:
                return self._json(self._tree(repo_id, rest[1], "/".join(rest[2:]), _truthy(query.get("recursive")), token))
            raise HubError(404, None, f"no route for {path}")
        parts = path.lstrip("/").split("/")
        if parts[0] == "datasets" and len(parts) >= 6 and parts[3] == "resolve":
            return self._resolve(req, "/".join(parts[1:3]), parts[4], "/".join(parts[5:]), token, kind="dataset")
        if parts[0] == "spaces" and len(parts) >= 6 and parts[3] == "resolve":
            return self._resolve_space(req, "/".join(parts[1:3]), parts[4], "/".join(parts[5:]), token)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(req, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), token)
        raise HubError(404, None, f"no route for {path}")

    def _route_dataset_api(self, method: str, path: str, query: dict[str, list[str]], token: str | None):
        """``/api/datasets/{id}``, ``.../revision/{rev}``, ``.../tree/{rev}[/{path}]`` and ``POST .../paths-info/{rev}``
        (form fields ``paths``, repeated, and ``expand``): what ``datasets.load_dataset`` and ``HfFileSystem`` ask."""
        parts = path[len("/api/datasets/"):].split("/")
        repo_id, rest = "/".join(parts[:2]), parts[2:]
        if method == "POST":
            if len(rest) == 2 and rest[0] == "paths-info":
                return self._json(self._paths_info(repo_id, rest[1], query.get("paths") or [], token))
            raise HubError(405, None, "method not allowed")
        if not rest:
            return self._json(self._info(repo_id, "main", query, token, kind="dataset"))
        if rest[0] == "revision" and len(rest) == 2:
            return self._json(self._info(repo_id, rest[1], query, token, kind="dataset"))
        if rest[0] == "tree" and len(rest) >= 2:
            return self._json(self._tree(repo_id, rest[1], "/".join(rest[2:]), _truthy(query.get("recursive")), token,
                                         kind="dataset"))
        raise HubError(404, None, f"no route for {path}")

    def _paths_info(self, repo_id: str, revision: str, paths: list[str], token: str | None) -> list[dict[str, Any]]:
        """The entries (file or directory) of the dataset repo at ``paths``; paths that do not exist are left out."""
        entries = {e["path"]: e for e in self._tree(repo_id, revision, "", True, token, kind="dataset")}
        return [entries[p.strip("/")] for p in paths if p.strip("/") in entries]

    @staticmethod
    def _json(data: Any, headers: dict[str, str] | None = None):
        return 200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data, separators=(",", ":")).encode()

    # -- repos ------------------------------------------------------------------------------------
    def _repo(self, repo_id: str, revision: str, token: str | None,
              kind: str = "model") -> tuple[dict[str, Any], FolderRepo | None]:
        """(info with sizes, the folder repo if any) of the ``kind`` (model or dataset) repo_id at revision as
        ``token`` sees it; raises RepoNotFound (also for a private repo without access, as the Hub does) or
        RevisionNotFound."""
        zoo = self.datasets if kind == "dataset" else self.folders
        repo = zoo.get(repo_id) if zoo else None
        if repo is not None and repo.visible_to(token):
            info, sha = (repo.dataset_info(blobs=True) if kind == "dataset" else repo.info(blobs=True)), repo.sha
        elif kind == "model" and repo is None and self.synthetic is not None and (i := self.synthetic.index(repo_id)) is not None:
            info, sha = self.synthetic.info(i, blobs=True), self.synthetic.sha(i)
        else:  # the Hub answers 401 to an anonymous request, 404 to an authenticated one
            raise HubError(401 if token is None else 404, "RepoNotFound", "Repository not found")
        if revision not in ("main", sha):
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return info, repo

    def _info(self, repo_id: str, revision: str, query: dict[str, list[str]], token: str | None,
              kind: str = "model") -> dict[str, Any]:
        info, _ = self._repo(repo_id, revision, token, kind)
        if not _truthy(query.get("blobs")):
            info["siblings"] = [{"rfilename": s["rfilename"]} for s in info["siblings"]]
        expand = query.get("expand") or query.get("expand[]")
        if expand:
            info = {k: v for k, v in info.items() if k in ("id", "_id") or k in expand}
        return info

    def _tree(self, repo_id: str, revision: str, folder: str, recursive: bool, token: str | None,
              kind: str = "model") -> list[dict[str, Any]]:
        info, _ = self._repo(repo_id, revision, token, kind)
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for s in info["siblings"]:
            name = s["rfilename"]
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):].split("/")
            if len(rest) == 1 or recursive:
                entries[name] = {"type": "file", "oid": s["blobId"], "size": s["size"], "path": name}
            for depth in range(1, len(rest) if recursive else min(len(rest), 2)):
                d = prefix + "/".join(rest[:depth])
                entries.setdefault(d, {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
        if prefix and not entries:
            raise HubError(404, "EntryNotFound", f"{folder} does not exist on {revision}")
        return [entries[k] for k in sorted(entries)]

    def _resolve(self, req: _Handler, repo_id: str, revision: str, filename: str, token: str | None,
                 kind: str = "model"):
        info, repo = self._repo(repo_id, revision, token, kind)
        if repo is not None and repo.gated and not repo.has_access(token):  # the Hub's answers, word for word
            page = f"{self.url}/{'datasets/' if kind == 'dataset' else ''}{repo_id}"
            if token is None:
                raise HubError(401, "GatedRepo", f"Access to {kind} {repo_id} is restricted. You must have access to it "
                               "and be authenticated to access it. Please log in.")
            raise HubError(403, "GatedRepo", f"Access to {kind} {repo_id} is restricted and you are not in the authorized "
                           f"list. Visit {page} to ask for access.")
        if repo is None or filename not in repo.files:
            raise HubError(404, "EntryNotFound", f"{filename} does not exist on {revision}")
        return self._file(req, repo.files[filename], info["sha"])

    def _resolve_space(self, req: _Handler, space_id: str, revision: str, filename: str, token: str | None):
        """A file of a Space (``ROOT/spaces/<org>/<name>/``); a private Space without access is a missing one."""
        space = self.spaces.get(space_id) if self.spaces else None
        if space is None or not space.visible_to(token):
            raise HubError(401 if token is None else 404, "RepoNotFound", "Repository not found")
        if revision not in ("main", space.sha):
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if filename not in space.files:
            raise HubError(404, "EntryNotFound", f"{filename} does not exist on {revision}")
        return self._file(req, space.files[filename], space.sha)

    @staticmethod
    def _file(req: _Handler, f: RepoFile, commit: str):
        """A file answer: its commit, ETag (git blob sha1) and bytes, from the requested ``Range`` start."""
        headers = {"X-Repo-Commit": commit, "ETag": f'"{f.oid}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        start, end, status = 0, f.size - 1, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", req.headers.get("Range") or "")
        if match and int(match.group(1)) < f.size:  # ``bytes=N-`` (resumed downloads) or ``bytes=N-M`` (HfFileSystem)
            start = int(match.group(1))
            end = min(int(match.group(2)), f.size - 1) if match.group(2) else f.size - 1
            if (start, end) != (0, f.size - 1):
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        return status, headers, (f.local, start, end - start + 1)

    # -- listing ----------------------------------------------------------------------------------
    def _list(self, req: _Handler, query: dict[str, list[str]], token: str | None):
        direction = int((query.get("direction") or ["-1"])[-1])
        size = min(int((query.get("limit") or [str(self.page_size)])[-1]), self.max_page_size)
        if size < 1 or direction not in (1, -1):
            raise HubError(400, None, "limit must be >= 1 and direction -1 or 1")
        after, page = _decode_cursor(query["cursor"][-1]) if query.get("cursor") else (None, 1)
        task = (query.get("pipeline_tag") or [None])[-1]
        matches = self._filters(query)
        items: list[tuple[SortKey, Callable[[], dict[str, Any]]]] = []
        more = False
        for key, render in self._ordered(after, task, direction, token):
            if not matches(key[1], render):
                continue
            if len(items) == size:
                more = True
                break
            items.append((key, render))
        fields = self._fields(query)
        body = [{k: v for k, v in render().items() if k in fields} for _, render in items]
        headers = {}
        if more:
            params = [(k, v) for k, vs in query.items() if k != "cursor" for v in vs]
            params.append(("cursor", _encode_cursor(items[-1][0], page + 1)))
            host = req.headers.get("Host") or self.url.split("//", 1)[1]
            headers["Link"] = f'<http://{host}/api/models?{urlencode(params)}>; rel="next"'
        return self._json(body, headers)

    @staticmethod
    def _fields(query: dict[str, list[str]]) -> set[str]:
        expand = query.get("expand") or query.get("expand[]")
        if expand:
            return {"id", "_id", *expand}
        fields = set(LISTING_FULL if _truthy(query.get("full")) else LISTING_BASIC)
        if _truthy(query.get("cardData")):
            fields.add("cardData")
        if _truthy(query.get("config")):
            fields.add("config")
        return fields

    @staticmethod
    def _filters(query: dict[str, list[str]]) -> Callable[[str, Callable[[], dict[str, Any]]], bool]:
        search = (query.get("search") or [""])[-1].lower()
        author = (query.get("author") or [None])[-1]
        tags = set(query.get("filter") or [])
        gated = query.get("gated")

        def matches(repo_id: str, render: Callable[[], dict[str, Any]]) -> bool:
            if search and search not in repo_id.lower():
                return False
            if author and repo_id.split("/")[0] != author:
                return False
            if gated and bool(render()["gated"]) != _truthy(gated):
                return False
            return not tags or tags <= set(render()["tags"]) | {repo_id}

        return matches

    def _ordered(self, after: SortKey | None, task: str | None, direction: int,
                 token: str | None) -> Iterable[tuple[SortKey, Callable[[], dict[str, Any]]]]:
        """(key, render) of every repo of ``task`` that ``token`` can see, after the cursor, in listing order."""
        streams: list[Iterable[tuple[SortKey, Callable[[], dict[str, Any]]]]] = []
        if self.folders is not None:
            repos = sorted((r for r in self.folders.all() if (task is None or r.pipeline_tag == task) and r.visible_to(token)),
                           key=lambda r: r.key, reverse=direction == -1)
            if after is not None:
                repos = [r for r in repos if (r.key < after if direction == -1 else r.key > after)]
            streams.append(((r.key, r.info) for r in repos))
        if self.synthetic is not None:
            if direction == 1:
                raise HubError(400, None, "the synthetic zoo lists newest first only (direction=-1)")
            zoo = self.synthetic
            streams.append(((key, lambda i=i: zoo.info(i)) for key, i in zoo.iter_desc(after, task)))
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=lambda item: item[0], reverse=direction == -1)


def _bearer_token(req: _Handler) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _encode_cursor(key: SortKey, page: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([key[0], key[1], page]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[SortKey, int]:
    try:
        ms, repo_id, page = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return (int(ms), str(repo_id)), int(page)
    except (ValueError, TypeError) as exc:
        raise HubError(400, None, f"bad cursor: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    """Serve a folder of repos (and/or a synthetic zoo) until interrupted."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.hubserver", description=main.__doc__)
    ap.add_argument("root", nargs="?", help="folder of <org>/<name>/ model repos")
    ap.add_argument("--synthetic", type=int, default=0, help="also serve this many synthetic models")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-page-size", type=int, default=1000)
    args = ap.parse_args(argv)
    hub = HubServer(args.root, synthetic=args.synthetic, port=args.port, max_page_size=args.max_page_size).start()
    print(f"serving on {hub.url} (set HF_ENDPOINT={hub.url})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
