"""Steps 1-3 of a cycle: module selection, task creation, task filtering.

For every stored model and every module that accepts it, each of the module's variants is a task (an
inference identity) and each of its processors a result identity. Candidates are streamed in chunks of models:
each chunk's result ids are checked against its models' stored result ids (``Store.missing_results``, read from an
index), and only the missing ones are kept, grouped by inference identity with the processors they still need.
Tasks that failed recently, too often, or for good are left out; a task whose predictions are already stored is
re-scored from them with no inference.

Watermarks make a cycle cost what changed. A *work unit* is what identifies a candidate apart from its model:
module, dataset (revision and what module selection reads of it), variant and processor. Its mark,
``complete_as_of``, is the start of the last planning pass after which every candidate of the unit stood stored
or as a failure (``commit_marks``, called once the cycle's tasks ran). A unit without a mark is planned for every
model; a marked one only for the models changed since (``changed_at``, kept by the store) and those with a
failure that came due since. A pass restricted to some models (a query, a limit) uses marks but never advances
them; deleting results drops them all (``Store.delete_results``); ``full=True`` ignores them.
"""
from __future__ import annotations

import bisect
import datetime as dt
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from core import identity as ident
from core.collector import collector_paused
from core.fingerprint import fingerprint
from core.store import Store
from modules.base import EvaluationModule
from perturbations import get_perturbation
from processors.base import ProcessorSpec, processors_for_task
from tasks.base import TASKS

#: What planning reads of each model: enough for module.accepts() (the library, file list and config tell a
#: Transformers repo from a timm, SetFit or PEFT one, a torchvision state dict or MTCNN of the same source),
#: and when it last changed. Every top-level field here is in Store.PLANNING_FIELDS.
MODEL_PROJECTION = {"name": 1, "source": 1, "revision": 1, "task": 1, "datasets": 1, "inferred_datasets": 1,
                    "library": 1, "files": 1, "config.architectures": 1, "config.architecture": 1,
                    "config.pretrained_cfg": 1, "adapter.base_model": 1, "adapter.base_revision": 1, "changed_at": 1}
#: Result ids checked per query (about: a chunk ends with the model that reaches it), and the most candidates
#: held at once.
CHUNK = 20_000
#: Bump when what a work unit's mark means changes: every stored mark is then ignored.
MARK_VERSION = 1
#: What module selection may read of a dataset document besides its identity (part of a unit's id).
DATASET_SELECTION_FIELDS = ("task", "datatype", "compatible_with")
#: How far before a module's mark failures that came due are looked for (tolerates clock skew between the
#: machines that record failures and MongoDB's clock).
FAILURE_WINDOW_MARGIN = dt.timedelta(hours=1)


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
    units: list[str] = field(default_factory=list)  # the work unit of each missing processor


@dataclass
class Plan:
    tasks: list[PlannedTask]
    candidates: int = 0
    models: int = 0  # models some module was judged for (visited)
    skipped_failed: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # modules left out of the plan, and why
    as_of: dt.datetime | None = None  # MongoDB's time when the pass started (Store.planning_as_of)
    units: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit id -> description, for commit_marks
    marked_units: int = 0  # units planned only for what changed since their mark
    may_advance: bool = False  # the pass saw every model: its complete units may advance their marks

    @property
    def models_visited(self) -> int:
        return self.models

    @property
    def inference_tasks(self) -> list[PlannedTask]:
        return [t for t in self.tasks if not t.has_predictions]

    @property
    def rescore_tasks(self) -> list[PlannedTask]:
        return [t for t in self.tasks if t.has_predictions]


@dataclass
class _Work:
    """One module's part of the plan: per variant, its name, identity and work fingerprint; its processors; the
    work unit of each (variant, processor) and that unit's mark."""

    module: EvaluationModule
    variants: list[tuple[str, dict[str, Any], str]]
    processors: list[tuple[ProcessorSpec, str]]  # (spec, processor fingerprint)
    units: list[list[str]] = field(default_factory=list)  # [variant][processor] -> unit id
    marks: list[list[dt.datetime | None]] = field(default_factory=list)  # [variant][processor] -> mark or None
    retry_models: set[str] = field(default_factory=set)  # models with a failure of this module that came due
    unmarked: bool = True  # no unit has a mark: every candidate of every model is computed
    every_candidate: list[tuple[int, list[int]]] = field(default_factory=list)  # [(variant, [processor])]
    every_pair: list[tuple[int, int]] = field(default_factory=list)  # every_candidate as (variant, processor)
    work_fps: list[str] = field(init=False)  # each variant's work fingerprint, in order

    def __post_init__(self) -> None:
        self.work_fps = [work_fp for _, _, work_fp in self.variants]

    @property
    def since(self) -> dt.datetime | None:
        """The oldest mark of the module's units; None when one has none (every model must be visited)."""
        flat = [m for row in self.marks for m in row]
        return None if not flat or None in flat else min(flat)


class _Chunk:
    """The candidates of some models, flat: the models' keys, their result ids in order, and per (model, module)
    the position of its first id, its (variant, processor) pairs and its inference ids by variant."""

    def __init__(self) -> None:
        self.model_keys: list[str] = []
        self.result_ids: list[str] = []
        self.starts: list[int] = []
        self.groups: list[tuple[dict[str, Any], _Work, list[tuple[int, int]], list[str] | dict[int, str]]] = []

    def add(self, model_identity: dict[str, Any], model_fp: str, w: _Work, wanted: list[tuple[int, list[int]]]) -> int:
        """Add the candidates ``wanted`` of module ``w`` for a model; returns how many."""
        every = wanted is w.every_candidate
        pairs = w.every_pair if every else [(i, j) for i, js in wanted for j in js]
        processors = w.processors
        ids = ident.inference_ids(model_fp, w.work_fps if every else [w.variants[i][2] for i, _ in wanted])
        inference_ids = ids if every else dict(zip([i for i, _ in wanted], ids))  # by variant index
        self.starts.append(len(self.result_ids))
        self.groups.append((model_identity, w, pairs, inference_ids))
        if len(processors) == 1:
            self.result_ids += ident.result_ids(ids, processors[0][1])
        else:  # per processor, the ids of the variants that want it, in order; then in the pairs' order
            per_processor = [iter(ident.result_ids([inference_ids[i] for i, js in wanted if j in js], proc_fp))
                             for j, (_, proc_fp) in enumerate(processors)]
            self.result_ids += [next(per_processor[j]) for _, j in pairs]
        return len(pairs)


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
        """The variants (identity, work fingerprint), processors (fingerprint) and work units of a module."""
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
        selection = fingerprint({"mark": MARK_VERSION, "class": f"{type(module).__module__}.{type(module).__qualname__}",
                                 "sources": list(module.sources), "model_tasks": list(module.model_tasks),
                                 "dataset": {k: ds.get(k) for k in DATASET_SELECTION_FIELDS}})
        units = [[fingerprint({"unit": [work_fp, proc_fp, selection]}) for _, proc_fp in processors]
                 for _, _, work_fp in variants]
        return _Work(module, variants, processors, units)

    def plan(self, model_query: dict[str, Any] | None = None, limit: int | None = None, full: bool = False) -> Plan:
        """The tasks still to do. ``full`` ignores the watermarks (every candidate is visited)."""
        t0 = time.perf_counter()
        as_of = self._db(self.store.planning_as_of, what="planning")
        problems: list[str] = []
        work: list[_Work] = []
        for m in self.modules:
            if m.dataset not in self.datasets:
                continue
            try:  # a module with an unknown variant or processor is left out, never the end of the cycle
                work.append(self.module_work(m))
            except Exception as exc:
                problems.append(f"module {m.name} left out of this cycle: {type(exc).__name__}: {exc}")
        self._read_marks(work, full)
        self._find_due_failures(work, as_of)
        tasks: dict[str, PlannedTask] = {}
        chunk = _Chunk()
        judge_failed: set[str] = set()  # modules that could not judge some model: their units stay unmarked
        n_candidates = n_models = 0
        # one chunk is checked by MongoDB (in a thread) while the next is computed: at most two held at once
        lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="planning")
        in_flight: list[tuple[Future, _Chunk]] = []

        def collect(keep: int = 0) -> None:
            """Keep the missing candidates of every chunk sent but the newest ``keep``."""
            while len(in_flight) > keep:
                future, sent = in_flight.pop(0)
                missing = future.result()
                if missing:
                    self._keep_missing(sent, missing, tasks)

        def flush() -> None:
            nonlocal chunk
            if chunk.result_ids:
                in_flight.append((lookups.submit(self._db, self.store.missing_results, chunk.result_ids,
                                                 chunk.model_keys, what="planning"), chunk))
                chunk = _Chunk()
            collect(keep=1)

        with collector_paused():
            try:
                for model in self._models_to_visit(work, model_query, limit):
                    n_models += 1
                    model_identity: dict[str, Any] | None = None
                    model_fp = ""
                    changed_at = model.get("changed_at")
                    for w in work:
                        wanted = self._wanted_units(w, model["_id"], changed_at)
                        if not wanted:
                            continue
                        try:
                            accepted = w.module.accepts(model, self.datasets)
                        except Exception as exc:  # a broken module or model document: that pair is left out
                            judge_failed.add(w.module.name)
                            if len(problems) < 100:
                                problems.append(f"module {w.module.name} could not judge model {model['_id']}: "
                                                f"{type(exc).__name__}: {exc}")
                            continue
                        if not accepted:
                            continue
                        if model_identity is None:
                            model_identity = {"key": model["_id"], "identity": ident.model_identity(model)}
                            model_fp = ident.model_fingerprint(model)
                            chunk.model_keys.append(model["_id"])
                        n_candidates += chunk.add(model_identity, model_fp, w, wanted)
                    if len(chunk.result_ids) >= CHUNK:
                        flush()
                flush()
                collect()
            finally:
                lookups.shutdown(cancel_futures=True)
        parked, failed = self._db(self.store.failure_states, list(tasks), self.max_attempts, what="planning")
        for inf in parked:
            tasks.pop(inf, None)
        for inf in failed - parked:
            tasks[inf].has_failure = True
        for inf in self._db(self.store.existing_ids, "inferences", list(tasks), what="planning"):
            tasks[inf].has_predictions = True
        units = {w.units[i][j]: {"module": w.module.name, "dataset": w.module.dataset, "split": w.module.split,
                                 "variant": w.variants[i][0], "processor": str(w.processors[j][0]),
                                 "processor_fp": w.processors[j][1], "max_attempts": self.max_attempts}
                 for w in work if w.module.name not in judge_failed
                 for i in range(len(w.variants)) for j in range(len(w.processors))}
        marked = sum(1 for w in work for row in w.marks for m in row if m is not None)
        return Plan(list(tasks.values()), n_candidates, n_models, len(parked), time.perf_counter() - t0, problems,
                    as_of, units, marked, may_advance=not model_query and limit is None)

    @staticmethod
    def _keep_missing(chunk: _Chunk, missing: list[str], tasks: dict[str, PlannedTask]) -> None:
        """Add the chunk's ``missing`` result ids (in the chunk's order) to ``tasks``."""
        position = -1
        for rid in missing:
            position = chunk.result_ids.index(rid, position + 1)
            g = bisect.bisect_right(chunk.starts, position) - 1
            model_identity, w, pairs, inference_ids = chunk.groups[g]
            i, j = pairs[position - chunk.starts[g]]
            inf = inference_ids[i]
            task = tasks.get(inf)
            if task is None:
                variant, identity, _ = w.variants[i]
                task = tasks[inf] = PlannedTask(model_identity["key"], w.module, variant, inf,
                                                {"model": model_identity["identity"], **identity}, [])
            task.processors.append(w.processors[j][0])
            task.units.append(w.units[i][j])

    def commit_marks(self, plan: Plan) -> int:
        """After the plan's tasks ran (or stopped): advance to ``plan.as_of`` the mark of every unit whose planned
        tasks all stand stored or as a failure recorded since then. Returns how many units were marked. A plan
        restricted to some models advances nothing."""
        if not plan.may_advance or plan.as_of is None:
            return 0
        unfinished: set[str] = set()
        for start in range(0, len(plan.tasks), CHUNK):
            part = plan.tasks[start:start + CHUNK]
            expected = {ident.result_id(t.inference_id, plan.units[u]["processor_fp"]): (t, u)
                        for t in part for u in t.units if u in plan.units}
            stored = self._db(self.store.existing_ids, "results", list(expected), what="recording planning marks")
            missing = [(t, u) for rid, (t, u) in expected.items() if rid not in stored]
            if not missing:
                continue
            ids = list({t.inference_id for t, _ in missing})
            failed = {d["_id"] for d in self._db(self.store.failures, {"_id": {"$in": ids}, "last_at": {"$gte": plan.as_of}},
                                                 {"_id": 1}, what="recording planning marks")}
            unfinished.update(u for t, u in missing if t.inference_id not in failed)
        complete = {uid: {k: v for k, v in unit.items() if k != "processor_fp"}
                    for uid, unit in plan.units.items() if uid not in unfinished}
        return self._db(self.store.advance_plan_marks, complete, plan.as_of, what="recording planning marks")

    # -- watermarks -----------------------------------------------------------------------------------
    def _read_marks(self, work: list[_Work], full: bool) -> None:
        """Each unit's mark (None: plan it for every model). A mark recorded with fewer allowed attempts than this
        cycle's is no mark: failures it parked may be due again."""
        ids = [u for w in work for row in w.units for u in row]
        marks = {} if full else self._db(self.store.plan_marks, ids, what="planning")
        for w in work:
            w.marks = [[self._usable_mark(marks.get(u)) for u in row] for row in w.units]
            w.unmarked = all(m is None for row in w.marks for m in row)
            w.every_candidate = [(i, list(range(len(w.processors)))) for i in range(len(w.variants))]
            w.every_pair = [(i, j) for i, js in w.every_candidate for j in js]

    def _usable_mark(self, mark: dict[str, Any] | None) -> dt.datetime | None:
        if mark is None or (mark.get("max_attempts") or 0) < self.max_attempts:
            return None
        return mark["complete_as_of"]

    def _find_due_failures(self, work: list[_Work], as_of: dt.datetime) -> None:
        """Per marked module, the models with a failure that came due for a retry since the module's mark."""
        for w in work:
            since = w.since
            if since is None:
                continue
            query = {"module": w.module.name, "permanent": {"$ne": True}, "attempts": {"$lt": self.max_attempts},
                     "retry_after": {"$gt": since - FAILURE_WINDOW_MARGIN, "$lte": as_of}}
            w.retry_models = {d["model_key"] for d in self._db(self.store.failures, query, {"model_key": 1}, what="planning")}

    @staticmethod
    def _wanted_units(w: _Work, model_key: str, changed_at: dt.datetime | None) -> list[tuple[int, list[int]]]:
        """The (variant, [processor]) candidates of module ``w`` to compute for this model: those of units without
        a mark, or marked before the model changed, or any when a failure of the model came due."""
        if w.unmarked or changed_at is None or model_key in w.retry_models:
            return w.every_candidate
        wanted = []
        for i, row in enumerate(w.marks):
            js = [j for j, mark in enumerate(row) if mark is None or changed_at >= mark]
            if js:
                wanted.append((i, js))
        return wanted

    def _models_to_visit(self, work: list[_Work], model_query: dict[str, Any] | None,
                         limit: int | None) -> Iterator[dict[str, Any]]:
        """Every model when a module has an unmarked unit; else those changed since the oldest mark and those
        with a failure that came due (as the query and limit select)."""
        sinces = [w.since for w in work]
        if not work or None in sinces:
            yield from self.store.iter_models(model_query, MODEL_PROJECTION, limit=limit)
            return
        changed = {"$or": [{"changed_at": {"$gte": min(sinces)}}, {"changed_at": None}]}
        query = {"$and": [model_query, changed]} if model_query else changed
        seen: set[str] = set()
        for model in self.store.iter_models(query, MODEL_PROJECTION, limit=limit):
            seen.add(model["_id"])
            yield model
        retry = sorted(set().union(*(w.retry_models for w in work)) - seen)
        left = None if limit is None else limit - len(seen)
        for start in range(0, len(retry), CHUNK):
            if left is not None and left <= 0:
                return
            ids = {"_id": {"$in": retry[start:start + CHUNK]}}
            for model in self.store.iter_models({"$and": [model_query, ids]} if model_query else ids, MODEL_PROJECTION,
                                                limit=left):
                if left is not None:
                    left -= 1
                yield model
