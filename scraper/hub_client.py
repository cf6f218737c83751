"""Requests to a Hugging Face Hub endpoint, for the scrapers (scraper.huggingface lists and reads models,
scraper.hub_datasets resolves dataset repos).

Hub etiquette: every request goes through :class:`HubClient`, which waits as long as a 429's
``RateLimit``/``Retry-After`` headers say (pausing all workers), retries 5xx answers, timeouts and
network errors with capped exponential backoff (:class:`RetryPolicy`), and turns an endpoint that cannot
be reached into :class:`HubUnreachable`. ``huggingface_hub.list_models`` retries on its own (5 times,
1-8 s, Retry-After + 1 s), but neither its retries nor its page size can be set and a failed page cannot be
resumed, so the listing follows the Hub's ``Link`` pages itself with the client's session, headers
(``HF_TOKEN``) and error mapping; ``model_info`` (which does not retry) goes through the same policy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from typing import Any, Callable, Iterator

import httpx2
from huggingface_hub import HfApi, constants, get_session, hf_hub_url
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, parse_ratelimit_headers

#: what a model listing asks the Hub for, besides the id
LIST_FIELDS = ("sha", "lastModified", "pipeline_tag", "library_name", "tags", "gated", "private")
RETRY_STATUS = (408, 500, 502, 503, 504)
RETRY_EXCEPTIONS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)


class HubUnreachable(RuntimeError):
    """The Hub endpoint could not be connected to at all (DNS, refused, connect timeout)."""


class HubRequestFailed(RuntimeError):
    """A Hub request still failed after the retries (5xx, read timeouts, a too long rate limit)."""


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Waits grow ``base_wait * 2**attempt`` up to ``max_wait``; a 429 waits what the Hub
    asks, unless that is more than ``max_rate_limit_wait``. ``timeout`` is per request, in seconds."""

    max_retries: int = 5
    base_wait: float = 1.0
    max_wait: float = 60.0
    max_rate_limit_wait: float = 900.0
    timeout: float = 30.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_wait, self.base_wait * 2 ** attempt)


def error_line(exc: BaseException) -> str:
    """An exception as one line: its class and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def token_fingerprint(authorization: str | None) -> str | None:
    """A short sha256 of the token an ``Authorization`` header sends (never the token itself); None without one."""
    if not authorization:
        return None
    return hashlib.sha256(authorization.partition(" ")[2].encode()).hexdigest()[:16]


class HubClient:
    """Requests to one Hub endpoint with retries, rate-limit pauses shared by all threads, and clear errors."""

    def __init__(self, endpoint: str | None = None, token: str | None = None, retry: RetryPolicy | None = None,
                 log: Callable[[str], Any] = print) -> None:
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        self.token = token
        self.api = HfApi(endpoint=self.endpoint, token=token)
        self.headers = build_hf_headers(token=token, library_name="zooeval")
        self.token_fingerprint = token_fingerprint(self.headers.get("authorization"))  # of the token sent, if any
        self.retry = retry or RetryPolicy()
        self.log = log
        self._resume_at = 0.0  # time.monotonic() before which nobody sends a request (rate limited)
        self._unreachable: str | None = None
        self._lock = threading.Lock()

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` with the retry policy. 404s and other 4xx raise at once (huggingface_hub's errors)."""
        if self._unreachable is not None:  # another thread found the endpoint gone: do not wait for it again
            raise HubUnreachable(self._unreachable)
        failure = ""
        for attempt in range(self.retry.max_retries + 1):
            self._wait_for_rate_limit()
            try:
                return fn()
            except HfHubHTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status == 429:
                    pause = self._rate_limit_wait(exc.response.headers, attempt)
                    if pause > self.retry.max_rate_limit_wait:
                        raise HubRequestFailed(f"{what}: rate limited by {self.endpoint} for {pause:.0f} s, more than the "
                                               f"{self.retry.max_rate_limit_wait:.0f} s this sync waits; "
                                               "try later or set HF_TOKEN") from None
                    failure = "HTTP 429 (rate limited)"
                    if attempt < self.retry.max_retries:
                        self._pause_everyone(pause)
                        self.log(f"rate limited by {self.endpoint}: waiting {pause:.1f} s as the Hub asks ({what})")
                    continue
                if status not in RETRY_STATUS:
                    raise
                failure, pause = f"HTTP {status}", self.retry.backoff(attempt)
            except RETRY_EXCEPTIONS as exc:
                if isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout)) and attempt == self.retry.max_retries:
                    self._unreachable = (f"cannot reach the Hugging Face Hub at {self.endpoint} ({error_line(exc)}, "
                                         f"{attempt + 1} attempts); check the network, or set HF_ENDPOINT to a reachable mirror")
                    raise HubUnreachable(self._unreachable) from None
                failure, pause = error_line(exc), self.retry.backoff(attempt)
            if attempt < self.retry.max_retries:
                time.sleep(pause)
        raise HubRequestFailed(f"{what}: {failure} from {self.endpoint}, {self.retry.max_retries + 1} attempts")

    def _rate_limit_wait(self, headers: Any, attempt: int) -> float:
        info = parse_ratelimit_headers(headers)
        if info is not None and info.remaining == 0:
            return float(info.reset_in_seconds)
        retry_after = headers.get("Retry-After", "")
        return float(retry_after) if retry_after.strip().isdigit() else self.retry.backoff(attempt)

    def _pause_everyone(self, seconds: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def _wait_for_rate_limit(self) -> None:
        while (delay := self._resume_at - time.monotonic()) > 0:
            time.sleep(delay)

    def _get(self, url: str, params: dict[str, Any] | None = None) -> httpx2.Response:
        r = get_session().get(url, params=params, headers=self.headers, timeout=self.retry.timeout)
        hf_raise_for_status(r)
        info = parse_ratelimit_headers(r.headers)
        if info is not None and info.remaining == 0:  # the quota is spent: wait before the next request
            self._pause_everyone(info.reset_in_seconds)
        return r

    def list_pages(self, task: str, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """Pages of the models of ``task``, newest lastModified first, following the ``Link`` header."""
        url: str | None = f"{self.endpoint}/api/models"
        params: dict[str, Any] | None = {"pipeline_tag": task, "sort": "lastModified", "direction": -1,
                                         "limit": page_size, "expand": list(LIST_FIELDS)}
        page = 1
        while url:
            r = self.call(f"listing {task} page {page}", lambda u=url, p=params: self._get(u, p))
            yield r.json()
            url, params, page = r.links.get("next", {}).get("url"), None, page + 1

    def model_info(self, repo_id: str, revision: str | None) -> Any:
        return self.call(f"model_info {repo_id}", lambda: self.api.model_info(
            repo_id, revision=revision, files_metadata=True, timeout=self.retry.timeout))

    def read_text(self, repo_id: str, filename: str, revision: str | None) -> str | None:
        """A repo file's text, or None when the repo has no such file."""
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=self.endpoint)
        try:
            return self.call(f"{repo_id}/{filename}", lambda: self._get(url)).text
        except EntryNotFoundError:
            return None
