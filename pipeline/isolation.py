"""Isolation: each model evaluated in a child process that is killed when a task exceeds its time limit or
the process its memory limit, so a hang, a segfault or a memory hog costs a stored failure, not the cycle.

The child comes from a fork server (a fresh interpreter that imported torch and transformers once, so each
child starts in milliseconds) and opens its own MongoDB client; the planned tasks are pickled to it, so
their modules' classes must be importable. Over a pipe it reports each finished task (which restarts the
parent's task timer), its messages and, at the end, its counts.
"""
from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

from core.store import Store
from pipeline.planner import Plan, PlannedTask
from pipeline.progress import RunSummary, StopFlag
from pipeline.retry import with_retry


class IsolationError(Exception):
    """The child process evaluating a model hung, ran out of memory or died."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


# imported once by the fork server, so that every isolated child starts with them (a module that fails to
# import, e.g. with another transformers version, is skipped by multiprocessing)
ISOLATION_PRELOAD = [
    "torch", "transformers", "transformers.modeling_utils", "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto", "transformers.models.auto.image_processing_auto",
    "pipeline.executor", "modules.hf", "modules.detection", "processors.classification", "processors.detection",
    "tasks.classification", "tasks.detection", "core.coco", "timm", "peft", "sentence_transformers",
    "pipeline.forkserver_preload",
]


def isolation_context():
    """Where isolated children come from: a fork server on Linux, fresh interpreters elsewhere.

    Not plain fork: a child forked from a process that has already run a multi-threaded torch operation
    hangs in its first one (the OpenMP thread pool does not survive fork), and the parent's MongoClient is
    not fork-safe. The fork server is a fresh interpreter that imports torch and transformers once (so each
    child starts in milliseconds) and never runs a model itself."""
    if sys.platform.startswith("linux"):
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(ISOLATION_PRELOAD)
        return ctx
    return mp.get_context("spawn")


class ParentLink:
    """The isolated child's side of the pipe: finished tasks (the parent restarts its timer) and messages."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def update(self, n: int = 1) -> None:
        self.conn.send(("tasks", n))

    def echo(self, message: str) -> None:
        self.conn.send(("echo", message))

    def close(self) -> None:
        pass


def child_main(conn, executor_cls, uri, db_name, home, batch_size, device, model_key, tasks, run_id, max_attempts,
               stop_since, scenarios) -> None:
    """Entry point of the isolated evaluation process: load one model and run its tasks with an executor of
    ``executor_cls`` (the parent's class, pickled by reference) and its own MongoDB client, reporting to the
    parent through ``conn``."""
    store = None
    out: dict[str, Any]
    try:
        link = ParentLink(conn)
        store = Store(uri, db_name, init_schema=False)
        ex = executor_cls(store, [tasks[0].module], home, batch_size=batch_size, device=device, max_attempts=max_attempts,
                          progress=False, echo=link.echo, scenarios=scenarios)
        ex.stop_since = stop_since
        summary = RunSummary(run_id, Plan([]))
        stopped = False
        try:
            ex.evaluate_model(model_key, tasks, device, summary, link, StopFlag(store, since=stop_since))
        except KeyboardInterrupt:
            stopped = True
        out = summary.counts()
        out["failure_docs"] = [{k: v for k, v in f.items() if k != "traceback"} for f in summary.failures]
        out["stopped"] = stopped
    except BaseException as exc:  # reported to the parent, which records the unfinished tasks as failed
        traceback.print_exc()
        out = {"crashed": f"{type(exc).__name__}: {exc}"[:2000]}
    try:
        conn.send(("done", out))
        conn.close()
    finally:
        if store is not None:
            store.close()


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    import psutil

    try:
        p = psutil.Process(pid)
        return (p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))) / 2**20
    except psutil.Error:
        return 0.0


class Evaluator(Protocol):
    """What evaluate_isolated needs of the executor that calls it (pipeline.executor.Executor)."""

    store: Store
    home: Path
    batch_size: int
    max_attempts: int
    task_timeout: float
    memory_limit_mb: int | None
    scenarios: tuple[str, ...]
    stop_since: dt.datetime | None

    def echo(self, message: str) -> None: ...

    def fail(self, task: PlannedTask, exc: BaseException, summary: RunSummary, echo: bool = True) -> None: ...


def evaluate_isolated(executor: Evaluator, model_key: str, tasks: list[PlannedTask], device: str, summary: RunSummary,
                      bar) -> None:
    """Run one model's tasks in a child process with a time limit per task and a memory limit.

    The child comes from a fork server (see _isolation_context) and opens its own MongoDB client; the
    tasks are pickled to it, so their modules' classes must be importable. Over a pipe it reports each
    finished task, which restarts the task timer (the first task's time includes loading the model),
    its messages, and its summary at the end. A child that hangs, exceeds the memory limit or dies is killed and every task it
    did not finish is recorded as failed (timeout, out_of_memory, inference_error)."""
    ctx = isolation_context()
    receiver, sender = ctx.Pipe(duplex=False)
    args = (sender, type(executor), executor.store.uri, executor.store.db_name, str(executor.home), executor.batch_size,
            device, model_key, tasks, summary.run_id, executor.max_attempts, executor.stop_since, executor.scenarios)
    proc = ctx.Process(target=child_main, args=args, name=f"zooeval-eval-{model_key}")
    proc.start()
    sender.close()
    deadline = time.monotonic() + executor.task_timeout
    result, problem, reported = None, None, 0
    try:
        while result is None and problem is None:
            if receiver.poll(0.1):
                try:
                    kind, payload = receiver.recv()
                except EOFError:  # the child exited without a summary
                    break
                if kind == "tasks":
                    reported += payload
                    bar.update(payload)
                    deadline = time.monotonic() + executor.task_timeout
                elif kind == "echo":
                    executor.echo(payload)
                else:
                    result = payload
            elif not proc.is_alive():
                if not receiver.poll(0.1):  # nothing left in the pipe
                    break
            elif time.monotonic() > deadline:
                problem = IsolationError(
                    "timeout", f"a task of {model_key} exceeded the time limit of {executor.task_timeout:g} s "
                    f"(--timeout); the evaluating process was killed")
            elif executor.memory_limit_mb and rss_mb(proc.pid) > executor.memory_limit_mb:
                problem = IsolationError(
                    "out_of_memory", f"evaluating {model_key} used more than the memory limit of "
                    f"{executor.memory_limit_mb} MB (--memory-limit); the evaluating process was killed")
    finally:
        if proc.is_alive() and result is None:
            proc.kill()
        proc.join(30)
        receiver.close()
    if result is not None and result.get("crashed"):
        problem = IsolationError("inference_error", f"evaluating {model_key} failed in the child process: {result['crashed']}")
        result = None
    if result is not None:
        summary.add(result)
        summary.stopped = summary.stopped or result.get("stopped", False)
    else:
        if problem is None:
            code = proc.exitcode
            how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            problem = IsolationError("inference_error", f"the process evaluating {model_key} died ({how})")
        done = with_retry(executor.store.existing_ids, "inferences", [t.inference_id for t in tasks],
                            what="checking finished tasks")
        for task in tasks:
            if task.inference_id not in done:
                executor.fail(task, problem, summary)
    bar.update(max(0, len(tasks) - reported))

