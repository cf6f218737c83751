"""The planner's lookup of stored results (issue 15): the stored result ids of a chunk's models are read from the
(model_key, _id) index and the rest looked up by ``_id``. The tasks planned must be exactly those a plain reference
plans (every candidate's result id from core.identity, checked one by one with ``Store.existing_ids``), on a real
mongod with stored, missing, failed and re-scorable tasks and a result stored under another model's key."""
from __future__ import annotations

import datetime as dt
import random

import pytest

import processors.classification  # noqa: F401  (registers the classification processors)
import processors.mcc  # noqa: F401  (registers mcc: a second processor per task)
from core import identity as ident
from core.store import Store, utcnow
from modules.hf import HFImageClassification
from pipeline import planner as planner_module
from pipeline.planner import Planner

DATASETS = ("look_a", "look_b")
VARIANTS = ("original", "greyscale", "flipped")


def model_doc(i: int) -> dict:
    task = "text-classification" if i % 7 == 3 else "image-classification"  # every 7th: no module accepts it
    return {"_id": f"huggingface/org{i % 3}/m-{i}", "name": f"org{i % 3}/m-{i}", "source": "huggingface",
            "status": "active", "task": task, "datasets": list(DATASETS), "revision": f"{i:040x}"}


def result_doc(rid: str, task_inf: str, model_key: str, module, variant: str) -> dict:
    return {"_id": rid, "inference_id": task_inf, "model_key": model_key, "model_revision": "r", "module": module.name,
            "processor": "classification", "dataset": module.dataset, "split": "test", "dataset_revision": "r",
            "variant": variant, "overall": {}, "created_at": utcnow()}


@pytest.fixture
def store(mongo_uri, db_name):
    store = Store(mongo_uri, db_name)
    for name in DATASETS:
        store.upsert_dataset({"name": name, "datatype": "image", "classes": [{"id": 0, "label": "x"}, {"id": 1, "label": "y"}],
                              "splits": [{"name": "test", "total": 2, "class_counts": {"x": 1, "y": 1}}],
                              "revision": f"rev-{name}", "supported_variants": list(VARIANTS[1:]), "path": "/nonexistent"})
    yield store
    store.close()


def modules() -> list:
    return [HFImageClassification(dataset=DATASETS[0], variants=VARIANTS, processors=("classification", "mcc")),
            HFImageClassification(dataset=DATASETS[1], variants=VARIANTS)]


def candidates(planner: Planner, store: Store):
    """Every candidate in the planner's order: (model, module work, variant index, processor index, inference id,
    result id), computed one by one from core.identity."""
    work = [planner.module_work(m) for m in planner.modules]
    for model in store.iter_models():
        for w in work:
            if not w.module.accepts(model, store.datasets()):
                continue
            for i, (_, _, work_fp) in enumerate(w.variants):
                inf = ident.inference_id(ident.model_fingerprint(model), work_fp)
                for j, (_, proc_fp) in enumerate(w.processors):
                    yield model, w, i, j, inf, ident.result_id(inf, proc_fp)


def reference_plan(planner: Planner, store: Store, max_attempts: int = 3) -> list[tuple]:
    """The tasks to plan, computed plainly: missing results by ``existing_ids``, parked failures left out."""
    everything = list(candidates(planner, store))
    stored = store.existing_ids("results", [c[5] for c in everything])
    tasks: dict[str, dict] = {}
    for model, w, i, j, inf, rid in everything:
        if rid in stored:
            continue
        task = tasks.setdefault(inf, {"model": model["_id"], "module": w.module.name, "variant": w.variants[i][0],
                                      "processors": [], "units": []})
        task["processors"].append(str(w.processors[j][0]))
        task["units"].append(w.units[i][j])
    parked, failed = store.failure_states(list(tasks), max_attempts)
    with_predictions = store.existing_ids("inferences", list(tasks))
    return [(inf, t["model"], t["module"], t["variant"], t["processors"], t["units"], inf in with_predictions,
             inf in failed) for inf, t in tasks.items() if inf not in parked]


def as_rows(plan) -> list[tuple]:
    return [(t.inference_id, t.model_key, t.module.name, t.variant, [str(p) for p in t.processors], t.units,
             t.has_predictions, t.has_failure) for t in plan.tasks]


def test_plan_equals_the_plain_reference_on_a_mixed_store(store, monkeypatch):
    store.insert_new_models([model_doc(i) for i in range(40)])
    planner = Planner(store, modules(), store.datasets())
    everything = list(candidates(planner, store))
    rng = random.Random(7)
    stored, other_key, unstored = [], [], []
    for c in everything:
        (stored if rng.random() < 0.7 else unstored).append(c)
    other_key, stored = stored[:5], stored[5:]  # stored under another model's key: still stored
    docs = [result_doc(rid, inf, model["_id"], w.module, w.variants[i][0]) for model, w, i, j, inf, rid in stored]
    docs += [result_doc(rid, inf, "huggingface/someone/else", w.module, w.variants[i][0])
             for model, w, i, j, inf, rid in other_key]
    store.db.results.insert_many(docs)
    # failures of missing tasks: one failed for good (parked), one due for a retry, one waiting for its retry
    missing_infs = list(dict.fromkeys(c[4] for c in unstored))
    now = utcnow()
    for inf, fields in zip(missing_infs, ({"permanent": True}, {"retry_after": now - dt.timedelta(hours=1)},
                                          {"retry_after": now + dt.timedelta(hours=1)})):
        store.record_failure(inf, {"model_key": "k", "error_class": "inference_error", "reason": "test", **fields})
    store.db.inferences.insert_one({"_id": missing_infs[3], "model_key": "k", "model_revision": "r", "module": "m",
                                    "dataset": "d", "split": "test", "variant": "original", "runtime": {}, "n_samples": 1})
    expected = reference_plan(planner, store)
    assert len(expected) == len(missing_infs) - 2  # the parked and the waiting failures are left out
    assert any(row[6] for row in expected) and any(row[7] for row in expected)  # re-scorable, and due for a retry
    assert any(len(row[4]) == 1 for row in expected) and any(len(row[4]) == 2 for row in expected)
    for chunk in (20_000, 7, 1):  # one chunk; many, ending inside and between models' candidates
        monkeypatch.setattr(planner_module, "CHUNK", chunk)
        plan = planner.plan(full=True)
        assert as_rows(plan) == expected, chunk
        assert plan.candidates == len(everything) and plan.skipped_failed == 2


def test_missing_results_equals_existing_ids(store):
    """Store.missing_results against Store.existing_ids: in order, duplicates kept, ids stored under another model
    key found, and the same answer when the models hold more stored ids than one reply array."""
    keys = [f"huggingface/o/m{i}" for i in range(4)]
    ids = [f"{i:064x}" for i in range(60)]
    owner = {rid: keys[n % 4] for n, rid in enumerate(ids)}
    stored = ids[::3] + ids[1::9]
    docs = [{"_id": rid, "inference_id": "i", "model_key": owner[rid], "model_revision": "r", "module": "m",
             "processor": "p", "dataset": "d", "split": "s", "dataset_revision": "r", "variant": "v", "overall": {},
             "created_at": utcnow()} for rid in stored]
    docs[0]["model_key"] = "huggingface/o/elsewhere"
    store.db.results.insert_many(docs)
    asked = ids + ids[:5]  # a repeated id is answered for each time it is asked
    existing = store.existing_ids("results", asked)
    expected = [rid for rid in asked if rid not in existing]
    assert store.missing_results(asked, keys) == expected
    assert len(expected) == 33 + 2  # 27 of the 60 stored; ids[2] and ids[4] asked twice
    store.IDS_PER_REPLY = 4  # the models' stored ids no longer fit one array: they are read as documents
    assert store.missing_results(asked, keys) == expected
    assert store.missing_results([], keys) == [] and store.missing_results(ids[:3], []) == [ids[2]]


def test_schema_replaces_the_model_key_index(mongo_uri, db_name):
    """A store created before the (model_key, _id) index loses the model_key index it supersedes."""
    client_store = Store(mongo_uri, db_name, init_schema=False)
    try:
        client_store.db.results.create_index([("model_key", 1)])
        client_store.ensure_schema()
        indexes = {tuple(v["key"]) for v in client_store.db.results.index_information().values()}
        assert (("model_key", 1), ("_id", 1)) in indexes and (("model_key", 1),) not in indexes
        client_store.ensure_schema()  # again: nothing to drop, no error
    finally:
        client_store.close()
