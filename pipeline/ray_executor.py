"""The Ray executor: the same cycle, its evaluation spread over the machines of a Ray cluster.

Planning stays in the driver (one process, one indexed query per chunk, pipeline.planner), and so do the
re-scoring of stored predictions, the run record and the cycle lock. Each (model, module) group of inference
tasks, which shares one model load, becomes one Ray task (pipeline.ray_worker.evaluate_group) asking for a CPU,
a GPU when the cluster has them, and memory for the model (a hint from its weight files, or ``--memory-limit``).
The worker opens its own client to the driver's MongoDB and runs the local executor's own code, writing
predictions, results and failures there under their deterministic ids; so exactly-once holds whatever Ray
retries.

Failures: a model's failure (it cannot load, its labels do not map, its outputs are NaN, ...) is stored by the
worker with zooeval's classes, backoff and parking, and the Ray task returns normally: Ray never retries it
(``retry_exceptions=False``). Ray retries only system failures, a worker process or a node lost, at most
``max_retries`` times; the retry re-scores what the lost attempt finished and evaluates the rest. A group lost
more often than that is a stored ``inference_error`` for its unfinished tasks (``out_of_memory`` when Ray's
memory monitor killed it).

Stop: the driver submits a bounded window of groups (twice what the cluster runs at once, so 1.5 million
planned groups never sit in Ray's queue at once). On ``zooeval stop`` it submits no more; the running groups
stop after their current batch (workers read the same stop request), a queued group that starts sees it before
loading its model, and after ``stop_grace_s`` the driver cancels what is left (Ray's non-forced cancel: a
queued task never runs, a running one is interrupted like a stop). ``zooeval resume`` plans again and does
only what is missing.

Variants are built where they are needed: each worker builds a variant into ``<ZOOEVAL_HOME>/variants`` under
the variant cache's per-variant file lock (perturbations.cache), so on a file system the nodes share it is built
once and reused by all; on node-local disks each node builds its own identical copy (variants are
deterministic) the first time it needs it. Datasets and local zoos must be at the same path on every node.

Ray is optional: this module is imported only when the Ray executor is asked for.
"""
from __future__ import annotations

import collections
import ipaddress
import os
import time
from typing import Any, Callable

from core.store import Store
from modules.base import EvaluationModule
from pipeline.executor import Executor
from pipeline.planner import PlannedTask
from pipeline.progress import RunSummary
from pipeline.ray_worker import NodeSetupError, WorkerSpec, evaluate_group
from pipeline.retry import with_retry
from scraper.repo_metadata import WEIGHT_SUFFIXES

#: Memory asked for every group besides its weights: the interpreter, torch, transformers, a dataset.
BASE_MEMORY = 1 << 30
#: Memory asked for per byte of weights: the weights, the copy made while loading, activations.
WEIGHT_MEMORY_FACTOR = 2
#: Model documents read per query for the memory hints.
HINT_CHUNK = 1000


class WorkerLostError(Exception):
    """The Ray worker evaluating a model was lost (its process or node died) more often than Ray retries."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def ray_module():
    """Ray, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("the Ray executor needs Ray: pip install 'zooeval[ray]' (or `make install`): "
                           f"{exc}") from None
    return ray


def memory_hint(files: dict[str, Any] | None) -> int:
    """Bytes of memory to reserve for evaluating a model with these files (name -> size): a base for the
    process plus twice its weights (the safetensors files when it has them, else its other weight files)."""
    sizes = {name: size or 0 for name, size in (files or {}).items() if name.endswith(WEIGHT_SUFFIXES)}
    safetensors = sum(size for name, size in sizes.items() if name.endswith(".safetensors"))
    weights = safetensors or sum(sizes.values())
    return BASE_MEMORY + WEIGHT_MEMORY_FACTOR * int(weights)


def loopback_only(uri: str) -> bool:
    """Whether every host of a ``mongodb://`` URI is this machine's loopback address (no DNS lookups)."""
    if not uri.startswith("mongodb://"):
        return False
    hosts = uri[len("mongodb://"):].split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1].split(",")
    for host in hosts:
        name = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
        if name == "localhost":
            continue
        try:
            if not ipaddress.ip_address(name).is_loopback:
                return False
        except ValueError:
            return False
    return True


def group_slots(nodes: list[dict[str, Any]], num_cpus: float, num_gpus: float) -> int:
    """How many groups the alive nodes can run at once, each needing ``num_cpus`` CPUs and ``num_gpus`` GPUs."""
    slots = 0
    for node in nodes:
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        fits = [int(res.get("CPU", 0) // num_cpus)] if num_cpus else []
        if num_gpus:
            fits.append(int(res.get("GPU", 0) // num_gpus))
        slots += min(fits) if fits else 0
    return slots


class RayExecutor(Executor):
    """An Executor that evaluates the planned (model, module) groups as Ray tasks on a cluster.

    ``ray_address``: the cluster to join (``ray://`` or ``host:port``); default ``RAY_ADDRESS``, else a Ray instance
    started on this machine for the cycle. ``max_retries``: Ray's retries of a group whose worker or node was lost.
    ``gpus_per_task``: GPUs per group (default 1 when the cluster has GPUs and no CPU device was asked for).
    ``stop_grace_s``: how long a stop waits for running groups to finish their batch before cancelling them."""

    def __init__(self, store: Store, modules: list[EvaluationModule], home, ray_address: str | None = None,
                 max_retries: int = 2, gpus_per_task: float | None = None, stop_grace_s: float = 10.0,
                 **kwargs: Any) -> None:
        super().__init__(store, modules, home, **kwargs)
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, not {max_retries}")
        self.ray_address = ray_address
        self.max_retries = max_retries
        self.gpus_per_task = gpus_per_task
        self.stop_grace_s = stop_grace_s
        self._nodes_checked_at = 0.0
        self._window = 0

    # -- the cluster ---------------------------------------------------------------------------------
    def _connect(self, ray) -> bool:
        """Join the cluster (unless this process already has); True when this call connected."""
        if ray.is_initialized():
            return False
        if self.ray_address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=self.ray_address)
        else:  # no cluster named: one on this machine, for this cycle
            ray.init(address="local", include_dashboard=False)
        return True

    def _alive_nodes(self, ray) -> list[dict[str, Any]]:
        return [n for n in ray.nodes() if n.get("Alive")]

    def _check_cluster(self, ray, nodes: list[dict[str, Any]], num_gpus: float) -> int:
        """The groups the cluster runs at once; a clear error when it can run none, or when its nodes cannot
        reach the driver's MongoDB."""
        slots = group_slots(nodes, 1, num_gpus)
        if slots == 0:
            raise RuntimeError(f"the Ray cluster has no node with a CPU{' and ' + str(num_gpus) + ' GPU' if num_gpus else ''} "
                               f"free for zooeval ({len(nodes)} node(s) alive)")
        if loopback_only(self.store.uri):
            here = ray.util.get_node_ip_address()
            remote = sorted({n["NodeManagerAddress"] for n in nodes} - {here} - {"127.0.0.1", "localhost", "::1"})
            if remote:
                raise RuntimeError(
                    f"the Ray nodes {', '.join(remote)} cannot reach MongoDB at this machine's loopback address (the "
                    "embedded mongod listens on 127.0.0.1 only): set ZOOEVAL_MONGO_URI (or --mongo-uri) to a MongoDB "
                    "every node reaches")
        return slots

    def _num_gpus(self, ray) -> float:
        if self.gpus_per_task is not None:
            return self.gpus_per_task
        wants_cpu = (self.device_request or os.environ.get("ZOOEVAL_DEVICE") or "").startswith(("cpu", "mps"))
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 and not wants_cpu else 0.0

    def _refresh_window(self, ray, num_gpus: float) -> int:
        """How many groups to keep submitted: twice what the alive nodes run at once (nodes come and go)."""
        if time.monotonic() - self._nodes_checked_at > 5.0:
            self._nodes_checked_at = time.monotonic()
            self._window = max(2, 2 * group_slots(self._alive_nodes(ray), 1, num_gpus))
        return self._window

    def _memory_hints(self, model_keys: list[str], cap: int) -> dict[str, int]:
        """Memory to reserve per model (``--memory-limit`` when given), at most ``cap`` (the largest node's)."""
        if self.memory_limit_mb:
            return dict.fromkeys(model_keys, min(cap, self.memory_limit_mb << 20))
        docs = self._db(self.store.find_models, {"_id": {"$in": model_keys}}, {"files": 1}, what="reading model sizes")
        files = {d["_id"]: d.get("files") for d in docs}
        return {key: min(cap, memory_hint(files.get(key))) for key in model_keys}

    # -- the run ---------------------------------------------------------------------------------------
    def evaluate_groups(self, groups: dict[tuple[str, str], list[PlannedTask]], summary: RunSummary, bar,
                        stop: Callable[[], bool]) -> None:
        """Run every group as a Ray task and gather what the workers report; raises KeyboardInterrupt when
        asked to stop (after winding the cluster's work down)."""
        ray = ray_module()
        connected = self._connect(ray)
        try:
            self._evaluate_on_cluster(ray, groups, summary, bar, stop)
        finally:
            if connected:
                ray.shutdown()

    def _evaluate_on_cluster(self, ray, groups, summary: RunSummary, bar, stop: Callable[[], bool]) -> None:
        num_gpus = self._num_gpus(ray)
        nodes = self._alive_nodes(ray)
        slots = self._check_cluster(ray, nodes, num_gpus)
        memory_cap = max(int(n["Resources"].get("memory", 0)) for n in nodes)
        self._db(self.store.update_run, summary.run_id, executor={
            "kind": "ray", "nodes": len(nodes), "slots": slots, "gpus_per_task": num_gpus, "max_retries": self.max_retries,
        }, what="updating the run")
        self.echo(f"ray: {len(groups)} model group(s) on {len(nodes)} node(s), {slots} at a time"
                  + (f", {num_gpus:g} GPU each" if num_gpus else ""))
        spec = WorkerSpec(uri=self.store.uri, db_name=self.store.db_name, home=str(self.home), run_id=summary.run_id,
                          stop_since=self.stop_since, batch_size=self.batch_size, device=self.device_request,
                          max_attempts=self.max_attempts, isolate=self.isolate, task_timeout=self.task_timeout,
                          memory_limit_mb=self.memory_limit_mb, scenarios=self.scenarios)
        remote = ray.remote(evaluate_group)
        pending = collections.deque(groups.items())
        in_flight: dict[Any, tuple[str, list[PlannedTask]]] = {}
        try:
            while pending or in_flight:
                if stop():
                    raise KeyboardInterrupt
                room = self._refresh_window(ray, num_gpus) - len(in_flight)
                if pending and room > 0:
                    batch = [pending.popleft() for _ in range(min(room, len(pending)))]
                    hints = self._memory_hints([key for (key, _), _ in batch], memory_cap)
                    for (model_key, _), tasks in batch:
                        ref = remote.options(num_cpus=1, num_gpus=num_gpus, memory=hints[model_key],
                                             max_retries=self.max_retries, retry_exceptions=False,
                                             name=f"zooeval:{model_key}").remote(spec, model_key, tasks)
                        in_flight[ref] = (model_key, tasks)
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                if ready:
                    ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
                for ref in ready:
                    self._collect(ray, ref, *in_flight.pop(ref), summary, bar, stopping=False)
                if ready:
                    self._db(self.store.update_run, summary.run_id, counts=summary.counts(), what="updating the run")
                if summary.stopped:
                    raise KeyboardInterrupt
        except BaseException as exc:
            self._wind_down(ray, in_flight, summary, bar, self.stop_grace_s if isinstance(exc, KeyboardInterrupt) else 0.0)
            raise

    def _collect(self, ray, ref, model_key: str, tasks: list[PlannedTask], summary: RunSummary, bar,
                 stopping: bool) -> None:
        """Take a finished group's report into the summary; a group Ray gave up on is a stored failure of its
        unfinished tasks (not while stopping: those are simply not done)."""
        from ray.exceptions import OutOfMemoryError, RayError, RayTaskError, TaskCancelledError

        problem = None
        try:
            out = ray.get(ref)
        except TaskCancelledError:
            out = None
        except RayTaskError as exc:  # a bug outside any task's own error handling: not retried (retry_exceptions=False)
            out, problem = None, WorkerLostError("inference_error", f"evaluating {model_key} failed on the Ray worker: "
                                                 f"{type(exc.cause).__name__}: {exc.cause}")
        except OutOfMemoryError as exc:
            out, problem = None, WorkerLostError("out_of_memory", f"Ray's memory monitor killed the worker evaluating "
                                                 f"{model_key}: {str(exc).splitlines()[0][:500]}")
        except RayError as exc:  # worker or node lost more often than max_retries
            out, problem = None, WorkerLostError(
                "inference_error", f"the Ray worker evaluating {model_key} was lost {self.max_retries + 1} time(s) "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''})")
        if out is not None:
            for message in out.get("messages", []):
                self.echo(message)
            if out.get("setup_error"):
                if not stopping:
                    raise NodeSetupError(out["setup_error"])
            else:
                summary.add(out)
                summary.stopped = summary.stopped or out.get("stopped", False)
        elif problem is not None and not stopping:
            done = with_retry(self.store.existing_ids, "inferences", [t.inference_id for t in tasks],
                              what="checking finished tasks")
            for task in tasks:
                if task.inference_id not in done:
                    self.fail(task, problem, summary)
        bar.update(len(tasks))

    def _wind_down(self, ray, in_flight: dict[Any, tuple[str, list[PlannedTask]]], summary: RunSummary, bar,
                   grace_s: float) -> None:
        """Stop the cluster's work: let running groups finish their batch for ``grace_s`` seconds, then cancel
        the rest (a queued task never runs; a running one is interrupted and reports what it finished)."""
        deadline = time.monotonic() + grace_s
        while in_flight and time.monotonic() < deadline:
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=min(0.5, grace_s))
            for ref in ready:
                self._collect(ray, ref, *in_flight.pop(ref), summary, bar, stopping=True)
        if not in_flight:
            return
        self.echo(f"ray: cancelling {len(in_flight)} group(s) not finished")
        for ref in in_flight:
            ray.cancel(ref)
        ready, stuck = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=30.0)
        for ref in ready:
            self._collect(ray, ref, *in_flight.pop(ref), summary, bar, stopping=True)
        for ref in stuck:  # a worker that ignores the interrupt (stuck in native code): end its process
            ray.cancel(ref, force=True)
