"""Planning watermarks (issue 15): a cycle in which little changed visits only what changed, and a watermark
never hides missing work. Real mongod, the fault tests' tiny real BERT classifier copied under several names, and
the real Executor; ``Planner.commit_marks`` is called after each run as the executor does."""
from __future__ import annotations

import datetime as dt
import shutil
import threading

import pytest
from pymongo import MongoClient, monitoring

import processors.classification  # noqa: F401  (registers the classification processors)
from core.store import Store, Update, utcnow
from modules.hf import HFTextClassification
from pipeline.executor import Executor
from pipeline.planner import MODEL_PROJECTION, Planner
from pipeline.write_batch import WriteBatch
from scraper.datasets import register_datasets
from scraper.local import scrape_local
from tests.fault_repos import DATASET, copy_repo, make_corrupt, session_fault_zoo

NAMES = ("a", "b", "c")
VARIANTS = ("original", "lowercase")


@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


class SecondModule(HFTextClassification):
    """Another module for the same models (a module added to the zoo after the first cycles)."""

    kind = "test-watermark-second"


@pytest.fixture
def zoo(fault_zoo, mongo_uri, db_name, tmp_path):
    """A store with tinysent registered and three copies of the tiny model (plus a corrupt one) scraped."""
    store = Store(mongo_uri, db_name)
    shutil.copytree(fault_zoo["dataset_dir"], tmp_path / "datasets" / DATASET)
    register_datasets(store, tmp_path / "datasets", log=lambda s: None)
    root = tmp_path / "zoo"
    for name in NAMES:
        copy_repo(fault_zoo["repos"]["good"], root / "wm" / name, f"wm/{name}")
    make_corrupt(fault_zoo["repos"]["good"], root / "wm" / "corrupt", "wm/corrupt")
    scrape_local(store, root, log=lambda s: None)
    yield {"store": store, "root": root, "home": tmp_path / "home"}
    store.close()


def module(variants=VARIANTS, processors=()):
    return HFTextClassification(dataset=DATASET, variants=variants, processors=processors)


def cycle(ctx, modules, commit=True, **kwargs):
    """One Executor.run, then (as the executor does after its run) the plan's marks committed; with ``commit``
    False every mark is dropped instead, so every cycle plans every candidate."""
    ex = Executor(ctx["store"], modules, ctx["home"], batch_size=16, progress=False, echo=lambda s: None,
                  scenarios=("offline",))
    summary = ex.run(**kwargs)
    if not commit:
        ctx["store"].drop_plan_marks()
        return summary, 0
    return summary, Planner(ctx["store"], modules, ex.datasets).commit_marks(summary.plan)


def plan(ctx, modules, **kwargs):
    return Planner(ctx["store"], modules, ctx["store"].datasets()).plan(**kwargs)


def test_no_change_plan_visits_no_model_and_an_update_is_planned_again(zoo):
    store, mods = zoo["store"], [module()]
    first, marked = cycle(zoo, mods)
    assert first.plan.models_visited == 4 and len(first.plan.tasks) == 8 and first.plan.marked_units == 0
    assert first.results_written == 6 and len(first.failures) == 2  # the corrupt copy fails to load
    assert marked == 2  # both units (original, lowercase): every task stored or a failure
    scrape_local(store, zoo["root"], log=lambda s: None)  # a scrape that finds nothing new changes nothing
    again = plan(zoo, mods)
    assert again.models_visited == 0 and again.candidates == 0 and again.tasks == [] and again.marked_units == 2
    assert plan(zoo, mods, full=True).models_visited == 4 and plan(zoo, mods, full=True).tasks == []
    # a new revision of one model (any file of a local repo changes it): only that model is visited and planned
    before = store.get_model("local/wm/b")
    (zoo["root"] / "wm" / "b" / "NOTES.txt").write_text("a new revision\n")
    scrape_local(store, zoo["root"], log=lambda s: None)
    after = store.get_model("local/wm/b")
    assert after["revision"] != before["revision"] and after["changed_at"] > before["changed_at"]
    assert store.get_model("local/wm/a")["changed_at"] == first_changed_at(store, "local/wm/a")
    updated = plan(zoo, mods)
    assert updated.models_visited == 1
    assert sorted((t.model_key, t.variant) for t in updated.tasks) == [("local/wm/b", v) for v in sorted(VARIANTS)]
    assert all(t.identity["model"]["revision"] == after["revision"] for t in updated.tasks)


def first_changed_at(store, key):
    return store.find_models({"_id": key}, {"changed_at": 1})[0]["changed_at"]


def test_new_variant_processor_or_module_is_planned_for_every_model(zoo):
    cycle(zoo, [module()])
    # a new variant: its unit has no mark, so every model is visited, and only the new variant is planned
    p = plan(zoo, [module(variants=(*VARIANTS, "uppercase"))])
    assert p.models_visited == 4 and p.marked_units == 2
    assert sorted((t.model_key, t.variant) for t in p.tasks) == [(f"local/wm/{n}", "uppercase")
                                                                 for n in sorted((*NAMES, "corrupt"))]
    # a new processor: every model's stored predictions are re-scored with it, nothing else
    p = plan(zoo, [module(processors=("classification", "mcc"))])
    assert p.models_visited == 4
    assert sorted((t.model_key, t.variant) for t in p.tasks) == sorted((f"local/wm/{n}", v) for n in NAMES for v in VARIANTS)
    assert all([str(s) for s in t.processors] == ["mcc"] and t.has_predictions for t in p.tasks)
    # a new module: planned for every model it accepts; the old module's marked units cost nothing more
    p = plan(zoo, [module(), SecondModule(dataset=DATASET, variants=VARIANTS)])
    assert p.models_visited == 4 and p.marked_units == 2
    assert {t.module.name for t in p.tasks} == {SecondModule(dataset=DATASET).name}
    assert len(p.tasks) == 8


def test_stopped_run_advances_no_mark_and_its_unfinished_tasks_are_planned(zoo, monkeypatch):
    monkeypatch.setattr(WriteBatch, "WRITE_EVERY_S", 0.0)  # each task stored as it finishes: the stop follows the first
    store, mods = zoo["store"], [module()]
    stopped, marked = cycle(zoo, mods, should_stop=lambda: store.count("results") >= 1)
    assert stopped.stopped and store.count("results") == 1 and marked == 0
    assert store.count("plan_marks") == 0
    nxt = plan(zoo, mods)
    assert nxt.models_visited == 4 and nxt.marked_units == 0
    done = {(r["model_key"], r["variant"]) for r in store.iter_results()}
    expected = {(f"local/wm/{n}", v) for n in (*NAMES, "corrupt") for v in VARIANTS} - done
    assert {(t.model_key, t.variant) for t in nxt.tasks} == expected
    finished, marked = cycle(zoo, mods)
    assert finished.results_written == 5 and marked == 2
    assert plan(zoo, mods).models_visited == 0


def test_restricted_plan_uses_marks_but_never_advances_them(zoo):
    store, mods = zoo["store"], [module()]
    partial, marked = cycle(zoo, mods, model_query={"name": "wm/a"})
    assert partial.plan.models_visited == 1 and partial.results_written == 2 and marked == 0
    assert plan(zoo, mods).models_visited == 4  # still no mark: the others were never seen
    limited, marked = cycle(zoo, mods, limit=2)
    assert marked == 0 and store.count("plan_marks") == 0


def test_deleted_result_is_planned_again(zoo):
    store, mods = zoo["store"], [module()]
    cycle(zoo, mods)
    assert plan(zoo, mods).tasks == []
    assert store.delete_results({"model_key": "local/wm/a", "variant": "original"}) == 1
    assert store.count("plan_marks") == 0
    again = plan(zoo, mods)
    assert [(t.model_key, t.variant, t.has_predictions) for t in again.tasks] == [("local/wm/a", "original", True)]
    # a deletion racing a cycle: marks the cycle commits afterwards for a pass started before it are not kept
    redo = cycle(zoo, mods)[0]
    assert redo.results_written == 1 and redo.rescored == 1
    stale = plan(zoo, mods)
    store.delete_results({"model_key": "local/wm/c"})
    assert Planner(store, mods, store.datasets()).commit_marks(stale) == 0 and store.count("plan_marks") == 0
    assert sorted(t.model_key for t in plan(zoo, mods).tasks) == ["local/wm/c"] * 2


def test_failed_task_due_for_retry_is_planned(zoo):
    store, mods = zoo["store"], [module()]
    cycle(zoo, mods)
    fails = store.failures({}, {"model_key": 1, "retry_after": 1, "attempts": 1})
    assert {f["model_key"] for f in fails} == {"local/wm/corrupt"} and len(fails) == 2
    assert all(f["retry_after"] > utcnow() for f in fails)
    assert plan(zoo, mods).models_visited == 0  # not due yet: nothing to visit
    # an hour later (the back-off): the failures are due; only the failed model is visited and retried
    store.db.failures.update_many({}, {"$set": {"retry_after": utcnow() - dt.timedelta(minutes=1)}})
    due = plan(zoo, mods)
    assert due.models_visited == 1
    assert sorted((t.model_key, t.variant, t.has_failure) for t in due.tasks) == [
        ("local/wm/corrupt", v, True) for v in sorted(VARIANTS)]
    retried, marked = cycle(zoo, mods)
    assert len(retried.failures) == 2 and marked == 2
    assert all(f["attempts"] == 2 for f in store.failures({}, {"attempts": 1}))
    assert plan(zoo, mods).models_visited == 0
    # parked after max_attempts: a later due time does not bring it back; a cycle allowing more attempts does
    store.db.failures.update_many({}, {"$set": {"attempts": 3, "retry_after": utcnow() - dt.timedelta(minutes=1)}})
    assert plan(zoo, mods).tasks == []
    more = Planner(store, mods, store.datasets(), max_attempts=5).plan()
    assert more.marked_units == 0 and {t.model_key for t in more.tasks} == {"local/wm/corrupt"}


def test_models_written_around_the_store_are_visited(zoo):
    """A model inserted without changed_at (by an older writer, or straight into MongoDB) is visited, and the next
    Store gives it a changed_at."""
    store, mods = zoo["store"], [module()]
    cycle(zoo, mods)
    doc = store.get_model("local/wm/a")
    doc.update(_id="local/wm/raw", name="wm/raw")
    doc.pop("changed_at")
    store.db.models.insert_one(doc)
    p = plan(zoo, mods)
    assert p.models_visited == 1 and {t.model_key for t in p.tasks} == {"local/wm/raw"}
    Store(store.uri, store.db_name).close()  # ensure_schema
    assert store.get_model("local/wm/raw")["changed_at"] >= p.as_of


class PauseModelWrites(monitoring.CommandListener):
    """A real pymongo command listener that holds its client's ``command`` (insert or update) into ``models``
    (after the write was registered in flight and stamped) until ``go`` is set: the window in which a planning
    pass may read past the models it writes."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.reached, self.go = threading.Event(), threading.Event()

    def started(self, event) -> None:
        if event.command_name == self.command and event.command.get(self.command) == "models":
            self.reached.set()
            assert self.go.wait(60), "the test never let the write go"

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


@pytest.mark.parametrize("write", ["insert", "update"])
def test_models_written_while_a_cycle_ran_are_visited_by_the_next(zoo, write):
    """A sync inserts models (or gives one a new revision) while a cycle plans, runs and records its marks, the
    write landing only after the pass read past them: the next cycle still visits them (their changed_at comes
    after the write was registered in flight, and the cycle's watermark is no later than that registration)."""
    store, mods = zoo["store"], [module()]
    cycle(zoo, mods)
    doc = store.get_model("local/wm/a")
    doc.pop("changed_at")
    new = [{**doc, "_id": f"local/wm/late{i}", "name": f"wm/late{i}"} for i in range(2)]
    listener = PauseModelWrites(write)
    writer = Store(store.uri, store.db_name, client=MongoClient(store.uri, tz_aware=True, event_listeners=[listener]))
    if write == "insert":
        expected, run_write = [d["_id"] for d in new], lambda: writer.insert_new_models(new)
    else:
        expected = ["local/wm/a"]
        run_write = lambda: writer.update_models([Update({"_id": "local/wm/a"}, set={"revision": "f" * 40})])  # noqa: E731
    thread = threading.Thread(target=run_write)
    thread.start()
    try:
        assert listener.reached.wait(60)
        assert store.planning_as_of() <= store.server_time()
        during, marked = cycle(zoo, mods)  # plans, runs and commits its marks while the write is held
        assert during.plan.models_visited == 0 and marked == 2
    finally:
        listener.go.set()
        thread.join(60)
        writer.close()
    assert not store.db.model_writes_in_flight.count_documents({})  # the write unregistered itself
    after = plan(zoo, mods)
    assert sorted(t.model_key for t in after.tasks) == sorted(key for key in expected for _ in VARIANTS)
    assert after.models_visited == len(expected)


def test_a_stale_write_registration_stops_holding_watermarks_back(zoo):
    """A model write whose writer died long ago (its registration left behind) is dropped; a live one holds the
    watermark at its registration."""
    store = zoo["store"]
    now = store.server_time()
    store.db.model_writes_in_flight.insert_many([{"_id": "dead", "since": now - Store.STALE_MODEL_WRITE * 2},
                                                 {"_id": "live", "since": now - dt.timedelta(minutes=3)}])
    assert store.planning_as_of() == now - dt.timedelta(minutes=3)
    assert [d["_id"] for d in store.db.model_writes_in_flight.find()] == ["live"]
    store.db.model_writes_in_flight.delete_one({"_id": "live"})
    assert store.planning_as_of() >= now


def test_changed_at_moves_only_when_planning_fields_change(zoo):
    store = zoo["store"]
    doc = {"_id": "huggingface/org/x", "name": "org/x", "source": "huggingface", "task": "text-classification",
           "revision": "1" * 40, "downloads": 5}
    store.upsert_models([doc])
    t1 = first_changed_at(store, doc["_id"])
    store.upsert_models([{**doc, "downloads": 7}])  # a listing field planning does not read
    assert first_changed_at(store, doc["_id"]) == t1
    store.upsert_models([{**doc, "datasets": [DATASET]}])
    t2 = first_changed_at(store, doc["_id"])
    assert t2 > t1
    assert not store.insert_new_models([{"_id": "huggingface/org/y", "name": "org/y", "source": "huggingface",
                                         "status": "active"}])
    assert first_changed_at(store, "huggingface/org/y") >= t2
    # every top-level field planning reads is one whose change moves changed_at
    assert {k.split(".")[0] for k in MODEL_PROJECTION} - {"changed_at"} <= set(Store.PLANNING_FIELDS)


def test_results_with_marks_equal_results_without(fault_zoo, mongo_uri, db_name, tmp_path):
    """The same cycles (a first one; a model updated and a variant added; a model added) in two databases, one
    planning with watermarks and one always visiting everything: the same result ids, and none missing."""
    stores = []
    for label, commit in (("marks", True), ("full", False)):
        sub = tmp_path / label
        store = Store(mongo_uri, f"{db_name}_{label}")
        stores.append(store)
        shutil.copytree(fault_zoo["dataset_dir"], sub / "datasets" / DATASET)
        register_datasets(store, sub / "datasets", log=lambda s: None)
        root = sub / "zoo"
        for name in NAMES[:2]:
            copy_repo(fault_zoo["repos"]["good"], root / "wm" / name, f"wm/{name}")
        ctx = {"store": store, "root": root, "home": sub / "home"}
        scrape_local(store, root, log=lambda s: None)
        cycle(ctx, [module()], commit=commit)
        (root / "wm" / "b" / "NOTES.txt").write_text("a new revision\n")
        scrape_local(store, root, log=lambda s: None)
        summary = cycle(ctx, [module(variants=(*VARIANTS, "uppercase"))], commit=commit)[0]
        assert summary.plan.models_visited == 2 and summary.results_written == 4  # a: uppercase; b: all three
        copy_repo(fault_zoo["repos"]["good"], root / "wm" / "c", "wm/c")
        scrape_local(store, root, log=lambda s: None)
        summary = cycle(ctx, [module(variants=(*VARIANTS, "uppercase"))], commit=commit)[0]
        assert summary.plan.models_visited == (1 if commit else 3)
        assert summary.results_written == 3
    try:
        with_marks, without = ({r["_id"] for r in s.iter_results()} for s in stores)
        assert with_marks == without and len(with_marks) == 4 + 4 + 3
        assert stores[0].count("plan_marks") == 3 and stores[1].count("plan_marks") == 0
        again = Planner(stores[0], [module(variants=(*VARIANTS, "uppercase"))], stores[0].datasets()).plan(full=True)
        assert again.models_visited == 3 and again.tasks == []
    finally:
        for s in stores:
            s.client.drop_database(s.db_name)
            s.close()
