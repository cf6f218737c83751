"""The Executor: plan (pipeline.planner), then steps 4-5 for what is missing: model execution and processing.

It is task-agnostic: the module's task kind (tasks.base.TaskKind) opens the dataset and its variant, maps
the model's labels, runs the model, gives the stored form of the predictions and the record processors read.
One model load serves all of a model's tasks for a module; a task whose predictions are already stored is
re-scored from them with zero forward passes. Any exception of a model or a task is a stored failure with its
class and traceback (pipeline.retry.classify_failure), retried after a backoff or parked, never the end of
the cycle. With ``isolate`` each model runs in a child process (pipeline.isolation).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import time
import traceback
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch

from core import identity as ident
from core.envinfo import choose_device, environment
from core.labels import LabelMappingError
from core.store import Store, utcnow
from modules.base import EvaluationModule, ModelLoadError
from perturbations import get_perturbation
from pipeline.isolation import evaluate_isolated
from pipeline.planner import Plan, PlannedTask, Planner
from pipeline.progress import Progress, RunRecord, RunSummary, StopFlag, count_by, progress_bar
from pipeline.retry import classify_failure, failure_backoff, free_memory, halving_batch, probe_batch, with_retry
from pipeline.write_batch import HeldTask, WriteBatch
from processors.base import ProcessorSpec
from tasks.base import TASKS, Mapping, TaskKind
from tasks.batching import single_stream, warm_up

#: The runtime scenarios (AI-BMT, MLPerf): "offline", the throughput of the batched pass that makes the
#: predictions (always recorded), and "single-stream", batch-1 latency percentiles on a fixed sample.
SCENARIOS = ("offline", "single-stream")
#: Inputs the single-stream scenario times one by one (the split's first ones).
SINGLE_STREAM_SAMPLES = 32
#: the most inputs a batch-size probe (on an accelerator) reads and tries at once
PROBE_INPUTS = 512
#: model documents one read fetches for the models evaluated next (ModelDocs), at most
MODEL_READ_AHEAD = 32
#: how old a model's document read ahead may be when its evaluation starts, in seconds (else it is read again)
MODEL_DOC_MAX_AGE_S = 2.0


class ModelDocs:
    """The documents of the models a cycle evaluates in this process, in its order, read up to MODEL_READ_AHEAD at a
    time (one query instead of a round trip per model). A document read more than MODEL_DOC_MAX_AGE_S seconds before
    is read again, with the models after it, so a model is loaded from its document as it stood at most that
    long before; a model the read does not find is looked up alone (Store.get_model). How far a read looks ahead
    follows how fast the models go: it doubles (up to MODEL_READ_AHEAD) each time the documents read ahead were
    used in time, and falls back to one when they had aged out unused (models slower than MODEL_DOC_MAX_AGE_S
    each), so slow models do not re-read documents that would only be dropped."""

    def __init__(self, store: Store, model_keys: list[str], db: Callable[..., Any]) -> None:
        self.store, self.db = store, db
        self.keys = list(dict.fromkeys(model_keys))
        self.position = {key: i for i, key in enumerate(self.keys)}
        self.read_at = 0.0
        self.docs: dict[str, dict[str, Any]] = {}
        self.ahead = MODEL_READ_AHEAD // 2  # how many documents the last read fetched (the first fetches all)

    def get(self, model_key: str) -> dict[str, Any] | None:
        """The model's document (None: no longer stored)."""
        fresh = time.monotonic() - self.read_at <= MODEL_DOC_MAX_AGE_S
        if model_key not in self.docs or not fresh:
            # read ahead were used in time (this model's comes after them): read further; aged out unused: one
            self.ahead = 1 if model_key in self.docs else min(2 * self.ahead, MODEL_READ_AHEAD)
            i = self.position.get(model_key)
            ahead = self.keys[i : i + self.ahead] if i is not None else []
            self.read_at = time.monotonic()
            self.docs = {d["_id"]: d for d in self.db(self.store.find_models, {"_id": {"$in": ahead}},
                                                       what="reading the models")} if ahead else {}
        doc = self.docs.get(model_key)  # (a model evaluated with several modules: one read serves its groups)
        return doc if doc is not None else self.db(self.store.get_model, model_key, what="reading the model")


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
        scenarios: tuple[str, ...] = SCENARIOS,
        batch_probe: bool | None = None,
    ) -> None:
        unknown = set(scenarios) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown runtime scenario(s) {sorted(unknown)}: choose from {', '.join(SCENARIOS)}")
        WriteBatch.every_s_setting()  # a bad ZOOEVAL_WRITE_EVERY_S stops here, before a run is recorded
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
        self.scenarios = tuple(scenarios)
        self.batch_probe = batch_probe  # None: probe the batch size on CUDA devices only
        self._datasets: dict[str, dict[str, Any]] | None = None
        self._opened: dict[tuple[str, str], Any] = {}
        self.stop_since: dt.datetime | None = None
        # set while evaluate_groups runs in this process: the run record and the models' documents read ahead
        # (without them, e.g. in an isolated child or a Ray worker, each task's start is written to the run record
        # and a model's document is read when it is loaded)
        self._run_record: RunRecord | None = None
        self._model_docs: ModelDocs | None = None
        # set while run runs: finished tasks' writes, stored together (without it each task is stored as it finishes)
        self._writes: WriteBatch | None = None
        # wraps the steps an interrupt must not cut in half (a model's load and its first imports, the opening
        # or building of a dataset variant); the Ray worker defers Ray's cancel there (pipeline.ray_worker)
        self.uninterruptible: Callable[[], ContextManager[Any]] = contextlib.nullcontext

    def _db(self, fn: Callable[..., Any], *args: Any, what: str = "", **kwargs: Any) -> Any:
        """A store call that survives a short MongoDB outage (see with_retry)."""
        return with_retry(fn, *args, what=what, echo=self.echo, **kwargs)

    @property
    def datasets(self) -> dict[str, dict[str, Any]]:
        if self._datasets is None:
            self._datasets = self._db(self.store.datasets, what="reading the datasets")
        return self._datasets

    # -- steps 1-3 ----------------------------------------------------------------------------------
    def planner(self) -> Planner:
        return Planner(self.store, self.modules, self.datasets, self.max_attempts, db=self._db)

    def plan(self, model_query: dict[str, Any] | None = None, limit: int | None = None, full: bool = False) -> Plan:
        """The tasks still to do; ``full`` ignores the planning watermarks (every candidate is visited)."""
        return self.planner().plan(model_query, limit, full=full)

    # -- steps 4-5 ----------------------------------------------------------------------------------
    def run(
        self,
        model_query: dict[str, Any] | None = None,
        limit: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        stop_since: dt.datetime | None = None,
        full_plan: bool = False,
    ) -> RunSummary:
        """Plan, then evaluate what is missing, then advance the planning watermarks of the work units all of
        whose tasks stand stored or failed. A `zooeval stop` requested at or after ``stop_since`` (default: now)
        stops the run after the current batch; older requests are stale and ignored. ``full_plan`` ignores the
        watermarks."""
        stop_since = stop_since or utcnow()
        run_id = uuid.uuid4().hex[:12]
        plan = self.plan(model_query, limit, full=full_plan)
        summary = RunSummary(run_id, plan)
        self.echo(
            f"plan: {plan.models_visited} models visited, {plan.candidates} candidate results, {len(plan.tasks)} tasks to do "
            f"({len(plan.inference_tasks)} need inference, {len(plan.rescore_tasks)} re-scored from stored predictions, "
            f"{plan.skipped_failed} failed before: waiting for their retry time or parked) in {plan.seconds:.2f}s"
        )
        for problem in plan.problems[:20]:
            self.echo(f"WARNING: {problem}")
        if len(plan.problems) > 20:
            self.echo(f"WARNING: ... and {len(plan.problems) - 20} more planning problems (see the run record)")
        if not plan.tasks:
            self.echo("nothing to do: every result is already stored; no model was loaded" if not plan.problems else
                      "nothing to do for the modules that could be planned (see the warnings above); no model was loaded")
            self.planner().commit_marks(plan)
            return summary
        self.stop_since = stop_since
        stop = StopFlag(self.store, should_stop, since=stop_since)
        by_model: dict[tuple[str, str], list[PlannedTask]] = defaultdict(list)
        for task in plan.inference_tasks:
            by_model[(task.model_key, task.module.name)].append(task)
        self._db(self.store.start_run, run_id, {
            "planned": len(plan.tasks),
            "planned_by_model": count_by(plan.tasks, lambda t: t.model_key),
            "planned_by_dataset": count_by(plan.tasks, lambda t: t.module.dataset),
            "device": self.device_request, "isolated": self.isolate, "problems": plan.problems[:100],
        }, what="recording the run")
        status = "done"
        self._writes = writes = self.write_batch(summary)
        try:
            try:
                for task in plan.rescore_tasks:
                    self.rescore(task, summary)
                bar = progress_bar(self.progress, total=len(plan.inference_tasks), desc="tasks", unit="task")
                self.evaluate_groups(by_model, summary, bar, stop)
                bar.close()
            finally:  # finished tasks' held writes are stored before the run's end (done, stopped or crashed)
                self._writes = None
                writes.flush()
        except KeyboardInterrupt:
            summary.stopped = True
            status = "stopped"
            self.echo("stopped after the current batch; `zooeval run` (or `zooeval resume`) continues from here")
        except BaseException:
            status = "crashed"
            raise
        finally:
            self._db(self.store.finish_run, run_id, status, summary.counts(), what="finishing the run")
            if status != "crashed":  # stopped too: only units whose every task stands stored or failed advance
                self.planner().commit_marks(plan)
        return summary

    def write_batch(self, summary: RunSummary, every_s: float | None = None) -> WriteBatch:
        """A batch for finished tasks' writes: the results it stores are counted in ``summary``, a write the store
        refuses is that task's stored failure (and a re-scored task refused so is no longer counted re-scored)."""
        def written(n: int) -> None:
            summary.results_written += n

        def refused(task: PlannedTask, exc: BaseException) -> None:
            if task.has_predictions:  # a re-scored task, counted when scored: it is a failure, not a re-scored task
                summary.rescored -= 1
            self.fail(task, exc, summary)

        return WriteBatch(self.store, self._db, written, refused, every_s)

    def evaluate_groups(self, groups: dict[tuple[str, str], list[PlannedTask]], summary: RunSummary, bar,
                        stop: Callable[[], bool]) -> None:
        """Evaluate each (model, module) group of inference tasks in turn, the run's progress and counts written to
        the run record at most every RunRecord.WRITE_EVERY_S seconds (finish_run writes the last counts), the
        models' documents read a few at a time (ModelDocs); raises KeyboardInterrupt when asked to stop.
        (pipeline.ray_executor runs the groups on a Ray cluster.)"""
        device = choose_device(self.device_request)
        self._run_record = record = RunRecord(self.store, summary.run_id, summary.counts)
        if not self.isolate:  # (an isolated child reads its model itself)
            self._model_docs = ModelDocs(self.store, [model_key for model_key, _ in groups], self._db)
        try:
            for (model_key, _), tasks in groups.items():
                if stop():
                    raise KeyboardInterrupt
                self.evaluate_group(model_key, tasks, device, summary, bar, stop)
                if record.due():  # the counts, retried through a short outage (the progress alone is best effort)
                    self._db(record.write, best_effort=False, what="updating the run")
                if summary.stopped:
                    raise KeyboardInterrupt
        finally:
            self._run_record, self._model_docs = None, None

    def evaluate_group(self, model_key: str, tasks: list[PlannedTask], device: str, summary: RunSummary, bar,
                       stop: Callable[[], bool]) -> None:
        """One model's tasks for one module: in a child process with --isolate, else in this one."""
        if self.isolate:
            evaluate_isolated(self, model_key, tasks, device, summary, bar)
        else:
            self.evaluate_model(model_key, tasks, device, summary, bar, stop)

    def open_dataset(self, task: PlannedTask) -> Any:
        """The task's dataset under its variant (built once into the variant cache, reused after)."""
        module = task.module
        key = (module.dataset, task.variant)
        if key not in self._opened:
            kind = TASKS.get(module.task)
            doc = self.datasets[module.dataset]
            perturbation = get_perturbation(task.variant)
            if perturbation is not None:
                self.echo(f"variant {module.dataset}/{task.variant}: building or reusing the cached variant")
            with self.uninterruptible():
                self._opened[key] = kind.open_variant(kind.open_dataset(doc["path"]), doc["revision"], perturbation,
                                                      module.seed, self.home / "variants")
        return self._opened[key]

    def evaluate_model(self, model_key: str, tasks: list[PlannedTask], device: str, summary: RunSummary, bar,
                       should_stop: Callable[[], bool] | None) -> None:
        """Load one model, map its labels, and run its tasks: inference (retried with half the batch on out
        of memory), stored predictions, processors. Any exception of the model (loading, mapping) or of one
        task is a stored failure; the cycle goes on."""
        module = tasks[0].module
        kind = TASKS.get(module.task)
        writes = self._writes or self.write_batch(summary, every_s=0)
        try:
            model = (self._model_docs.get(model_key) if self._model_docs is not None
                     else self._db(self.store.get_model, model_key, what="reading the model"))
            ds_doc = self.datasets[module.dataset]
            if model is None:
                raise ModelLoadError(f"model {model_key!r} is no longer in the store")
            t0 = time.perf_counter()
            with self.uninterruptible():
                loaded = module.load(model, device)
                load_s = time.perf_counter() - t0
                summary.models_loaded += 1
                mapping = kind.map_labels(loaded.id2label, ds_doc, module.trained_on(model, ds_doc))
        except Exception as exc:  # one model's failure never stops the cycle; said once for all its tasks
            for task in tasks:
                self.fail(task, exc, summary, echo=False)
                bar.update(1)
            variants = ", ".join(t.variant for t in tasks)
            self.echo(f"FAILED {model_key} with {module.name}: {len(tasks)} task(s) ({variants}): "
                      f"[{summary.failures[-1]['error_class']}] {summary.failures[-1]['reason'][:300]}")
            return
        for task in tasks:
            if should_stop and should_stop():
                raise KeyboardInterrupt
            held = writes.hold(task)
            try:
                predictions, runtime = self._infer(task, kind, loaded, model["name"], mapping, device, summary, should_stop)
                runtime["load_s"] = load_s
                summary.inferences += 1
                summary.forward_samples += runtime["n"]
                doc = {**flat_identity(task), "label_mapping": mapping.doc, "runtime": runtime,
                       "env": environment(device), "n_samples": runtime["n"], "run_id": summary.run_id}
                writes.add_inference(held, doc, kind.encode(predictions))
                self._process(task, kind.processor_input(predictions, lambda: self.open_dataset(task), module.split),
                              doc, ds_doc, summary, held)
                held.clear_failure = task.has_failure
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one task's failure never stops the cycle
                self.fail(task, exc, summary)
            bar.update(1)
            if writes.due():
                writes.flush()

    def _infer(self, task: PlannedTask, kind: TaskKind, loaded: Any, model_name: str, mapping: Mapping, device: str,
               summary: RunSummary, should_stop: Callable[[], bool] | None) -> tuple[Any, dict[str, Any]]:
        """One task's inference, retried with half the batch size (down to 1) on out of memory. Returns the
        predictions and the runtime record."""
        module = task.module
        dataset = self.open_dataset(task)
        total = kind.split_size(self.datasets[module.dataset], module.split)
        record = self._run_record or RunRecord(self.store, summary.run_id)

        def run(batch_size: int) -> tuple[Any, dict[str, Any]]:
            reporter = Progress(record, task, total,
                                progress_bar(self.progress, total=total, desc=f"{model_name} {task.variant}",
                                             unit=kind.unit, leave=False))
            try:
                return kind.run(module, loaded, dataset, module.split, mapping, batch_size,
                                on_batch=reporter.update, should_stop=should_stop)
            finally:
                reporter.close()

        def on_retry(batch_size: int, error: str) -> None:
            free_memory(device)
            self.echo(f"{task.model_key} on {module.dataset}/{task.variant}: out of memory ({error[:200]}); "
                      f"retrying with batch size {batch_size}")

        first = min(self.batch_size, kind.max_batch_size or self.batch_size)
        probed = self.probe_batch_size(kind, module, loaded, dataset, first, device)
        (predictions, runtime), retries = halving_batch(run, probed or first, on_retry)
        runtime["requested_batch_size"] = self.batch_size
        runtime["oom_retries"] = retries
        if probed is not None:
            runtime["probed_batch_size"] = probed
        runtime["scenarios"] = ["offline"]
        if "single-stream" in self.scenarios:
            inputs = kind.sample_inputs(dataset, module.split, SINGLE_STREAM_SAMPLES)
            if inputs is not None:
                runtime["single_stream"] = single_stream(module, loaded, inputs)
                runtime["scenarios"].append("single-stream")
        return predictions, runtime

    def probe_batch_size(self, kind: TaskKind, module: EvaluationModule, loaded: Any, dataset: Any, start: int,
                         device: str) -> int | None:
        """On an accelerator (or when asked), the largest batch size from ``start`` up (doubling, at most
        PROBE_INPUTS or the kind's maximum) whose forward pass on the split's first inputs fits in memory, halved
        below ``start`` when that does not fit; None when not probed (the CPU has no memory ceiling to find, and
        larger batches do not run faster there)."""
        if not (self.batch_probe if self.batch_probe is not None else device.startswith("cuda")):
            return None
        limit = min(PROBE_INPUTS, kind.max_batch_size or PROBE_INPUTS)
        inputs = kind.sample_inputs(dataset, module.split, limit)
        if not inputs:
            return None

        def forward(n: int) -> None:
            with torch.inference_mode():
                warm_up(module, loaded, inputs[:n])

        return probe_batch(forward, start, len(inputs), lambda n: free_memory(device))

    def rescore(self, task: PlannedTask, summary: RunSummary) -> None:
        """The task's missing processors from its stored predictions (no model is loaded); an error is a
        stored failure of the task, never the end of the cycle."""
        writes = self._writes or self.write_batch(summary, every_s=0)
        held = writes.hold(task)
        try:
            kind = TASKS.get(task.module.task)
            doc = self._db(self.store.get_inference, task.inference_id, what="reading stored predictions")
            chunks = self._db(lambda: list(self.store.iter_predictions(task.inference_id)), what="reading stored predictions")
            batch = kind.processor_input(kind.decode(chunks), lambda: self.open_dataset(task), task.module.split)
            self._process(task, batch, doc, self.datasets[task.module.dataset], summary, held)
            held.clear_failure = task.has_failure
            summary.rescored += 1
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self.fail(task, exc, summary)
        if writes.due():
            writes.flush()

    def _process(self, task: PlannedTask, batch: Any, inference_doc: dict[str, Any], ds_doc: dict[str, Any],
                 summary: RunSummary, held: HeldTask) -> None:
        """Run the task's missing processors over its predictions; a result each joins the task's held writes."""
        for spec in task.processors:
            spec = ProcessorSpec.parse(spec)
            processor = spec.build(ds_doc)
            processor.update(batch)
            out = processor.compute()
            identity = spec.identity(ds_doc)
            rid = ident.result_id(task.inference_id, ident.processor_fingerprint(**identity))
            doc = {
                **flat_identity(task),
                "inference_id": task.inference_id,
                "processor": identity["name"],
                "processor_spec": str(spec),  # as the operator names it (NAME[:KEY=VALUE,...])
                "processor_version": identity["version"],
                **({"processor_params": identity["params"]} if identity.get("params") else {}),
                **out,
                "runtime": inference_doc["runtime"],
                "label_mapping": inference_doc.get("label_mapping"),
                "env": inference_doc.get("env"),
                "created_at": utcnow(),
                "run_id": summary.run_id,
            }
            doc.setdefault("overall", {})
            held.results.append((rid, doc))

    def fail(self, task: PlannedTask, exc: BaseException, summary: RunSummary, echo: bool = True) -> None:
        """Store a task's failure with its class, reason and traceback, and when it may be retried: after a
        backoff, or never for this revision when the failure cannot change without a new one (permanent)."""
        error_class = classify_failure(exc)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=6))[-4000:]
        doc = {
            **flat_identity(task),
            "error_class": error_class,
            "reason": str(exc)[:2000] or type(exc).__name__,
            "details": mapping_details(exc) if isinstance(exc, LabelMappingError) else {},
            "traceback": tb,
            "run_id": summary.run_id,
        }
        attempts = self._db(self.store.failure_attempts, task.inference_id, what="reading an earlier failure")
        doc["permanent"] = bool(getattr(exc, "permanent", False))
        doc["retry_after"] = None if doc["permanent"] else utcnow() + failure_backoff(attempts + 1)
        self._db(self.store.record_failure, task.inference_id, doc, what="recording a failure")
        summary.failures.append(doc)
        if echo:
            self.echo(f"FAILED {task.model_key} on {task.module.dataset}/{task.variant}: [{error_class}] {doc['reason'][:300]}")


def mapping_details(exc: LabelMappingError) -> dict[str, Any]:
    """The refused labels of a label-mapping failure, with why and the candidate classes (a list: labels may
    hold "." or "$", which MongoDB keys may not)."""
    return {"unmapped_labels": exc.unmapped,
            "refusals": [{"label": label, "reason": reason, "candidates": exc.ambiguous.get(label, [])}
                         for label, reason in exc.reasons.items()]}


def flat_identity(task: PlannedTask) -> dict[str, Any]:
    """The identity fields every inference, result and failure document carries, flat (for queries)."""
    i = task.identity
    extra = {"module_params": i["module"]["params"]} if i["module"].get("params") else {}
    if "base" in i["model"]:  # an adapter: evaluated on this base revision
        extra["model_base"] = i["model"]["base"]
    return {
        "model_key": task.model_key,
        "model_name": i["model"]["name"],
        "source": i["model"]["source"],
        "model_revision": i["model"]["revision"],
        "task": task.module.task,
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
