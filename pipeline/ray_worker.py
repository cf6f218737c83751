"""What a Ray worker runs for one (model, module) group of planned tasks (submitted by pipeline.ray_executor).

It opens its own Store on the driver's MongoDB and evaluates the group with the local Executor's own code
(``Executor.evaluate_group``: in this process, or in an isolated child with ``--isolate``), so predictions,
results and failures are written straight to MongoDB under their deterministic ids. A group that Ray runs
again after a lost worker or node finds the tasks the lost attempt finished (their inference records) and only
re-scores them from their stored predictions (results are insert-once), so nothing is done or stored twice.
This file does not import Ray: the driver wraps ``evaluate_group`` in a Ray task.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.envinfo import choose_device
from core.store import Store
from pipeline.planner import Plan, PlannedTask
from pipeline.progress import NoBar, RunSummary, StopFlag
from pipeline.retry import with_retry


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker of a cycle needs to know: where the store is, the cycle's options and identity."""

    uri: str
    db_name: str
    home: str
    run_id: str
    stop_since: dt.datetime | None
    batch_size: int
    device: str | None
    max_attempts: int
    isolate: bool
    task_timeout: float
    memory_limit_mb: int | None
    scenarios: tuple[str, ...]


class NodeSetupError(Exception):
    """This node cannot evaluate anything: a folder every node must see is missing here, or the requested
    device is absent. A cluster problem, not a model's failure: the driver stops the cycle with it."""


def check_node(executor: Any, model_key: str, tasks: list[PlannedTask], device: str | None) -> str:
    """The device to run on; raises NodeSetupError when this node lacks the device, the dataset folder or the
    (local) model folder the tasks need."""
    where = f"node {socket.gethostname()}"
    try:
        chosen = choose_device(device)
    except RuntimeError as exc:
        raise NodeSetupError(f"{exc} (on {where})") from None
    for dataset in {t.module.dataset for t in tasks}:
        doc = executor.datasets.get(dataset)
        if doc is not None and not Path(doc["path"]).exists():
            raise NodeSetupError(f"the folder of dataset {dataset!r}, {doc['path']}, is not visible on {where}: datasets "
                                 "must be at the same path on every node (a shared file system)")
    model = with_retry(executor.store.get_model, model_key, what="reading the model")
    if model and model.get("path") and not Path(model["path"]).exists():
        raise NodeSetupError(f"the folder of model {model_key!r}, {model['path']}, is not visible on {where}: local "
                             "zoos must be at the same path on every node (a shared file system)")
    return chosen


@contextlib.contextmanager
def deferred_interrupt():
    """Hold back an interrupt (Ray's non-forced cancel of a running task is a SIGINT to the worker's main
    thread) until the block ends, then raise it. Around a model's load and a dataset's opening: an interrupt
    there could leave a module imported in half in this long-lived worker process, and every later model
    that needs it would then fail to load. Elsewhere (a batch) the interrupt lands at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: asked.append(signum))
    try:
        yield
    except Exception as exc:  # the step failed while a cancel was held: the cancel still ends the group
        if asked:
            raise KeyboardInterrupt from exc
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if asked:
        raise KeyboardInterrupt


def evaluate_group(spec: WorkerSpec, model_key: str, tasks: list[PlannedTask]) -> dict[str, Any]:
    """Evaluate one model's planned tasks for one module; return the counts, the failures (without their
    tracebacks, which are stored), the messages for the driver's log, and whether a stop cut it short.

    A stop requested for this cycle (``zooeval stop``: checked before the model is loaded and after every
    batch) or a cancel from the driver (Ray raises KeyboardInterrupt) ends it early; the task in progress is
    then not stored and the next cycle does it. A node that cannot evaluate returns ``setup_error``."""
    from pipeline.executor import Executor  # the local executor's code, not a copy of it

    messages: list[str] = []
    store = Store(spec.uri, spec.db_name, init_schema=False)
    summary = RunSummary(spec.run_id, Plan([]))
    stopped = False
    try:
        stop = StopFlag(store, since=spec.stop_since)
        try:
            if stop():
                raise KeyboardInterrupt
            ex = Executor(store, [], spec.home, batch_size=spec.batch_size, device=spec.device, max_attempts=spec.max_attempts,
                          progress=False, echo=messages.append, isolate=spec.isolate, task_timeout=spec.task_timeout,
                          memory_limit_mb=spec.memory_limit_mb, scenarios=spec.scenarios)
            ex.stop_since = spec.stop_since
            ex.uninterruptible = deferred_interrupt
            device = check_node(ex, model_key, tasks, spec.device)
            # finished by an earlier attempt of this Ray task (on a worker or node since lost)
            done = with_retry(store.existing_ids, "inferences", [t.inference_id for t in tasks], what="checking finished tasks")
            for task in tasks:
                if task.inference_id in done:
                    ex.rescore(task, summary)
            todo = [t for t in tasks if t.inference_id not in done]
            if todo:
                ex.evaluate_group(model_key, todo, device, summary, NoBar(), stop)
        except KeyboardInterrupt:
            stopped = True
        except NodeSetupError as exc:
            return {"setup_error": str(exc), "messages": messages}
        return {**summary.counts(), "stopped": stopped or summary.stopped, "messages": messages,
                "failure_docs": [{k: v for k, v in f.items() if k != "traceback"} for f in summary.failures],
                "worker": {"host": socket.gethostname(), "pid": os.getpid()}}
    finally:
        store.close()
