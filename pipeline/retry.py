"""Back-off, as small wrappers (timm's ``_try_run`` style): store calls retried while MongoDB is briefly
unreachable, failed tasks retried after a doubling delay, out of memory retried with half the batch; and the
failure class a task's exception is stored under."""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Callable

from core.data import DataError
from core.labels import LabelMappingError
from core.store import database_unavailable

log = logging.getLogger("zooeval")

DB_RETRY_SECONDS = 120.0  # how long a store call is retried while MongoDB is unreachable (the lock's expiry)
FAILURE_BACKOFF = dt.timedelta(hours=1)  # before the first retry; doubled after every further failure
MAX_FAILURE_BACKOFF = dt.timedelta(days=1)


def failure_backoff(attempts: int) -> dt.timedelta:
    """How long a task that has failed ``attempts`` times waits before it is tried again: 1 h, 2 h, 4 h, ...
    at most a day (a nightly cycle retries a task at most once a night after the first few)."""
    return min(FAILURE_BACKOFF * 2 ** max(0, attempts - 1), MAX_FAILURE_BACKOFF)


def with_retry(fn: Callable[..., Any], *args: Any, what: str = "", echo: Callable[[str], None] | None = None,
               deadline_s: float = DB_RETRY_SECONDS, **kwargs: Any) -> Any:
    """Call a store method, retrying with backoff while MongoDB is unreachable (restarted, stepping down).

    Only idempotent calls are wrapped: every write has a deterministic _id, results are insert-once."""
    deadline = time.monotonic() + deadline_s
    delay, warned = 0.25, False
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not database_unavailable(exc) or time.monotonic() + delay > deadline:
                raise
            if not warned:
                log.warning("MongoDB unavailable during %s (%s); retrying for up to %.0f s", what or fn.__name__,
                            type(exc).__name__, deadline_s)
                if echo:
                    echo(f"MongoDB unavailable during {what or fn.__name__} ({type(exc).__name__}); retrying")
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, (MemoryError, oom)) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def free_memory(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def halving_batch(run: Callable[[int], Any], batch_size: int, on_retry: Callable[[int, str], None]) -> tuple[Any, int]:
    """``run(batch_size)``, retried with half the batch size (down to 1) while it runs out of memory.
    Returns (its result, the number of retries); ``on_retry(new batch size, the error)`` is told each time."""
    retries = 0
    while True:
        try:
            return run(batch_size), retries
        except Exception as exc:
            if not is_out_of_memory(exc) or batch_size <= 1:
                raise
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        batch_size = max(1, batch_size // 2)
        retries += 1
        on_retry(batch_size, error)


def probe_batch(run_once: Callable[[int], Any], start: int, limit: int, on_oom: Callable[[int], None]) -> int:
    """The batch size for a task on an accelerator, from a quick probe: ``run_once(n)`` (one forward pass of
    ``n`` inputs) at ``start``, doubled while it fits and stays within ``limit`` (the inputs there are to
    probe with); when ``start`` itself runs out of memory, halved until it fits (1 at least: a model that does
    not fit one input is left to the run, which records out_of_memory). ``on_oom(n)`` is told of each size that
    did not fit (free the memory there). A batch of longer inputs later in the task may still not fit: the
    run's own halving (halving_batch) catches it."""
    size = max(1, min(start, limit))
    shrunk = False
    while True:  # down from start until it fits
        try:
            run_once(size)
            break
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            on_oom(size)
            if size == 1:
                return 1
            size, shrunk = size // 2, True
    while not shrunk and size * 2 <= limit:  # up from start while it fits
        try:
            run_once(size * 2)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            on_oom(size * 2)
            break
        size *= 2
    return size


def classify_failure(exc: BaseException) -> str:
    """The failure class a task's exception is stored under (its own ``error_class`` when it has one)."""
    if isinstance(exc, LabelMappingError):
        return "unknown_labels"
    if isinstance(exc, DataError):
        return "data_error"
    if is_out_of_memory(exc):
        return "out_of_memory"
    if isinstance(exc, (ImportError, AttributeError)) and "transformers" in str(exc):
        return "incompatible_library"
    return getattr(exc, "error_class", "inference_error")
