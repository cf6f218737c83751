"""Finished tasks' writes, stored together (issue 15: many small models).

A task that finishes leaves four writes: its prediction chunks, its inference record, its results and, when it had
failed before, the removal of that failure. Sent one task at a time they are four MongoDB round trips, one of them
waiting for durability: for a small model more than its whole evaluation costs besides loading it. A WriteBatch
holds them until the tasks it holds stand for WRITE_EVERY_S seconds of the cycle (or MAX_CHUNKS prediction chunks),
then stores them all with one round trip per kind of write (Store.save_tasks). A task slower than that is stored as
soon as it finishes, as before.

What this risks is bounded: a process killed outright loses at most the last WRITE_EVERY_S seconds of finished
work, never anything stored; the next cycle plans those tasks again. A stop, a crash that is an exception, and the
end of the cycle store what is held first (``Executor.run``). A write the server refuses is that task's stored
failure, as it was when each task was stored alone, and the other tasks' writes are stored; a batch the client
cannot even send (a document it cannot encode) is stored again one task at a time, so only the task at fault fails
(it keeps its predictions but none of its results; the next cycle re-scores them with no forward pass).

An operator who wants every finished task stored at once (no held work to lose to a SIGKILL) sets
ZOOEVAL_WRITE_EVERY_S=0; any other number of seconds sets how long finished work may be held.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from core.store import Store, database_unavailable
from pipeline.planner import PlannedTask


@dataclass
class HeldTask:
    """One task's writes, filled in as the task goes (a task that fails midway keeps what it got to)."""

    task: PlannedTask
    inference: tuple[dict[str, Any], list[dict[str, Any]]] | None = None  # (record, chunks), of task.inference_id
    results: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (result id, document)
    clear_failure: bool = False


WRITE_EVERY_ENV = "ZOOEVAL_WRITE_EVERY_S"


class WriteBatch:
    """Tasks' writes held and stored together; ``every_s=0`` stores each task as it finishes (one round trip per
    kind of write, the path of an isolated child or a Ray worker, whose process may be killed by a timeout)."""

    WRITE_EVERY_S = 1.0
    MAX_CHUNKS = 32  # prediction chunks held at most (a classification chunk holds 5,000 samples)

    @classmethod
    def every_s_setting(cls) -> float:
        """How long finished tasks may be held: ZOOEVAL_WRITE_EVERY_S when set (0: each stored as it finishes), else
        WRITE_EVERY_S. Raises ValueError naming the variable for a value that is not a number of seconds >= 0."""
        raw = os.environ.get(WRITE_EVERY_ENV, "").strip()
        if not raw:
            return cls.WRITE_EVERY_S
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0:  # (NaN too)
            raise ValueError(f"{WRITE_EVERY_ENV}={raw!r}: expected a number of seconds >= 0 (0 stores each finished "
                             f"task at once; unset: {cls.WRITE_EVERY_S:g})")
        return value

    def __init__(self, store: Store, db: Callable[..., Any], on_written: Callable[[int], None],
                 on_refused: Callable[[PlannedTask, BaseException], None], every_s: float | None = None) -> None:
        self.store, self.db = store, db
        self.on_written, self.on_refused = on_written, on_refused
        self.every_s = self.every_s_setting() if every_s is None else every_s
        self.held: list[HeldTask] = []
        self.chunks = 0
        self.since = time.monotonic()

    def hold(self, task: PlannedTask) -> HeldTask:
        """A task's writes, to be filled in and stored with the others."""
        held = HeldTask(task)
        self.held.append(held)
        return held

    def add_inference(self, held: HeldTask, doc: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
        held.inference = (doc, chunks)
        self.chunks += len(chunks)

    def due(self) -> bool:
        """Whether what is held stands for WRITE_EVERY_S seconds of work since the last store, or MAX_CHUNKS chunks."""
        return bool(self.held) and (time.monotonic() - self.since >= self.every_s or self.chunks >= self.MAX_CHUNKS)

    def flush(self) -> None:
        """Store what is held (retried through a short MongoDB outage; an outage that outlasts the retries raises,
        and the held writes are dropped: their tasks are planned again next cycle)."""
        held, self.held, self.chunks = self.held, [], 0
        self.since = time.monotonic()
        if not held:
            return
        try:
            self._store(held)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            for one in held:  # a batch the client could not send: each task alone, so only the one at fault fails
                try:
                    self._store([one])
                except Exception as single:
                    if database_unavailable(single):
                        raise
                    self.on_refused(one.task, single)

    def _store(self, held: list[HeldTask]) -> None:
        tasks = {h.task.inference_id: h.task for h in held}
        written, refused = self.db(
            self.store.save_tasks,
            [(h.task.inference_id, *h.inference) for h in held if h.inference is not None],
            [(h.task.inference_id, result_id, doc) for h in held for result_id, doc in h.results],
            [h.task.inference_id for h in held if h.clear_failure],
            what="storing finished tasks")
        self.on_written(len(written))
        for inference_id, error in refused.items():
            self.on_refused(tasks[inference_id], error)
