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
    """A run's counts, written to its record and summed over Ray workers (``add``)."""

    run_id: str
    plan: Plan
    results_written: int = 0  # results the store took (one already stored is not counted)
    inferences: int = 0  # forward passes completed, including a task whose writes the store then refused
    rescored: int = 0  # tasks scored from stored predictions whose writes the store took
    models_loaded: int = 0
    forward_samples: int = 0  # samples through the forward passes counted in ``inferences``
    failures: list[dict[str, Any]] = field(default_factory=list)  # the stored failures' documents
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


class RunRecord:
    """The running cycle's record that `zooeval status` reads: the running task's progress and (when this record
    keeps them) the run's counts, written together at most every WRITE_EVERY_S seconds, whoever asks (a task
    starting, a batch, a model finished). With many small models one write per model, or per task start, was a
    MongoDB round trip per model that no reader looks at that often; ``Store.finish_run`` writes the last counts."""

    WRITE_EVERY_S = 2.0

    def __init__(self, store: Store, run_id: str, counts: Callable[[], dict[str, int]] | None = None) -> None:
        self.store, self.run_id, self.counts = store, run_id, counts
        self.last: float | None = None
        self.has_current = False  # a task's progress written yet (the first task's start always is)

    def due(self) -> bool:
        """Whether WRITE_EVERY_S seconds passed since the last write (or nothing was written yet)."""
        return self.last is None or time.monotonic() - self.last >= self.WRITE_EVERY_S

    def write(self, current: dict[str, Any] | None = None, best_effort: bool = True) -> None:
        """Write the running task's progress (``current``, when given) and the run's counts now. ``best_effort``:
        a write that meets a MongoDB outage is skipped (the next one carries the same fields); else it raises."""
        fields: dict[str, Any] = {} if current is None else {"current": current}
        self.has_current = self.has_current or current is not None
        if self.counts is not None:
            fields["counts"] = self.counts()
        if not fields:
            return
        self.last = time.monotonic()
        try:
            self.store.update_run(self.run_id, **fields)
        except Exception as exc:  # progress is best effort: never fail a task because MongoDB is restarting
            if not (best_effort and database_unavailable(exc)):
                raise
            log.warning("could not record progress (%s)", type(exc).__name__)


class Progress:
    """Sample progress of the running task: a progress bar, and the run record (for `zooeval status`, through the
    run's RunRecord): written when the task starts or after a batch once the record's last write is
    RunRecord.WRITE_EVERY_S old (and when the run's first task starts), and at the task's end only when it showed
    progress mid-task (a short task's start and end are told by the next write, not by two round trips of its
    own)."""

    def __init__(self, record: RunRecord, task: PlannedTask, total: int, bar) -> None:
        self.record, self.bar, self.done, self.total = record, bar, 0, total
        self.started = time.monotonic()
        self.shown_midway = False
        self.current = {"model": task.model_key, "dataset": task.module.dataset, "split": task.module.split,
                        "variant": task.variant, "total": total}
        if record.due() or not record.has_current:
            self._write()

    def _write(self) -> None:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.record.write({**self.current, "done": self.done, "rate": rate,
                           "eta_s": (self.total - self.done) / rate if rate else None})

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        if self.record.due():
            self.shown_midway = True
            self._write()

    def close(self) -> None:
        self.bar.close()
        if self.shown_midway:  # it showed intermediate progress: show it finished
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
