"""The Executor: module selection -> task creation -> task filtering -> model execution -> processing.

Planning computes every candidate's result id and asks the store, one indexed query per chunk, which
exist. What is missing is grouped by inference identity; a task whose predictions are already stored is
re-scored from them with zero forward passes.

Execution dispatches on the module's task: classification (run_classification, ClassificationPredictions) or
object detection (pipeline.detection_runner.run_detection on a COCO dataset or its cached perturbed variant
with moved boxes; per-image detections stored by Store.save_inference; DetectionProcessor batches rebuilt from
them and the variant's ground truth when re-scoring).
"""
from __future__ import annotations

import datetime as dt
import logging
import multiprocessing as mp
import signal
import sys
import time
import traceback
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from modules.base import EvaluationModule, ModelLoadError
from perturbations import get_perturbation
from perturbations.cache import ensure_coco_variant, ensure_variant
from core import identity as ident
from core.data import DataError, LocalDataset
from core.envinfo import choose_device, environment
from pipeline.inference import InferenceError, run_classification
from core.labels import LabelMappingError, map_labels
from core.store import Store, utcnow
from processors.base import PROCESSORS, ClassificationPredictions
import processors.detection  # noqa: F401  (registers the "detection" processor)

log = logging.getLogger("zooeval")

DETECTION_TASK = "object-detection"
#: Detection batches are capped at this many images (the executor's batch size is meant for classification
#: inputs; detectors run on full-size images). On out-of-memory the batch is halved as for classification.
DETECTION_MAX_BATCH = 8

#: What planning reads of each model: enough for module.accepts() (the library, file list and config tell a
#: Transformers repo from a timm, SetFit or PEFT one, a torchvision state dict or MTCNN of the same source).
MODEL_PROJECTION = {"name": 1, "source": 1, "revision": 1, "task": 1, "datasets": 1, "inferred_datasets": 1,
                    "library": 1, "files": 1, "config.architectures": 1, "config.architecture": 1,
                    "config.pretrained_cfg": 1, "adapter.base_model": 1, "adapter.base_revision": 1}


@dataclass
class PlannedTask:
    model_key: str
    module: EvaluationModule
    variant: str
    inference_id: str
    identity: dict[str, Any]
    processors: list[str]  # the processors whose results are missing
    has_predictions: bool = False


@dataclass
class Plan:
    tasks: list[PlannedTask]
    candidates: int = 0
    models: int = 0
    skipped_failed: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # modules left out of the plan, and why

    @property
    def inference_tasks(self) -> list[PlannedTask]:
        return [t for t in self.tasks if not t.has_predictions]

    @property
    def rescore_tasks(self) -> list[PlannedTask]:
        return [t for t in self.tasks if t.has_predictions]


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


class IsolationError(Exception):
    """The child process evaluating a model hung, ran out of memory or died."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


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
                if not _db_unavailable(exc):
                    raise
        return self._value


FAILURE_BACKOFF = dt.timedelta(hours=1)  # before the first retry; doubled after every further failure
MAX_FAILURE_BACKOFF = dt.timedelta(days=1)


def failure_backoff(attempts: int) -> dt.timedelta:
    """How long a task that has failed ``attempts`` times waits before it is tried again: 1 h, 2 h, 4 h, ...
    at most a day (a nightly cycle retries a task at most once a night after the first few)."""
    return min(FAILURE_BACKOFF * 2 ** max(0, attempts - 1), MAX_FAILURE_BACKOFF)
DB_RETRY_SECONDS = 120.0  # how long a store call is retried while MongoDB is unreachable (the lock's expiry)
_RETRYABLE_CODES = {91, 189, 10107, 11600, 11602, 13435, 13436}  # shutdown / stepdown / not primary


def _db_unavailable(exc: BaseException) -> bool:
    from pymongo.errors import ConnectionFailure, OperationFailure

    if isinstance(exc, ConnectionFailure):  # AutoReconnect, NotPrimaryError, ServerSelectionTimeoutError, ...
        return True
    return isinstance(exc, OperationFailure) and exc.code in _RETRYABLE_CODES


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
            if not _db_unavailable(exc) or time.monotonic() + delay > deadline:
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


def _free_memory(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def classify_failure(exc: BaseException) -> str:
    if isinstance(exc, LabelMappingError):
        return "unknown_labels"
    if isinstance(exc, DataError):
        return "data_error"
    if is_out_of_memory(exc):
        return "out_of_memory"
    if isinstance(exc, (ImportError, AttributeError)) and "transformers" in str(exc):
        return "incompatible_library"
    return getattr(exc, "error_class", "inference_error")


class Executor:
    def __init__(
        self,
        store: Store,
        modules: list[EvaluationModule],
        home: str | Path,
        batch_size: int = 32,
        device: str | None = None,
        max_attempts: int = 3,
        progress: bool = True,
        echo: Callable[[str], None] = print,
        isolate: bool = False,
        task_timeout: float = 1800.0,
        memory_limit_mb: int | None = None,
    ) -> None:
        self.store = store
        self.modules = modules
        self.home = Path(home)
        self.batch_size = batch_size
        self.device_request = device
        self.max_attempts = max_attempts
        self.progress = progress
        self.echo = echo
        self.isolate = isolate
        self.task_timeout = task_timeout
        self.memory_limit_mb = memory_limit_mb
        self._datasets: dict[str, dict[str, Any]] | None = None
        self._opened: dict[tuple[str, str], LocalDataset] = {}
        self._stop_since: dt.datetime | None = None

    def _db(self, fn: Callable[..., Any], *args: Any, what: str = "", **kwargs: Any) -> Any:
        """A store call that survives a short MongoDB outage (see with_retry)."""
        return with_retry(fn, *args, what=what, echo=self.echo, **kwargs)

    # -- identities -------------------------------------------------------------------------------
    @property
    def datasets(self) -> dict[str, dict[str, Any]]:
        if self._datasets is None:
            self._datasets = self._db(self.store.datasets, what="reading the datasets")
        return self._datasets

    def variant_identity(self, module: EvaluationModule, variant: str) -> dict[str, Any]:
        p = get_perturbation(variant)
        if p is None:
            return dict(ident.ORIGINAL_VARIANT)
        vid = {"name": p.name, "version": p.version, "params": p.params, "seed": module.seed}
        if module.task == DETECTION_TASK:  # the ground truth boxes moved with the images
            from perturbations.boxes import BOXES_VERSION

            vid["boxes_version"] = BOXES_VERSION
        return vid

    def module_work(self, module: EvaluationModule) -> list[tuple[str, dict[str, Any], str]]:
        """(variant, identity, work fingerprint) for each of the module's variants."""
        ds = self.datasets.get(module.dataset)
        if ds is None:
            raise KeyError(f"module {module.name} needs dataset {module.dataset!r}, which is not registered")
        dataset_id = {"name": ds["name"], "split": module.split, "revision": ds["revision"]}
        out = []
        for variant in module.variants:
            vid = self.variant_identity(module, variant)
            identity = {"module": module.identity(), "dataset": dataset_id, "variant": vid}
            out.append((variant, identity, ident.work_fingerprint(module.identity(), dataset_id, vid)))
        return out

    # -- steps 1-3: selection, creation, filtering ------------------------------------------------
    def plan(self, model_query: dict[str, Any] | None = None, limit: int | None = None) -> Plan:
        t0 = time.perf_counter()
        problems: list[str] = []
        work: dict[str, list[tuple[str, dict[str, Any], str]]] = {}
        proc_fps: dict[str, str] = {}
        for m in self.modules:
            if m.dataset not in self.datasets:
                continue
            try:  # a module with an unknown variant or processor is left out, never the end of the cycle
                work[m.name] = self.module_work(m)
                proc_fps.update({p: ident.processor_fingerprint(p, PROCESSORS.get(p).version) for p in m.processors})
            except Exception as exc:
                work.pop(m.name, None)
                problems.append(f"module {m.name} left out of this cycle: {type(exc).__name__}: {exc}")
        usable = [m for m in self.modules if m.name in work]
        result_ids: list[str] = []
        candidates: list[tuple[dict, EvaluationModule, int, str, str]] = []  # per result id
        n_models = 0
        cursor = self.store.iter_models(model_query, MODEL_PROJECTION)
        if limit:
            cursor = cursor.limit(limit)
        for model in cursor:
            n_models += 1
            model_fp = None
            for module in usable:
                try:
                    accepted = module.accepts(model, self.datasets)
                except Exception as exc:  # a broken module or model document: that pair is left out
                    if len(problems) < 100:
                        problems.append(f"module {module.name} could not judge model {model['_id']}: "
                                        f"{type(exc).__name__}: {exc}")
                    continue
                if not accepted:
                    continue
                model_fp = model_fp or ident.model_fingerprint(model)
                for i, (_, _, work_fp) in enumerate(work[module.name]):
                    inf = ident.inference_id(model_fp, work_fp)
                    for proc in module.processors:
                        result_ids.append(ident.result_id(inf, proc_fps[proc]))
                        candidates.append((model, module, i, inf, proc))
        existing = self.store.existing_ids("results", result_ids)
        tasks: dict[str, PlannedTask] = {}
        for rid, (model, module, i, inf, proc) in zip(result_ids, candidates):
            if rid in existing:
                continue
            task = tasks.get(inf)
            if task is None:
                variant, identity, _ = work[module.name][i]
                task = tasks[inf] = PlannedTask(model["_id"], module, variant, inf, {"model": ident.model_identity(model), **identity}, [])
            task.processors.append(proc)
        inf_ids = list(tasks)
        parked = self.parked(inf_ids)
        for inf in parked:
            tasks.pop(inf, None)
        stored = self.store.existing_ids("inferences", list(tasks))
        for inf in stored:
            tasks[inf].has_predictions = True
        return Plan(list(tasks.values()), len(result_ids), n_models, len(parked), time.perf_counter() - t0, problems)

    def parked(self, inference_ids: list[str]) -> set[str]:
        """Tasks that failed max_attempts times, failed recently (backoff), or failed in a way that cannot
        change without a new revision (permanent) are not tried now."""
        out: set[str] = set()
        now = utcnow()
        for start in range(0, len(inference_ids), 20000):
            part = inference_ids[start : start + 20000]
            for doc in self.store.db.failures.find({"_id": {"$in": part}}, {"attempts": 1, "retry_after": 1, "permanent": 1}):
                if (doc.get("permanent") or doc["attempts"] >= self.max_attempts
                        or (doc.get("retry_after") and doc["retry_after"] > now)):
                    out.add(doc["_id"])
        return out

    # -- steps 4-5: execution and processing -------------------------------------------------------
    def run(
        self,
        model_query: dict[str, Any] | None = None,
        limit: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        stop_since: dt.datetime | None = None,
    ) -> RunSummary:
        """Plan, then evaluate what is missing. A `zooeval stop` requested at or after ``stop_since`` (default:
        now) stops the run after the current batch; older requests are stale and ignored."""
        stop_since = stop_since or utcnow()
        run_id = uuid.uuid4().hex[:12]
        plan = self._db(self.plan, model_query, limit, what="planning")
        summary = RunSummary(run_id, plan)
        self.echo(
            f"plan: {plan.models} models, {plan.candidates} candidate results, {len(plan.tasks)} tasks to do "
            f"({len(plan.inference_tasks)} need inference, {len(plan.rescore_tasks)} re-scored from stored predictions, "
            f"{plan.skipped_failed} failed before: waiting for their retry time or parked) in {plan.seconds:.2f}s"
        )
        for problem in plan.problems[:20]:
            self.echo(f"WARNING: {problem}")
        if len(plan.problems) > 20:
            self.echo(f"WARNING: ... and {len(plan.problems) - 20} more planning problems (see the run record)")
        if not plan.tasks:
            self.echo("nothing to do: every result is already stored; no model was loaded")
            return summary
        self._stop_since = stop_since
        stop = StopFlag(self.store, should_stop, since=stop_since)
        by_model: dict[tuple[str, str], list[PlannedTask]] = defaultdict(list)
        for task in plan.inference_tasks:
            by_model[(task.model_key, task.module.name)].append(task)
        self._db(_start_run_once, self.store, run_id, {
            "planned": len(plan.tasks),
            "planned_by_model": _count_by(plan.tasks, lambda t: t.model_key),
            "planned_by_dataset": _count_by(plan.tasks, lambda t: t.module.dataset),
            "device": self.device_request, "isolated": self.isolate, "problems": plan.problems[:100],
        }, what="recording the run")
        status = "done"
        try:
            for task in plan.rescore_tasks:
                self._rescore(task, summary)
            device = choose_device(self.device_request)
            bar = _bar(self.progress, total=len(plan.inference_tasks), desc="tasks", unit="task")
            for (model_key, _), tasks in by_model.items():
                if stop():
                    raise KeyboardInterrupt
                if self.isolate:
                    self._evaluate_isolated(model_key, tasks, device, summary, bar)
                else:
                    self._evaluate_model(model_key, tasks, device, summary, bar, stop)
                self._db(self.store.update_run, run_id, counts=summary.counts(), what="updating the run")
                if summary.stopped:
                    raise KeyboardInterrupt
            bar.close()
        except KeyboardInterrupt:
            summary.stopped = True
            status = "stopped"
            self.echo("stopped after the current batch; `zooeval run` (or `zooeval resume`) continues from here")
        except BaseException:
            status = "crashed"
            raise
        finally:
            self._db(self.store.finish_run, run_id, status, summary.counts(), what="finishing the run")
        return summary

    def _evaluate_isolated(self, model_key: str, tasks: list[PlannedTask], device: str, summary: RunSummary, bar) -> None:
        """Run one model's tasks in a child process with a time limit per task and a memory limit.

        The child comes from a fork server (see _isolation_context) and opens its own MongoDB client; the
        tasks are pickled to it, so their modules' classes must be importable. Over a pipe it reports each
        finished task, which restarts the task timer (the first task's time includes loading the model),
        its messages, and its summary at the end. A child that hangs, exceeds the memory limit or dies is killed and every task it
        did not finish is recorded as failed (timeout, out_of_memory, inference_error)."""
        ctx = _isolation_context()
        receiver, sender = ctx.Pipe(duplex=False)
        args = (sender, self.store.uri, self.store.db_name, str(self.home), self.batch_size, device, model_key, tasks,
                summary.run_id, self.max_attempts, self._stop_since)
        proc = ctx.Process(target=_child_main, args=args, name=f"zooeval-eval-{model_key}")
        proc.start()
        sender.close()
        deadline = time.monotonic() + self.task_timeout
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
                        deadline = time.monotonic() + self.task_timeout
                    elif kind == "echo":
                        self.echo(payload)
                    else:
                        result = payload
                elif not proc.is_alive():
                    if not receiver.poll(0.1):  # nothing left in the pipe
                        break
                elif time.monotonic() > deadline:
                    problem = IsolationError(
                        "timeout", f"a task of {model_key} exceeded the time limit of {self.task_timeout:g} s "
                        f"(--timeout); the evaluating process was killed")
                elif self.memory_limit_mb and _rss_mb(proc.pid) > self.memory_limit_mb:
                    problem = IsolationError(
                        "out_of_memory", f"evaluating {model_key} used more than the memory limit of "
                        f"{self.memory_limit_mb} MB (--memory-limit); the evaluating process was killed")
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
            done = self._db(self.store.existing_ids, "inferences", [t.inference_id for t in tasks], what="checking finished tasks")
            for task in tasks:
                if task.inference_id not in done:
                    self._fail(task, problem, summary)
        bar.update(max(0, len(tasks) - reported))

    def _dataset_for(self, task: PlannedTask) -> Any:
        """The task's dataset, its variant built or reused from the cache: a LocalDataset, or for object
        detection a core.coco.CocoDataset whose variant has the boxes moved (ensure_coco_variant)."""
        module = task.module
        key = (module.dataset, task.variant)
        if key not in self._opened:
            doc = self.datasets[module.dataset]
            if module.task == DETECTION_TASK:
                from core.coco import CocoDataset

                opener, ensure = CocoDataset.open, ensure_coco_variant
            else:
                opener, ensure = LocalDataset.open, ensure_variant
            base = opener(doc["path"])
            pert = get_perturbation(task.variant)
            if pert is not None:
                self.echo(f"variant {module.dataset}/{task.variant}: building or reusing the cached variant")
            self._opened[key] = ensure(base, doc["revision"], pert, module.seed, self.home / "variants")
        return self._opened[key]

    def _evaluate_model(self, model_key, tasks, device, summary, bar, should_stop) -> None:
        """Load one model, map its labels, and run its tasks: inference (retried with half the batch on out
        of memory), stored predictions, processors. Classification and object detection differ only in
        the label mapping, the dataset reader, the runner and the form of the stored predictions. Any
        exception of the model (loading, mapping) or of one task is a stored failure; the cycle goes on."""
        from pipeline.detection_runner import detection_label_mapping, run_detection

        module = tasks[0].module
        detection = module.task == DETECTION_TASK
        try:
            model = self._db(self.store.get_model, model_key, what="reading the model")
            ds_doc = self.datasets[module.dataset]
            if detection:
                classes, make = self._detection_processor_factory(ds_doc)
                category_ids = [int(c["extra"]["category_id"]) for c in ds_doc["classes"]]
            else:
                classes, make = [c["label"] for c in ds_doc["classes"]], None
            if model is None:
                raise ModelLoadError(f"model {model_key!r} is no longer in the store")
            t0 = time.perf_counter()
            loaded = module.load(model, device)
            load_s = time.perf_counter() - t0
            summary.models_loaded += 1
            if detection:
                mapping = detection_label_mapping(loaded.id2label, classes, category_ids, ds_doc.get("synonyms"),
                                                  trained_on_dataset=module.trained_on(model, ds_doc))
                model_to_dataset = mapping.model_to_category
                mapping_doc = mapping.to_doc(classes, category_ids, loaded.id2label)
            else:
                mapping = map_labels(loaded.id2label, classes, ds_doc.get("synonyms"), trained_on_dataset=module.trained_on(model, ds_doc))
                model_to_dataset = mapping.model_to_dataset
                mapping_doc = mapping.to_doc(classes, loaded.id2label)
        except Exception as exc:  # one model's failure never stops the cycle; said once for all its tasks
            for task in tasks:
                self._fail(task, exc, summary, echo=False)
                bar.update(1)
            variants = ", ".join(t.variant for t in tasks)
            self.echo(f"FAILED {model_key} with {module.name}: {len(tasks)} task(s) ({variants}): "
                      f"[{summary.failures[-1]['error_class']}] {summary.failures[-1]['reason'][:300]}")
            return
        run = run_detection if detection else run_classification
        batch_size = min(self.batch_size, DETECTION_MAX_BATCH) if detection else self.batch_size
        for task in tasks:
            if should_stop and should_stop():
                raise KeyboardInterrupt
            try:
                batch, stored, runtime = self._infer(task, module, loaded, model, ds_doc, model_to_dataset, run,
                                                     batch_size, device, detection, summary, should_stop)
                runtime["load_s"] = load_s
                summary.inferences += 1
                summary.forward_samples += runtime["n"]
                doc = {
                    **_flat_identity(task),
                    "label_mapping": mapping_doc,
                    "runtime": runtime,
                    "env": environment(device),
                    "n_samples": runtime["n"],
                    "run_id": summary.run_id,
                }
                self._db(self.store.save_inference, task.inference_id, doc, stored, what="saving predictions")
                self._process(task, [batch], doc, classes, summary, make)
                self._db(self.store.clear_failure, task.inference_id, what="clearing an old failure")
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one task's failure never stops the cycle
                self._fail(task, exc, summary)
            bar.update(1)

    def _infer(self, task, module, loaded, model, ds_doc, model_to_dataset, run, batch_size, device, detection,
               summary, should_stop) -> tuple[Any, Any, dict[str, Any]]:
        """One task's inference, retried with half the batch size (down to 1) on out of memory. Returns the
        processor batch, the predictions in their stored form and the runtime record."""
        from pipeline.detection_runner import to_detection_batch

        dataset = self._dataset_for(task)
        total = sum(s["total"] for s in ds_doc["splits"] if s["name"] == module.split)
        oom_retries = 0
        while True:
            reporter = _Progress(self.store, summary.run_id, task, total,
                                 _bar(self.progress, total=total, desc=f"{model['name']} {task.variant}",
                                      unit="image" if detection else "sample", leave=False))
            try:
                preds, runtime = run(module, loaded, dataset, module.split, model_to_dataset, batch_size,
                                     on_batch=reporter.update, should_stop=should_stop)
                break
            except Exception as exc:
                if not is_out_of_memory(exc) or batch_size <= 1:
                    raise
                oom = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            finally:
                reporter.close()
            _free_memory(device)
            batch_size = max(1, batch_size // 2)
            oom_retries += 1
            self.echo(f"{task.model_key} on {module.dataset}/{task.variant}: out of memory ({oom[:200]}); "
                      f"retrying with batch size {batch_size}")
        runtime["requested_batch_size"] = self.batch_size
        runtime["oom_retries"] = oom_retries
        if detection:
            return to_detection_batch(dataset, module.split, preds), _detection_preds(preds), runtime
        batch = ClassificationPredictions(preds["sample_ids"], preds["y_true"], preds["topk_labels"], preds["topk_scores"])
        return batch, preds, runtime

    def _rescore(self, task: PlannedTask, summary: RunSummary) -> None:
        """Missing processors of a task from its stored predictions (no model is loaded); an error is a
        stored failure of the task, never the end of the cycle."""
        try:
            if task.module.task == DETECTION_TASK:
                self._rescore_detection(task, summary)
            else:
                self._rescore_classification(task, summary)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self._fail(task, exc, summary)

    def _rescore_classification(self, task: PlannedTask, summary: RunSummary) -> None:
        doc = self._db(self.store.get_inference, task.inference_id, what="reading stored predictions")
        classes = [c["label"] for c in self.datasets[task.module.dataset]["classes"]]
        chunks = self._db(lambda: list(self.store.iter_predictions(task.inference_id)), what="reading stored predictions")
        batches = [
            ClassificationPredictions(
                c["sample_ids"], np.asarray(c["y_true"], dtype=np.int64),
                np.asarray(c["topk_labels"], dtype=np.int64).reshape(len(c["sample_ids"]), -1),
                np.asarray(c["topk_scores"], dtype=np.float64).reshape(len(c["sample_ids"]), -1),
            )
            for c in chunks
        ]
        self._process(task, batches, doc, classes, summary)
        summary.rescored += 1

    def _process(self, task: PlannedTask, batches, inference_doc, classes, summary,
                 make: Callable[[type], Any] | None = None) -> None:
        """Run the task's missing processors over the batches and store a result each; ``make(cls)``
        builds a processor (default: ``cls(classes)``)."""
        for proc_name in task.processors:
            cls = PROCESSORS.get(proc_name)
            proc = make(cls) if make else cls(classes)
            for b in batches:
                proc.update(b)
            out = proc.compute()
            rid = ident.result_id(task.inference_id, ident.processor_fingerprint(cls.name, cls.version))
            doc = {
                **_flat_identity(task),
                "inference_id": task.inference_id,
                "processor": cls.name,
                "processor_version": cls.version,
                **out,
                "runtime": inference_doc["runtime"],
                "label_mapping": inference_doc.get("label_mapping"),
                "env": inference_doc.get("env"),
                "created_at": utcnow(),
                "run_id": summary.run_id,
            }
            doc.setdefault("overall", {})
            if self._db(self.store.insert_result, rid, doc, what="storing a result"):
                summary.results_written += 1

    # -- object detection ---------------------------------------------------------------------------
    def _detection_processor_factory(self, ds_doc: dict[str, Any]) -> tuple[list[str], Callable[[type], Any]]:
        """The dataset's class names and a processor factory: a DetectionProcessor (or subclass) gets the
        supercategories too."""
        from processors.detection import DetectionProcessor

        classes = [c["label"] for c in ds_doc["classes"]]
        supercategories = [(c.get("extra") or {}).get("supercategory") for c in ds_doc["classes"]]
        if any(s is None for s in supercategories):
            supercategories = None

        def make(cls: type) -> Any:
            return cls(classes, supercategories) if issubclass(cls, DetectionProcessor) else cls(classes)

        return classes, make

    def _rescore_detection(self, task: PlannedTask, summary: RunSummary) -> None:
        """Missing processors of a detection task from its stored detections and the (cached) variant's
        ground truth: no model is loaded."""
        from pipeline.detection_runner import to_detection_batch

        doc = self._db(self.store.get_inference, task.inference_id, what="reading stored predictions")
        classes, make = self._detection_processor_factory(self.datasets[task.module.dataset])
        predictions = self._db(lambda: list(self.store.iter_detections(task.inference_id)), what="reading stored predictions")
        batch = to_detection_batch(self._dataset_for(task), task.module.split, predictions)
        self._process(task, [batch], doc, classes, summary, make)
        summary.rescored += 1

    def _fail(self, task: PlannedTask, exc: BaseException, summary: RunSummary, echo: bool = True) -> None:
        """Store a task's failure with its class, reason and traceback, and when it may be retried: after a
        backoff, or never for this revision when the failure cannot change without a new one (permanent)."""
        error_class = classify_failure(exc)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=6))[-4000:]
        doc = {
            **_flat_identity(task),
            "error_class": error_class,
            "reason": str(exc)[:2000] or type(exc).__name__,
            "details": _mapping_details(exc) if isinstance(exc, LabelMappingError) else {},
            "traceback": tb,
            "run_id": summary.run_id,
        }
        previous = self._db(self.store.db.failures.find_one, {"_id": task.inference_id}, {"attempts": 1},
                            what="reading an earlier failure") or {}
        doc["permanent"] = bool(getattr(exc, "permanent", False))
        doc["retry_after"] = None if doc["permanent"] else utcnow() + failure_backoff(int(previous.get("attempts") or 0) + 1)
        self._db(self.store.record_failure, task.inference_id, doc, what="recording a failure")
        summary.failures.append(doc)
        if echo:
            self.echo(f"FAILED {task.model_key} on {task.module.dataset}/{task.variant}: [{error_class}] {doc['reason'][:300]}")


# imported once by the fork server, so that every isolated child starts with them (a module that fails to
# import, e.g. with another transformers version, is skipped by multiprocessing)
ISOLATION_PRELOAD = [
    "torch", "transformers", "transformers.modeling_utils", "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto", "transformers.models.auto.image_processing_auto",
    "pipeline.executor", "modules.hf", "processors.classification",
    "modules.detection", "processors.detection", "pipeline.detection_runner", "core.coco", "timm", "peft", "sentence_transformers",
]


def _isolation_context():
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


def _start_run_once(store: Store, run_id: str, doc: dict[str, Any]) -> None:
    from pymongo.errors import DuplicateKeyError

    try:
        store.start_run(run_id, doc)
    except DuplicateKeyError:  # a retry after an insert whose acknowledgement was lost
        pass


class _ParentLink:
    """The isolated child's side of the pipe: finished tasks (the parent restarts its timer) and messages."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def update(self, n: int = 1) -> None:
        self.conn.send(("tasks", n))

    def echo(self, message: str) -> None:
        self.conn.send(("echo", message))

    def close(self) -> None:
        pass


def _child_main(conn, uri, db_name, home, batch_size, device, model_key, tasks, run_id, max_attempts, stop_since) -> None:
    """Entry point of the isolated evaluation process: load one model and run its tasks (with its own
    MongoDB client), reporting to the parent through ``conn``."""
    store = None
    out: dict[str, Any]
    try:
        link = _ParentLink(conn)
        store = Store(uri, db_name, init_schema=False)
        ex = Executor(store, [tasks[0].module], home, batch_size=batch_size, device=device, max_attempts=max_attempts,
                      progress=False, echo=link.echo)
        ex._stop_since = stop_since
        summary = RunSummary(run_id, Plan([]))
        stopped = False
        try:
            ex._evaluate_model(model_key, tasks, device, summary, link, StopFlag(store, since=stop_since))
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


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    import psutil

    try:
        p = psutil.Process(pid)
        return (p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))) / 2**20
    except psutil.Error:
        return 0.0


def _count_by(tasks: list[PlannedTask], key: Callable[[PlannedTask], str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for t in tasks:
        out[key(t).replace(".", "\uff0e")] += 1  # MongoDB keys may not contain dots
    return dict(out)


def _detection_preds(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """run_detection's per-image predictions in the flat form Store.save_inference stores for detection."""
    def cat(key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        parts = [np.asarray(p[key], dtype=dtype).reshape(shape) for p in predictions]
        return np.concatenate(parts) if parts else np.zeros((0, *shape[1:]), dtype=dtype)

    return {
        "image_ids": [p["image_id"] for p in predictions],
        "counts": [len(p["scores"]) for p in predictions],
        "boxes": cat("boxes", (-1, 4), np.float64),
        "scores": cat("scores", (-1,), np.float64),
        "category_ids": cat("labels", (-1,), np.int64),
    }


def _mapping_details(exc: LabelMappingError) -> dict[str, Any]:
    """The refused labels of a label-mapping failure, with why and the candidate classes (a list: labels may
    hold "." or "$", which MongoDB keys may not)."""
    return {"unmapped_labels": exc.unmapped,
            "refusals": [{"label": label, "reason": reason, "candidates": exc.ambiguous.get(label, [])}
                         for label, reason in exc.reasons.items()]}


def _flat_identity(task: PlannedTask) -> dict[str, Any]:
    i = task.identity
    extra = {"module_params": i["module"]["params"]} if i["module"].get("params") else {}
    if "base" in i["model"]:  # an adapter: evaluated on this base revision
        extra["model_base"] = i["model"]["base"]
    return {
        "model_key": task.model_key,
        "model_name": i["model"]["name"],
        "source": i["model"]["source"],
        "model_revision": i["model"]["revision"],
        "module": i["module"]["name"],
        "module_version": i["module"]["version"],
        "dataset": i["dataset"]["name"],
        "split": i["dataset"]["split"],
        "dataset_revision": i["dataset"]["revision"],
        "variant": i["variant"]["name"],
        "variant_version": i["variant"]["version"],
        "variant_params": i["variant"]["params"],
        "variant_seed": i["variant"]["seed"],
        **extra,
    }


class _Progress:
    """Sample progress of the running task: a progress bar, and the run record (for `zooeval status`)."""

    def __init__(self, store: Store, run_id: str, task: PlannedTask, total: int, bar) -> None:
        self.store, self.run_id, self.bar, self.done, self.total = store, run_id, bar, 0, total
        self.started = time.monotonic()
        self.last = 0.0
        self.current = {"model": task.model_key, "dataset": task.module.dataset, "split": task.module.split,
                        "variant": task.variant, "total": total}
        self._write()

    def _write(self) -> None:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        try:
            self.store.update_run(self.run_id, current={**self.current, "done": self.done, "rate": rate,
                                                        "eta_s": (self.total - self.done) / rate if rate else None})
        except Exception as exc:  # progress is best effort: never fail a task because MongoDB is restarting
            if not _db_unavailable(exc):
                raise
            log.warning("could not record progress (%s)", type(exc).__name__)

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        if time.monotonic() - self.last >= 2.0:
            self.last = time.monotonic()
            self._write()

    def close(self) -> None:
        self.bar.close()
        self._write()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(enabled: bool, **kwargs):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(**kwargs)
