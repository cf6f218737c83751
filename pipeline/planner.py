"""Steps 1-3 of a cycle: module selection, task creation, task filtering.

For every stored model and every module that accepts it, each of the module's variants is a task (an
inference identity) and each of its processors a result identity. Candidates are streamed in chunks: each
chunk's result ids are checked with one indexed ``$in`` query, and only the missing ones are kept, grouped by
inference identity with the processors they still need. Tasks that failed recently, too often, or for good
are left out; a task whose predictions are already stored is re-scored from them with no inference.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from core import identity as ident
from core.store import Store
from modules.base import EvaluationModule
from perturbations import get_perturbation
from processors.base import ProcessorSpec, processors_for_task
from tasks.base import TASKS

#: What planning reads of each model: enough for module.accepts() (the library, file list and config tell a
#: Transformers repo from a timm, SetFit or PEFT one, a torchvision state dict or MTCNN of the same source).
MODEL_PROJECTION = {"name": 1, "source": 1, "revision": 1, "task": 1, "datasets": 1, "inferred_datasets": 1,
                    "library": 1, "files": 1, "config.architectures": 1, "config.architecture": 1,
                    "config.pretrained_cfg": 1, "adapter.base_model": 1, "adapter.base_revision": 1}
#: Result ids checked per query (and the most candidates held at once).
CHUNK = 20_000


@dataclass
class PlannedTask:
    model_key: str
    module: EvaluationModule
    variant: str
    inference_id: str
    identity: dict[str, Any]
    processors: list[ProcessorSpec]  # the processors whose results are missing
    has_predictions: bool = False
    has_failure: bool = False  # a failure of an earlier attempt is stored: success clears it


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
class _Work:
    """One module's part of the plan: per variant, its name, identity and work fingerprint."""

    module: EvaluationModule
    variants: list[tuple[str, dict[str, Any], str]]
    processors: list[tuple[ProcessorSpec, str]]  # (spec, processor fingerprint)


class Planner:
    """Plans a cycle over the stored models for the given modules and registered datasets."""

    def __init__(self, store: Store, modules: list[EvaluationModule], datasets: dict[str, dict[str, Any]],
                 max_attempts: int = 3, db: Callable[..., Any] | None = None) -> None:
        self.store, self.modules, self.datasets, self.max_attempts = store, modules, datasets, max_attempts
        self._db = db or (lambda fn, *a, what="", **k: fn(*a, **k))

    def variant_identity(self, module: EvaluationModule, variant: str) -> dict[str, Any]:
        """The variant's part of the inference identity, as the module's task kind defines it."""
        return TASKS.get(module.task).variant_identity(get_perturbation(variant), module.seed)

    def module_work(self, module: EvaluationModule) -> _Work:
        """The variants (identity, work fingerprint) and processors (fingerprint) of a module."""
        ds = self.datasets.get(module.dataset)
        if ds is None:
            raise KeyError(f"module {module.name} needs dataset {module.dataset!r}, which is not registered")
        dataset_id = {"name": ds["name"], "split": module.split, "revision": ds["revision"]}
        variants = []
        for variant in module.variants:
            vid = self.variant_identity(module, variant)
            identity = {"module": module.identity(), "dataset": dataset_id, "variant": vid}
            variants.append((variant, identity, ident.work_fingerprint(module.identity(), dataset_id, vid)))
        task = TASKS.get(module.task)
        specs = [ProcessorSpec.parse(p) for p in module.processors] or processors_for_task(task.name, task.default_processors)
        processors = [(spec, ident.processor_fingerprint(**spec.identity(ds))) for spec in specs]
        return _Work(module, variants, processors)

    def plan(self, model_query: dict[str, Any] | None = None, limit: int | None = None) -> Plan:
        t0 = time.perf_counter()
        problems: list[str] = []
        work: list[_Work] = []
        for m in self.modules:
            if m.dataset not in self.datasets:
                continue
            try:  # a module with an unknown variant or processor is left out, never the end of the cycle
                work.append(self.module_work(m))
            except Exception as exc:
                problems.append(f"module {m.name} left out of this cycle: {type(exc).__name__}: {exc}")
        tasks: dict[str, PlannedTask] = {}
        pending: list[tuple[str, dict, _Work, int, str, ProcessorSpec]] = []  # per candidate result
        n_candidates = n_models = 0

        def flush() -> None:
            existing = self._db(self.store.existing_ids, "results", [c[0] for c in pending], what="planning")
            for rid, model, w, i, inf, spec in pending:
                if rid in existing:
                    continue
                task = tasks.get(inf)
                if task is None:
                    variant, identity, _ = w.variants[i]
                    task = tasks[inf] = PlannedTask(model["_id"], w.module, variant, inf,
                                                    {"model": ident.model_identity(model), **identity}, [])
                task.processors.append(spec)
            pending.clear()

        for model in self.store.iter_models(model_query, MODEL_PROJECTION, limit=limit):
            n_models += 1
            model_fp = None
            for w in work:
                try:
                    accepted = w.module.accepts(model, self.datasets)
                except Exception as exc:  # a broken module or model document: that pair is left out
                    if len(problems) < 100:
                        problems.append(f"module {w.module.name} could not judge model {model['_id']}: "
                                        f"{type(exc).__name__}: {exc}")
                    continue
                if not accepted:
                    continue
                model_fp = model_fp or ident.model_fingerprint(model)
                for i, (_, _, work_fp) in enumerate(w.variants):
                    inf = ident.inference_id(model_fp, work_fp)
                    for spec, proc_fp in w.processors:
                        pending.append((ident.result_id(inf, proc_fp), model, w, i, inf, spec))
                n_candidates += len(w.variants) * len(w.processors)
            if len(pending) >= CHUNK:
                flush()
        flush()
        parked, failed = self._db(self.store.failure_states, list(tasks), self.max_attempts, what="planning")
        for inf in parked:
            tasks.pop(inf, None)
        for inf in failed - parked:
            tasks[inf].has_failure = True
        for inf in self._db(self.store.existing_ids, "inferences", list(tasks), what="planning"):
            tasks[inf].has_predictions = True
        return Plan(list(tasks.values()), n_candidates, n_models, len(parked), time.perf_counter() - t0, problems)
