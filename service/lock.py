"""A cycle lock in MongoDB with an expiry, so two cycles never overlap and a crashed holder frees itself.

The lock is one document ``{_id: name, holder, host, pid, acquired_at, expires_at}`` in the ``locks``
collection. Acquiring is a single atomic upsert that only matches a free or expired lock (or one we
already hold); a held lock makes the upsert collide on ``_id`` and fail with a duplicate-key error.
While held, a heartbeat thread pushes ``expires_at`` forward every ``ttl / 3`` seconds. If the holder is
SIGKILLed the heartbeat stops and the lock expires after at most ``ttl`` seconds; a holder on the same
host whose process no longer exists is taken over at once.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import uuid
from typing import Any

from core.store import Store, utcnow

DEFAULT_TTL = 120.0

class LockHeld(Exception):
    """Another process holds the lock."""

    def __init__(self, name: str, holder: dict[str, Any]) -> None:
        self.holder = holder
        since = holder.get("acquired_at")
        expires = holder.get("expires_at")
        super().__init__(
            f"another cycle is running: lock {name!r} is held by pid {holder.get('pid')} on {holder.get('host')} "
            f"since {since:%Y-%m-%d %H:%M:%S} UTC (it expires at {expires:%H:%M:%S} UTC unless renewed)"
            if since and expires else f"lock {name!r} is held by another process"
        )

class CycleLock:
    """``with CycleLock(store):`` runs the body only while holding the lock; raises LockHeld otherwise."""

    def __init__(self, store: Store, name: str = "cycle", ttl: float = DEFAULT_TTL) -> None:
        self.store = store
        self.name = name
        self.ttl = ttl
        self.token = uuid.uuid4().hex
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _expiry(self) -> dt.datetime:
        return utcnow() + dt.timedelta(seconds=self.ttl)

    def _fields(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "acquired_at": utcnow(), "expires_at": self._expiry()}

    def acquire(self) -> None:
        if not self.store.lock_acquire(self.name, self.token, self._fields()):
            holder = self.store.lock_holder(self.name) or {}
            if not self._take_over_dead_holder(holder):
                raise LockHeld(self.name, holder) from None
        self.lost = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name=f"zooeval-lock-{self.name}", daemon=True)
        self._thread.start()

    def _take_over_dead_holder(self, holder: dict[str, Any]) -> bool:
        """A holder on this host whose process is gone (SIGKILL, power cut of the process) need not be
        waited out: take its lock over atomically, matching its token so only one taker wins."""
        if holder.get("host") != socket.gethostname() or not holder.get("pid") or _alive(holder["pid"]):
            return False
        return self.store.lock_take_over(self.name, holder.get("holder"), self.token,
                                         {**self._fields(), "took_over_from": holder.get("pid")})

    def _heartbeat(self) -> None:
        interval = max(self.ttl / 3.0, 0.05)
        while not self._stop.wait(interval):
            ours = self.store.lock_renew(self.name, self.token, self._expiry())
            if ours is None:
                continue  # the database is briefly unreachable: try again at the next beat
            if not ours:  # expired and taken by someone else
                self.lost = True
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.store.lock_release(self.name, self.token)

    def holder(self) -> dict[str, Any] | None:
        """The live holder, or None when the lock is free, expired, or held by a dead process on this host."""
        doc = self.store.lock_holder(self.name)
        if not doc or doc["expires_at"] <= utcnow():
            return None
        if doc.get("host") == socket.gethostname() and doc.get("pid") and not _alive(doc["pid"]):
            return None
        return doc

    def __enter__(self) -> "CycleLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

def wait_for_lock(lock: CycleLock, timeout: float, poll: float = 1.0) -> None:
    """Acquire, waiting up to ``timeout`` seconds for the current holder to finish."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock.acquire()
            return
        except LockHeld:
            if time.monotonic() >= deadline:
                raise
            time.sleep(poll)
