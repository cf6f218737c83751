"""What a running cycle tells the world: its counts (RunSummary), whether it was asked to stop (StopFlag),
the running task's progress (a progress bar, and the run record `zooeval status` reads)."""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from core.store import Store, database_unavailable
from pipeline.planner import Plan, PlannedTask

log = logging.getLogger("zooeval")


@dataclass
class RunSummary:
    run_id: str
    plan: Plan
    results_written: int = 0
    inferences: int = 0
    rescored: int = 0
    models_loaded: int = 0
    forward_samples: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False

    COUNTERS = ("results_written", "inferences", "rescored", "models_loaded", "forward_samples")

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.COUNTERS} | {"failures": len(self.failures)}

    def add(self, other: dict[str, Any]) -> None:
        for k in self.COUNTERS:
            setattr(self, k, getattr(self, k) + other.get(k, 0))
        self.failures.extend(other.get("failure_docs", []))


class StopFlag:
    """True once ``zooeval stop`` was requested (checked in the store at most once a second)."""

    def __init__(self, store: Store, extra: Callable[[], bool] | None = None, since: dt.datetime | None = None) -> None:
        self.store, self.extra, self.since, self._last, self._value = store, extra, since, 0.0, False

    def __call__(self) -> bool:
        if self._value or (self.extra and self.extra()):
            self._value = True
            return True
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._last = now
            try:
                self._value = self.store.stop_requested(self.since)
            except Exception as exc:  # MongoDB briefly unreachable: ask again next time
                if not database_unavailable(exc):
                    raise
        return self._value


def count_by(tasks: list[PlannedTask], key: Callable[[PlannedTask], str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for t in tasks:
        out[key(t).replace(".", "\uff0e")] += 1  # MongoDB keys may not contain dots
    return dict(out)


class Progress:
    """Sample progress of the running task: a progress bar, and the run record (for `zooeval status`): written
    when the task starts, then at most every WRITE_EVERY_S seconds, and at its end only when it ran that long
    (a short task's end is told by the next one's start and the run's counts: one write, not three)."""

    WRITE_EVERY_S = 2.0

    def __init__(self, store: Store, run_id: str, task: PlannedTask, total: int, bar) -> None:
        self.store, self.run_id, self.bar, self.done, self.total = store, run_id, bar, 0, total
        self.started = time.monotonic()
        self.last = self.started
        self.writes = 0
        self.current = {"model": task.model_key, "dataset": task.module.dataset, "split": task.module.split,
                        "variant": task.variant, "total": total}
        self._write()

    def _write(self) -> None:
        self.writes += 1
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        try:
            self.store.update_run(self.run_id, current={**self.current, "done": self.done, "rate": rate,
                                                        "eta_s": (self.total - self.done) / rate if rate else None})
        except Exception as exc:  # progress is best effort: never fail a task because MongoDB is restarting
            if not database_unavailable(exc):
                raise
            log.warning("could not record progress (%s)", type(exc).__name__)

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        if time.monotonic() - self.last >= self.WRITE_EVERY_S:
            self.last = time.monotonic()
            self._write()

    def close(self) -> None:
        self.bar.close()
        if self.writes > 1:  # it ran long enough to show intermediate progress: show it finished
            self._write()


class NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(enabled: bool, **kwargs):
    if not enabled:
        return NoBar()
    from tqdm import tqdm

    return tqdm(**kwargs)
