"""One evaluation cycle as the operator runs it: under the cycle lock, with a log file and a run record.

Used by ``zooeval run``, ``zooeval resume``, ``zooeval demo`` and the scheduler, so every entry point gets
the same guarantees: two cycles never overlap (service.lock), every run writes
``<ZOOEVAL_HOME>/logs/run-<UTC time>.log``, the options of the last cycle are kept so ``zooeval resume``
repeats them, a lost lock (expired while the database was unreachable, then taken by another
process) stops the cycle after the current batch, and the verdicts on the card claims of every model the
cycle wrote results for (or whose claims were never judged) are brought up to date (service.claims).
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.store import Store, utcnow
from service.claims import update_after_run
from service.lock import CycleLock, wait_for_lock

LAST_OPTIONS_ID = "last_run_options"


@dataclass
class CycleOptions:
    """What a cycle evaluates and how. Stored, so ``zooeval resume`` can repeat the last cycle."""

    batch_size: int = 32
    device: str | None = None
    modules: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    processors: list[str] = field(default_factory=list)  # extra processor specs (NAME[:VALUE])
    models: list[str] = field(default_factory=list)
    source: str | None = None
    task: str | None = None
    limit: int | None = None
    isolate: bool = False
    timeout: float = 1800.0
    memory_limit_mb: int | None = None
    max_attempts: int = 3
    scenarios: list[str] = field(default_factory=lambda: ["offline", "single-stream"])  # pipeline.executor.SCENARIOS
    executor: str = "local"  # "local", or "ray": the groups of a model's tasks as Ray tasks (pipeline.ray_executor)
    ray_address: str | None = None  # the Ray cluster to join (default RAY_ADDRESS, else a local Ray instance)
    full_plan: bool = False  # plan every candidate, ignoring the planning watermarks (pipeline.planner)

    def model_query(self) -> dict[str, Any]:
        import fnmatch

        q: dict[str, Any] = {}
        if self.models:
            q["$or"] = [{"name": {"$regex": fnmatch.translate(m)}} for m in self.models]
        if self.source:
            q["source"] = self.source
        if self.task:
            q["task"] = self.task
        return q


def save_options(store: Store, options: CycleOptions) -> None:
    store.save_control(LAST_OPTIONS_ID, asdict(options))


def load_options(store: Store) -> CycleOptions | None:
    doc = store.load_control(LAST_OPTIONS_ID)
    if doc is None:
        return None
    known = CycleOptions.__dataclass_fields__
    return CycleOptions(**{k: v for k, v in doc.items() if k in known})


class RunLog:
    """Echo to the terminal and append to the run's log file."""

    def __init__(self, home: Path, echo: Callable[[str], None]) -> None:
        logs = home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.path = logs / f"run-{stamp}-{os.getpid()}.log"
        self._file = open(self.path, "a", encoding="utf-8")
        self._echo = echo

    def __call__(self, message: str) -> None:
        self._echo(message)
        self._file.write(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} {message}\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def build_executor(store: Store, home: Path, options: CycleOptions, echo: Callable[[str], None], progress: bool):
    from pipeline.catalog import build_modules
    from pipeline.executor import Executor

    mods = build_modules(store.datasets(), include=options.modules or None, variants=options.variants or None,
                         processors=options.processors, warn=echo)
    common = dict(batch_size=options.batch_size, device=options.device, max_attempts=options.max_attempts,
                  progress=progress, echo=echo, isolate=options.isolate, task_timeout=options.timeout,
                  memory_limit_mb=options.memory_limit_mb, scenarios=tuple(options.scenarios))
    if options.executor == "ray":
        from pipeline.ray_executor import RayExecutor  # Ray is optional: imported only when asked for

        return RayExecutor(store, mods, home, ray_address=options.ray_address, **common)
    if options.executor != "local":
        raise ValueError(f"unknown executor {options.executor!r}: 'local' or 'ray'")
    return Executor(store, mods, home, **common)


def run_cycle(store: Store, home: Path, options: CycleOptions, echo: Callable[[str], None] = print,
              progress: bool = False, wait_lock: float = 0.0, lock_ttl: float | None = None):
    """Run one cycle under the lock. Raises service.lock.LockHeld when another cycle runs (after waiting
    up to ``wait_lock`` seconds). Returns the executor's RunSummary."""
    lock = CycleLock(store, ttl=lock_ttl) if lock_ttl else CycleLock(store)
    wait_for_lock(lock, wait_lock)
    since = utcnow()  # a stop requested from here on applies to this cycle
    log = RunLog(home, echo)
    try:
        save_options(store, options)
        log(f"cycle started (pid {os.getpid()}); log file {log.path}")
        ex = build_executor(store, home, options, log, progress)
        summary = ex.run(options.model_query(), options.limit, should_stop=lambda: lock.lost, stop_since=since,
                         full_plan=options.full_plan)
        if lock.lost:
            log("the cycle lock was lost (the database was unreachable longer than the lock's expiry); stopped")
        store.update_run(summary.run_id, log=str(log.path), options=asdict(options))
        log(
            f"run {summary.run_id}: {summary.inferences} inference tasks, {summary.rescored} re-scored from stored "
            f"predictions, {summary.results_written} results written, {len(summary.failures)} failures, "
            f"{summary.models_loaded} models loaded" + (" (stopped early)" if summary.stopped else "")
        )
        update_after_run(store, summary.run_id, log)  # verdicts on the card claims of what this run measured
        return summary
    finally:
        store.clear_stop()
        log.close()
        lock.release()
