"""Starting, resuming and stopping cycles from the API.

A cycle started here is a child process running ``zooeval run`` (or ``resume``) with the same home, MongoDB
and database as the service, so it holds the cycle lock, writes its log and run record exactly as from the
command line, and outlives the web server. The request returns once the child holds the lock (its first log
line), or with the reason it could not: another cycle holds the lock (409, naming the holder), or the child
exited at once. A cycle whose run has ended but which still holds the lock (it is recording the run's log, options
and claim verdicts) is waited for, up to FINISHING_WAIT seconds: a client that saw the run end may start the next
one at once."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.store import Store
from service.lock import CycleLock, LockHeld

STARTED_MARK = "cycle started (pid"
START_TIMEOUT = 60.0
#: how long a start waits for a cycle whose run has ended to release the lock (see the module's docstring)
FINISHING_WAIT = 30.0


class RunOptions(BaseModel):
    """The options of `zooeval run` (see its --help); every field is checked strictly (no "1" for 1)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    batch_size: int = Field(32, ge=1, le=4096)
    device: str | None = Field(None, max_length=40, pattern=r"^(cpu|mps|cuda(:\d+)?)$")
    modules: list[str] = Field(default_factory=list, max_length=100)
    variants: list[str] = Field(default_factory=list, max_length=100)
    processors: list[str] = Field(default_factory=list, max_length=50)
    models: list[str] = Field(default_factory=list, max_length=1000)
    source: str | None = Field(None, max_length=100)
    task: str | None = Field(None, max_length=100)
    limit: int | None = Field(None, ge=1)
    isolate: bool = False
    timeout: float = Field(1800.0, gt=0, le=7 * 86400, allow_inf_nan=False)
    memory_limit_mb: int | None = Field(None, ge=64)
    max_attempts: int = Field(3, ge=1, le=1000)
    scenarios: list[Literal["offline", "single-stream"]] = Field(["offline", "single-stream"], min_length=1,
                                                                 max_length=2)
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(None, max_length=400, pattern=r"^[A-Za-z0-9_.:/\[\]-]+$")

    @field_validator("modules", "variants", "processors", "models")
    @classmethod
    def _plain_strings(cls, values: list[str]) -> list[str]:
        for v in values:
            if not v or len(v) > 400 or any(ord(ch) < 32 for ch in v):
                raise ValueError(f"{v!r} is not a usable name (1 to 400 printable characters)")
        return values

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, values: list[str]) -> list[str]:
        from perturbations import get_perturbation, variant_names

        for v in values:
            try:
                get_perturbation(v)
            except KeyError:
                raise ValueError(f"unknown variant {v!r}; known: {', '.join(variant_names())}") from None
        return values

    @field_validator("processors")
    @classmethod
    def _known_processors(cls, values: list[str]) -> list[str]:
        from processors.base import ProcessorSpec

        for spec in values:
            try:
                ProcessorSpec.parse(spec).identity()
            except Exception as exc:  # the spec names a processor or parameters it does not take
                raise ValueError(f"processor {spec!r}: {exc}") from None
        return values

    def cli_args(self) -> list[str]:
        """The same options as `zooeval run` arguments."""
        args = ["--batch-size", str(self.batch_size), "--timeout", str(self.timeout), "--max-attempts",
                str(self.max_attempts), "--isolate" if self.isolate else "--no-isolate", "--scenarios",
                ",".join(self.scenarios), "--executor", self.executor]
        for flag, values in (("--module", self.modules), ("--variant", self.variants), ("--processor", self.processors),
                             ("--model", self.models)):
            for v in values:
                args += [flag, v]
        for flag, value in (("--device", self.device), ("--source", self.source), ("--task", self.task),
                            ("--limit", self.limit), ("--memory-limit", self.memory_limit_mb),
                            ("--ray-address", self.ray_address)):
            if value is not None:
                args += [flag, str(value)]
        return args


class CycleConflict(Exception):
    """Another cycle holds the lock (or none runs, for stop)."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class CycleStartFailed(Exception):
    """The child exited before it held the lock, for a reason other than the lock."""


def public_holder(holder: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the API says about a lock holder (its process and times; never the lock token)."""
    if holder is None:
        return None
    return {k: holder.get(k) for k in ("pid", "host", "acquired_at", "expires_at")}


def _conflict(holder: dict[str, Any]) -> CycleConflict:
    return CycleConflict(str(LockHeld("cycle", holder)), public_holder(holder))


def finishing(store: Store, holder: dict[str, Any]) -> bool:
    """Whether the lock's ``holder`` has ended its run: the last run record started after the holder took the lock
    (both times are the cycle process's clock) and is no longer running. A holder that has not recorded its run
    yet, or whose run is running, is not finishing."""
    run, acquired = store.last_run(), holder.get("acquired_at")
    return bool(run and acquired and run.get("status") != "running" and run.get("started_at")
                and run["started_at"] >= acquired)


def wait_while_finishing(store: Store, holder: dict[str, Any] | None, timeout: float = FINISHING_WAIT,
                         poll: float = 0.1) -> dict[str, Any] | None:
    """The lock's holder after waiting, up to ``timeout`` seconds, while it is ``finishing``: None once it let the
    lock go; at once a holder that is not finishing."""
    lock, deadline = CycleLock(store), time.monotonic() + timeout
    while holder is not None and finishing(store, holder) and time.monotonic() < deadline:
        time.sleep(poll)
        holder = lock.holder()
    return holder


def start_cycle(store: Store, home: Path, command: str, args: list[str], timeout: float = START_TIMEOUT) -> dict[str, Any]:
    """Start `zooeval <command> <args>` as a child process; return once it holds the cycle lock. Raises
    CycleConflict when another cycle holds it, CycleStartFailed when the child stops at once."""
    holder = wait_while_finishing(store, CycleLock(store).holder())
    if holder is not None:
        raise _conflict(holder)
    logs = Path(home) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    out_path = logs / f"api-{command}-{stamp}.out"
    env = {**os.environ, "ZOOEVAL_HOME": str(home), "ZOOEVAL_MONGO_URI": store.uri, "ZOOEVAL_DB": store.db_name}
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", command, *args, "--no-progress"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    threading.Thread(target=proc.wait, name=f"zooeval-api-{command}-{proc.pid}", daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out_path.read_text(encoding="utf-8", errors="replace")
        if STARTED_MARK in text:
            return {"status": "started", "pid": proc.pid, "output": str(out_path)}
        if proc.poll() is not None:
            holder = CycleLock(store).holder()
            if "another cycle is running" in text and holder is not None:
                raise _conflict(holder)
            lines = [line for line in text.splitlines() if line.strip()]
            raise CycleStartFailed(f"`zooeval {command}` exited with status {proc.returncode} before it started: "
                                   + (lines[-1] if lines else "no output") + f" (output in {out_path})")
        time.sleep(0.1)
    return {"status": "starting", "pid": proc.pid, "output": str(out_path)}


def request_stop(store: Store) -> dict[str, Any]:
    """Ask the running cycle to stop after its current batch (as `zooeval stop`); CycleConflict when none runs."""
    holder = CycleLock(store).holder()
    if holder is None:
        raise CycleConflict("no cycle is running")
    store.request_stop()
    return {"status": "stop requested", "holder": public_holder(holder)}
