"""Many small models (issue 15): a cycle run in one process reads the models' documents ahead (ModelDocs: as far
as the models come fast enough to use them) instead of one round trip per model, writes its run record (the
running task's progress and the run's counts) at most every RunRecord.WRITE_EVERY_S seconds instead of at every
task's start, and stores finished tasks together (WriteBatch: one round trip per kind of write for the tasks of
WriteBatch.WRITE_EVERY_S seconds) instead of four round trips a task. What it stores must be exactly what the path
of an isolated child or a Ray worker stores (evaluate_model with nothing read ahead, each task stored as it
finishes); a crash or a stop must leave every finished model whole and nothing twice; an error while computing or
storing a task's results (a processor's, a document the server or the client refuses) must be that task's stored
failure and no other's; the run's counts must survive a short MongoDB outage as before (retried), the progress
alone being best effort.

Real mongod (conftest), real tiny trained models (tests/fault_repos.py); the seven fault-zoo models named below
are copies of the same trained model, so each must score the accuracy plain transformers computes.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import pytest
from pymongo import MongoClient, monitoring

import processors.classification  # noqa: F401  (registers the classification processor)
from core.store import Store
from modules.hf import HFTextClassification
from pipeline import executor as executor_module
from pipeline.executor import Executor
from pipeline.progress import NoBar, RunRecord, RunSummary
from pipeline.write_batch import WriteBatch
from processors.base import PROCESSORS, Processor, register_processor
from scraper.datasets import register_datasets
from scraper.local import scrape_local
from tests.fault_repos import DATASET, session_fault_zoo
from tests.manual_clock import ManualClock
from tests.test_faults import assert_correct, assert_no_duplicates, failures, only

#: fault-zoo models with the good model's weights (their names only matter to the fault tests' own modules)
COPIES = ("good", "hang", "kill", "memhog", "oom", "oom-always", "zz-after")  # in the order a cycle visits them
VARIANTS = ("original", "lowercase")
#: fields that differ between two runs of the same work (when, which run, how fast, on what machine)
VOLATILE = {"run_id", "created_at", "runtime", "env", "first_at", "last_at", "retry_after", "traceback"}


class Commands(monitoring.CommandListener):
    """The MongoDB commands a client sends (command name, collection, filter), and each write's write concern."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any]] = []
        self.write_concerns: list[tuple[str, str, Any]] = []  # (command name, collection, writeConcern or None)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        collection = target if isinstance(target, str) else ""
        self.seen.append((event.command_name, collection, event.command.get("filter")))
        if event.command_name in ("insert", "update", "delete"):
            self.write_concerns.append((event.command_name, collection, event.command.get("writeConcern")))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def count(self, name: str, collection: str, where=lambda flt: True) -> int:
        return sum(1 for n, c, f in self.seen if n == name and c == collection and where(f))


@pytest.fixture(scope="session")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


def open_store(uri: str, db: str, fault_zoo, listener: Commands | None = None) -> Store:
    client = MongoClient(uri, tz_aware=True, event_listeners=[listener] if listener else [])
    store = Store(uri, db, client=client)
    register_datasets(store, fault_zoo["datasets"], log=lambda *a: None)
    scrape_local(store, fault_zoo["zoo"], log=lambda *a: None)
    return store


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def make_executor(store: Store, home, module, **kwargs) -> Executor:
    return Executor(store, [module], home, batch_size=16, progress=False, echo=lambda s: None, scenarios=("offline",),
                    **kwargs)


def stored(store: Store, collection: str) -> dict[str, dict[str, Any]]:
    return {d["_id"]: {k: v for k, v in d.items() if k not in VOLATILE} for d in store.db[collection].find()}


@pytest.mark.parametrize("seconds_a_model", [0.0, 3.0])
def test_model_docs_read_ahead_while_models_come_fast_and_one_at_a_time_when_they_are_slow(
        mongo_uri, db_name, monkeypatch, seconds_a_model):
    commands = Commands()
    store = Store(mongo_uri, db_name, client=MongoClient(mongo_uri, tz_aware=True, event_listeners=[commands]))
    try:
        keys = [f"local/m{i:02d}" for i in range(40)]
        model = lambda key: {"_id": key, "name": key[6:], "source": "local", "status": "active"}  # noqa: E731
        store.db.models.insert_many([model(key) for key in keys])
        clock = ManualClock()
        monkeypatch.setattr(executor_module, "time", clock)
        docs = executor_module.ModelDocs(store, keys, lambda fn, *a, what="", **kw: fn(*a, **kw))
        commands.seen.clear()
        for key in keys:
            assert docs.get(key) == model(key)
            clock.now += seconds_a_model
        sizes = [len(flt["_id"]["$in"]) for name, collection, flt in commands.seen
                 if name == "find" and collection == "models"]
        if seconds_a_model == 0.0:  # every document read ahead is used in time: 2 reads for 40 models
            assert sizes == [32, 8]
        else:  # each read ages out before the next model: after the first, at most 2 documents a read, 1.5 a model
            assert sizes[0] == 32 and set(sizes[1:]) == {1, 2} and sum(sizes[1:]) <= 1.5 * len(keys)
        assert docs.get("local/not-there") is None  # looked up alone, found nowhere
    finally:
        store.close()


def test_a_cycle_stores_what_storing_each_task_at_once_stores(mongo_uri, db_name, fault_zoo, offline, tmp_path,
                                                              monkeypatch):
    # one run-record write, one read of the models' documents and one store of the finished tasks for the whole
    # cycle, so their counts are exact
    monkeypatch.setattr(RunRecord, "WRITE_EVERY_S", 3600.0)
    monkeypatch.setattr(executor_module, "MODEL_DOC_MAX_AGE_S", 3600.0)
    monkeypatch.setattr(WriteBatch, "WRITE_EVERY_S", 3600.0)
    names = (*COPIES, "corrupt", "nan")
    commands = Commands()
    store = open_store(mongo_uri, db_name, fault_zoo, commands)
    reference = open_store(mongo_uri, f"{db_name}_sync", fault_zoo)
    try:
        module = HFTextClassification(dataset=DATASET, variants=VARIANTS)
        commands.seen.clear()
        summary = make_executor(store, tmp_path / "home", module).run(only(*names))
        run = store.last_run()
        assert run["status"] == "done" and not summary.stopped
        assert summary.inferences == summary.results_written == len(COPIES) * len(VARIANTS)
        assert run["counts"] == summary.counts() and run["counts"]["failures"] == 2 * len(VARIANTS)
        assert {name: f["error_class"] for name, f in failures(store).items()} == {"corrupt": "model_load",
                                                                                  "nan": "inference_error"}
        for name in COPIES:
            assert_correct(store, fault_zoo, name, variants=VARIANTS)
        assert_no_duplicates(store)
        # the run record: its counts after the first model (whose load failed), the first task's progress when it
        # started, then only finish_run; the models' documents: one read ahead for all nine, none read one by one
        assert commands.count("update", "runs") == 3
        assert run["current"]["model"] == "local/fault/good" and run["current"]["variant"] == "original"
        by_id = lambda flt: isinstance(flt, dict) and isinstance(flt.get("_id"), str)  # noqa: E731
        assert commands.count("find", "models", by_id) == 0
        assert commands.count("find", "models", lambda flt: isinstance(flt, dict) and "$in" in str(flt.get("_id"))) >= 1
        # the 14 finished tasks: one round trip per kind of write (the failures were recorded as they happened)
        assert [commands.count(*write) for write in (("update", "predictions"), ("delete", "predictions"),
                                                     ("update", "inferences"), ("insert", "results"))] == [1, 1, 1, 1]

        # the reference: each group evaluated by evaluate_model with nothing set up by evaluate_groups (an isolated
        # child's and a Ray worker's path): models read one by one, a run-record write at every task's start
        ref = make_executor(reference, tmp_path / "home", module)
        plan = ref.plan(only(*names))
        groups: dict[str, list] = defaultdict(list)
        for task in plan.inference_tasks:
            groups[task.model_key].append(task)
        ref_summary = RunSummary("reference", plan)
        for model_key, tasks in groups.items():
            ref.evaluate_model(model_key, tasks, "cpu", ref_summary, NoBar(), None)
        assert ref_summary.counts() == summary.counts()
        for collection in ("inferences", "predictions", "results", "failures"):
            ours, theirs = stored(store, collection), stored(reference, collection)
            assert ours.keys() == theirs.keys() and len(ours) > 0, collection
            for _id in ours:
                assert ours[_id] == theirs[_id], (collection, _id)
    finally:
        reference.client.drop_database(f"{db_name}_sync")
        reference.close()
        store.close()


class CrashingModule(HFTextClassification):
    """A test-only module: loading the model named ``crash_on`` raises Crash (not an Exception: the cycle ends)."""

    kind = "test-crash-text"
    crash_on: ClassVar[str | None] = None

    def load(self, model, device):
        if model["name"] == self.crash_on:
            raise Crash(f"crashed while loading {model['name']}")
        return super().load(model, device)


class Crash(BaseException):
    pass


def test_a_crash_mid_cycle_leaves_every_finished_model_whole(mongo_uri, db_name, fault_zoo, offline, tmp_path,
                                                              monkeypatch):
    store = open_store(mongo_uri, db_name, fault_zoo)
    try:
        module = CrashingModule(dataset=DATASET, variants=VARIANTS)
        monkeypatch.setattr(CrashingModule, "crash_on", "fault/oom")  # the fifth model
        with pytest.raises(Crash):
            make_executor(store, tmp_path / "home", module).run(only(*COPIES))
        assert store.last_run()["status"] == "crashed"
        finished = COPIES[:4]
        for name in finished:
            assert_correct(store, fault_zoo, name, variants=VARIANTS, module_kind=CrashingModule.kind)
        assert store.count("results") == store.count("inferences") == len(finished) * len(VARIANTS)
        assert_no_duplicates(store)

        monkeypatch.setattr(CrashingModule, "crash_on", None)
        summary = make_executor(store, tmp_path / "home", module).run(only(*COPIES))
        assert summary.results_written == (len(COPIES) - len(finished)) * len(VARIANTS) and not summary.failures
        for name in COPIES:
            assert_correct(store, fault_zoo, name, variants=VARIANTS, module_kind=CrashingModule.kind)
        assert_no_duplicates(store)
    finally:
        store.close()


def test_a_stop_mid_cycle_stores_every_finished_task_and_counts_them(mongo_uri, db_name, fault_zoo, offline, tmp_path):
    store = open_store(mongo_uri, db_name, fault_zoo)
    try:
        loads: list[str] = []

        class Counting(HFTextClassification):
            def load(self, model, device):
                loads.append(model["name"])
                return super().load(model, device)

        module = Counting(dataset=DATASET, variants=VARIANTS)
        # asked to stop once the third model is loaded: before its first task
        summary = make_executor(store, tmp_path / "home", module).run(only(*COPIES), should_stop=lambda: len(loads) >= 3)
        assert summary.stopped and len(loads) == 3
        run = store.last_run()
        assert run["status"] == "stopped"
        assert run["counts"]["results_written"] == summary.results_written == store.count("results") == 2 * len(VARIANTS)
        for name in COPIES[:2]:
            assert_correct(store, fault_zoo, name, variants=VARIANTS)
        assert store.count("inferences", {"model_name": f"fault/{COPIES[2]}"}) == 0
        assert_no_duplicates(store)
    finally:
        store.close()


@pytest.fixture
def failing_processor():
    """A test-only processor (for text classification, run only where a module names it) that goes wrong on the task
    it scores ``fail_on``-th, as ``how`` says: its compute raises ("raise"), or its result is refused by the server
    ("server": ``overall`` not an object, against the results collection's validator) or by the client ("client": a
    value BSON cannot encode)."""

    @register_processor
    class FailsOnce(Processor):
        name = "test-fails-once"
        tasks = ("text-classification",)
        fail_on: ClassVar[int] = 2
        how: ClassVar[str] = "raise"
        computed: ClassVar[int] = 0

        def update(self, batch) -> None:
            self.n = len(batch)

        def merge(self, other) -> None:
            self.n += other.n

        def compute(self) -> dict[str, Any]:
            type(self).computed += 1
            if type(self).computed != self.fail_on:
                return {"overall": {"n": self.n}}
            if self.how == "raise":
                raise ProcessorFailure(f"computation {self.computed} failed")
            return {"overall": "not an object"} if self.how == "server" else {"overall": {"n": object()}}

    yield FailsOnce
    PROCESSORS.unregister(FailsOnce.name)


class ProcessorFailure(RuntimeError):
    error_class = "processor_error"


def test_finished_tasks_predictions_are_acknowledged_applied_and_their_results_after_them_wait_for_durability(
        mongo_uri, db_name, fault_zoo, offline, tmp_path, monkeypatch):
    """Store.save_tasks: the held tasks' chunks (and the removal of chunks an earlier attempt left beyond them) and
    their inference records are sent with w=1; their results, after them, with the client's default write concern
    (majority on the replica set the tests run), which commits the writes applied before it."""
    monkeypatch.setattr(WriteBatch, "WRITE_EVERY_S", 3600.0)  # both tasks stored together at the cycle's end
    commands = Commands()
    store = open_store(mongo_uri, db_name, fault_zoo, commands)
    try:
        module = HFTextClassification(dataset=DATASET, variants=VARIANTS)
        # an earlier attempt that stored one chunk more than this task writes: it must be gone afterwards
        inference_id = make_executor(store, tmp_path / "home", module).plan(only("good")).inference_tasks[0].inference_id
        store.db.predictions.insert_one({"_id": f"{inference_id}:000099", "inference_id": inference_id, "chunk": 99})
        commands.write_concerns.clear()
        summary = make_executor(store, tmp_path / "home", module).run(only("good"))
        assert summary.results_written == len(VARIANTS) and not summary.failures
        assert store.db.predictions.count_documents({"inference_id": inference_id, "chunk": 99}) == 0
        assert_no_duplicates(store)
        by_collection = defaultdict(set)
        for name, collection, concern in commands.write_concerns:
            by_collection[(name, collection)].add(None if concern is None else tuple(sorted(concern.items())))
        assert by_collection[("update", "predictions")] == {(("w", 1),)}
        assert by_collection[("delete", "predictions")] == {(("w", 1),)}
        assert by_collection[("update", "inferences")] == {(("w", 1),)}
        assert by_collection[("insert", "results")] == {None}
        # and the order: the inference records after the chunks, the results after the inference records
        order = [(n, c) for n, c, _ in commands.write_concerns if c in ("predictions", "inferences", "results")]
        assert order == [("update", "predictions"), ("delete", "predictions"), ("update", "inferences"),
                         ("insert", "results")]
    finally:
        store.close()


@pytest.mark.parametrize("how", ["raise", "server", "client"])
def test_a_processor_error_or_a_refused_write_is_that_tasks_failure_and_the_others_are_stored(
        mongo_uri, db_name, fault_zoo, offline, tmp_path, monkeypatch, failing_processor, how):
    monkeypatch.setattr(WriteBatch, "WRITE_EVERY_S", 3600.0)  # the three tasks held and stored together
    monkeypatch.setattr(failing_processor, "how", how)
    store = open_store(mongo_uri, db_name, fault_zoo)
    try:
        module = HFTextClassification(dataset=DATASET, processors=("classification", failing_processor.name))
        names = COPIES[:3]
        summary = make_executor(store, tmp_path / "home", module).run(only(*names))
        assert store.last_run()["status"] == "done"
        # the second task's failing processor (its error, or the server's or the client's words on its refused
        # result) is its stored failure, and no other task's. Its classification result is stored when the processor
        # raised or the server refused that one document; a batch the client cannot encode is stored again one task
        # at a time, and the task at fault keeps its predictions but none of its results
        assert [f["model_name"] for f in summary.failures] == [f"fault/{names[1]}"]
        failure = failures(store)[names[1]]
        if how == "raise":
            assert failure["error_class"] == "processor_error" and failure["reason"] == "computation 2 failed"
        else:
            assert ("validation" if how == "server" else "cannot encode") in failure["reason"].lower(), failure["reason"]
        lost = 2 if how == "client" else 1
        assert summary.results_written == store.count("results") == 2 * len(names) - lost
        assert store.count("results", {"processor": failing_processor.name}) == len(names) - 1
        assert store.count("results", {"model_name": f"fault/{names[1]}"}) == 2 - lost
        assert store.count("inferences") == len(names)
        # once its retry is due, the next cycle re-scores what is missing from the stored predictions (no model
        # loaded), and every result is right
        store.db.failures.update_many({}, {"$set": {"retry_after": executor_module.utcnow()}})
        again = make_executor(store, tmp_path / "home", module).run(only(*names))
        assert again.models_loaded == 0 and again.rescored == 1 and again.results_written == lost
        for name in names:
            assert_correct(store, fault_zoo, name)
        assert_no_duplicates(store)
        assert store.count("failures") == 0
    finally:
        store.close()


@pytest.mark.parametrize("how", ["server", "client"])
def test_a_rescored_result_refused_is_a_failure_not_a_rescored_task(
        mongo_uri, db_name, fault_zoo, offline, tmp_path, monkeypatch, failing_processor, how):
    """A new processor re-scores three stored tasks; the store refuses the second one's result: that task is a
    failure, and the run counts two re-scored tasks, not three."""
    monkeypatch.setattr(WriteBatch, "WRITE_EVERY_S", 3600.0)
    monkeypatch.setattr(failing_processor, "how", how)
    store = open_store(mongo_uri, db_name, fault_zoo)
    try:
        names = COPIES[:3]
        first = make_executor(store, tmp_path / "home", HFTextClassification(dataset=DATASET)).run(only(*names))
        assert first.results_written == len(names) and not first.failures
        module = HFTextClassification(dataset=DATASET, processors=("classification", failing_processor.name))
        again = make_executor(store, tmp_path / "home", module).run(only(*names))
        assert again.models_loaded == 0 and again.inferences == 0
        assert [f["model_name"] for f in again.failures] == [f"fault/{names[1]}"]
        assert again.rescored == len(names) - 1 and again.results_written == len(names) - 1
        assert store.last_run()["counts"]["rescored"] == len(names) - 1
        assert store.count("results", {"processor": failing_processor.name}) == len(names) - 1
        assert list(failures(store)) == [names[1]]
    finally:
        store.close()


def test_finished_tasks_are_held_for_at_most_write_every_s_seconds_of_work(mongo_uri, db_name, monkeypatch):
    """WriteBatch.due: a task is held while the tasks held stand for less than WRITE_EVERY_S seconds since the last
    store, or MAX_CHUNKS chunks; every_s=0 stores each task as it finishes."""
    from pipeline import write_batch as write_batch_module
    from pipeline.planner import PlannedTask

    clock = ManualClock()
    monkeypatch.setattr(write_batch_module, "time", clock)
    store = Store(mongo_uri, db_name)
    try:
        written: list[int] = []
        batch = WriteBatch(store, lambda fn, *a, what="", **kw: fn(*a, **kw), written.append, lambda task, exc: None)
        tasks = [PlannedTask("m", None, "original", f"inf-{i}", {}, []) for i in range(3)]  # (only their ids are read)
        assert not batch.due()  # nothing held
        held = batch.hold(tasks[0])
        held.results.append(("res-0", {"inference_id": "inf-0", "model_key": "m", "model_revision": "r", "module": "x",
                                       "processor": "p", "dataset": "d", "split": "s", "dataset_revision": "1",
                                       "variant": "original", "overall": {}, "created_at": executor_module.utcnow()}))
        clock.now += WriteBatch.WRITE_EVERY_S / 2
        assert not batch.due()
        clock.now += WriteBatch.WRITE_EVERY_S / 2
        assert batch.due()
        batch.flush()
        assert written == [1] and store.count("results") == 1 and not batch.due()
        held = batch.hold(tasks[1])  # many chunks: due at once
        batch.add_inference(held, {}, [{"n": i} for i in range(WriteBatch.MAX_CHUNKS)])
        assert batch.due()
        immediate = WriteBatch(store, lambda fn, *a, what="", **kw: fn(*a, **kw), written.append, lambda t, e: None,
                               every_s=0)
        immediate.hold(tasks[2])
        assert immediate.due()
    finally:
        store.close()


def test_how_long_finished_tasks_are_held_is_an_operators_setting(mongo_uri, db_name, tmp_path, monkeypatch):
    """ZOOEVAL_WRITE_EVERY_S: unset, WRITE_EVERY_S; 0, each finished task stored at once; a value that is not a number
    of seconds >= 0 stops `zooeval run` before anything is recorded, and `zooeval demo` before its build, naming the
    variable."""
    from click.testing import CliRunner

    from service.cli import main

    store = Store(mongo_uri, db_name)
    try:
        def batch() -> WriteBatch:
            return WriteBatch(store, lambda fn, *a, what="", **kw: fn(*a, **kw), lambda n: None, lambda t, e: None)

        monkeypatch.delenv("ZOOEVAL_WRITE_EVERY_S", raising=False)
        assert batch().every_s == WriteBatch.WRITE_EVERY_S
        monkeypatch.setenv("ZOOEVAL_WRITE_EVERY_S", "0")
        from pipeline.planner import PlannedTask

        zero = batch()
        zero.hold(PlannedTask("m", None, "original", "inf-0", {}, []))
        assert zero.every_s == 0 and zero.due()
        monkeypatch.setenv("ZOOEVAL_WRITE_EVERY_S", " 2.5 ")
        assert batch().every_s == 2.5
        for bad in ("soon", "-1", "nan"):
            monkeypatch.setenv("ZOOEVAL_WRITE_EVERY_S", bad)
            with pytest.raises(ValueError, match=f"ZOOEVAL_WRITE_EVERY_S='{bad}': expected a number of seconds >= 0"):
                batch()
            with pytest.raises(ValueError, match="ZOOEVAL_WRITE_EVERY_S"):
                Executor(store, [], tmp_path)
        result = CliRunner().invoke(main, ["--home", str(tmp_path), "--mongo-uri", mongo_uri, "--db", db_name,
                                           "run", "--no-progress"])
        assert result.exit_code == 1, result.output
        assert "ZOOEVAL_WRITE_EVERY_S='nan': expected a number of seconds >= 0" in result.output
        assert store.count("runs") == 0
        demo = CliRunner().invoke(main, ["--home", str(tmp_path), "--mongo-uri", mongo_uri, "--db", db_name,
                                         "demo", "--quick", "--no-progress"])
        assert demo.exit_code == 1 and "ZOOEVAL_WRITE_EVERY_S='nan'" in demo.output, demo.output
        assert not (tmp_path / "zoo").exists() and store.count("runs") == 0  # stopped before the build
    finally:
        store.close()
