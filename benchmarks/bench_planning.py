"""Planning at Hub scale (issue 15): stored models x 2 modules x 6 variants x 1 processor, 99% already done.

Against the real mongod, with the real Planner (the Executor's steps 1-3: module selection, task creation, task
filtering) and its watermarks. For each scale:

* the full pass (every candidate visited, ``full=True``): time and peak memory;
* a run's end: the planned tasks' results are stored (a stand-in for the evaluation: their result documents are
  written as the Executor writes them) and ``Planner.commit_marks`` records the watermarks;
* the no-change cycle (nothing changed since): time, peak memory, models visited;
* a cycle after K models got a new revision (through ``Store.upsert_models``, as a scrape writes it).

Every measured plan runs in a fresh child process, so its peak RSS is the plan's own (imports included), not the
setup's; ``cpu_seconds`` is that process's CPU time during the plan (all its threads; MongoDB's is not included),
steadier than the wall time on a loaded machine. The headline is 100,000 models = 1.2 million candidates (target:
full pass under 5 s); ``--scales`` adds no-change cycles at other candidate counts (targets: flat, under 1 GB and
under 10 s).

Usage: python benchmarks/bench_planning.py [--models 100000] [--done 0.99] [--changed 100]
                                          [--scales 1000000,10000000] [--quick]
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import report, target, temp_mongo  # noqa: E402
from core import identity as ident  # noqa: E402
from core.store import Store  # noqa: E402

VARIANTS = ("original", "greyscale", "flipped", "mirrored", "inverted", "rotated90")
DATASETS = ("bench_a", "bench_b")
CANDIDATES_PER_MODEL = len(DATASETS) * len(VARIANTS)  # one processor (classification)
#: issue 15: planning 1.2 million candidates in under 5 s; a no-change cycle under 10 s and 1 GB at any scale
FULL_TARGET_S = 5.0
NO_CHANGE_TARGET_S = 10.0
RSS_TARGET_MB = 1024


def modules():
    from modules.hf import HFImageClassification

    return [HFImageClassification(dataset=d, variants=VARIANTS) for d in DATASETS]


def model_doc(i: int, revision: str | None = None) -> dict:
    return {"_id": f"huggingface/org{i % 977}/model-{i}", "name": f"org{i % 977}/model-{i}", "source": "huggingface",
            "status": "active", "task": "image-classification", "datasets": list(DATASETS),
            "revision": revision or f"{i:040x}"}


def result_doc(rid: str, inference_id: str, model_key: str, module: str, dataset: str, variant: str, now) -> dict:
    """A result document as the Executor stores one (the fields the schema requires)."""
    return {"_id": rid, "inference_id": inference_id, "model_key": model_key, "model_revision": "r", "module": module,
            "processor": "classification", "dataset": dataset, "split": "test", "dataset_revision": "r",
            "variant": variant, "overall": {}, "created_at": now}


def build(store: Store, n_models: int, done: float) -> tuple[dict[str, float], int]:
    """Datasets, ``n_models`` models (Store.insert_new_models) and the results of a ``done`` fraction of their
    candidates (ids from core.identity one by one, the plain way); returns the setup seconds and how many results
    were stored."""
    from pipeline.planner import Planner

    for name in DATASETS:
        store.upsert_dataset({"name": name, "datatype": "image", "classes": [{"id": 0, "label": "x"}],
                              "splits": [{"name": "test", "total": 1, "class_counts": {"x": 1}}],
                              "revision": f"rev-{name}", "supported_variants": list(VARIANTS[1:]), "path": "/nonexistent"})
    t0 = time.perf_counter()
    for start in range(0, n_models, 10_000):
        store.insert_new_models([model_doc(i) for i in range(start, min(n_models, start + 10_000))])
    setup_models = time.perf_counter() - t0
    planner = Planner(store, modules(), store.datasets())
    work = [planner.module_work(m) for m in planner.modules]
    rng, now = random.Random(0), store.server_time()
    t0 = time.perf_counter()
    docs, stored = [], 0
    for i in range(n_models):
        doc = model_doc(i)
        model_fp = ident.model_fingerprint(doc)
        for w in work:
            (spec, proc_fp), = w.processors
            for variant, _, work_fp in w.variants:
                if rng.random() < done:
                    inf = ident.inference_id(model_fp, work_fp)
                    docs.append(result_doc(ident.result_id(inf, proc_fp), inf, doc["_id"], w.module.name,
                                           w.module.dataset, variant, now))
        if len(docs) >= 20_000:
            store.db.results.insert_many(docs, ordered=False)
            stored, docs = stored + len(docs), []
    if docs:
        store.db.results.insert_many(docs, ordered=False)
        stored += len(docs)
    return {"models": round(setup_models, 1), "results": round(time.perf_counter() - t0, 1)}, stored


def child(uri: str, db: str, mode: str) -> dict:
    """One plan in this (fresh) process: ``full`` (every candidate), ``complete`` (the same, then the run's end: the
    planned tasks' results stored and the marks committed) or ``marked`` (with the watermarks)."""
    from pipeline.planner import Planner

    store = Store(uri, db, init_schema=False)
    mods = modules()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    planner = Planner(store, mods, store.datasets())
    t0, cpu0 = time.perf_counter(), time.process_time()
    plan = planner.plan(full=mode != "marked")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "candidates": plan.candidates,
           "models_visited": plan.models_visited,
           "tasks": len(plan.tasks), "marked_units": plan.marked_units, "rss_before_plan_mb": round(rss_before),
           "peak_rss_mb": round(peak)}
    if mode == "complete":  # the run's end: every planned task's result is stored, then the marks are committed
        now, docs = store.server_time(), []
        for task in plan.tasks:
            for uid in task.units:
                rid = ident.result_id(task.inference_id, plan.units[uid]["processor_fp"])
                docs.append(result_doc(rid, task.inference_id, task.model_key, task.module.name, task.module.dataset,
                                       task.variant, now))
            if len(docs) >= 20_000:
                store.db.results.insert_many(docs, ordered=False)
                docs = []
        if docs:
            store.db.results.insert_many(docs, ordered=False)
        out["units_marked"] = planner.commit_marks(plan)
    return out


def measure(uri: str, db: str, mode: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--uri", uri, "--db", db],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"the {mode} planning child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scale(uri: str, n_models: int, done: float, changed: int, full_runs: int) -> dict:
    """Build ``n_models`` in a database of their own, then measure the full pass, the no-change cycle and a cycle
    after ``changed`` models got a new revision; the database is dropped afterwards."""
    db = f"bench_planning_{n_models}"
    store = Store(uri, db)
    try:
        store.client.drop_database(db)
        store.ensure_schema()
        setup, stored = build(store, n_models, done)
        full = [measure(uri, db, "full") for _ in range(full_runs - 1)]
        full.append(measure(uri, db, "complete"))  # and the run's end: the rest stored, the marks committed
        assert full[-1]["units_marked"] == CANDIDATES_PER_MODEL, full[-1]
        # one processor: a task per candidate whose result the setup did not store (its ids computed one by one)
        assert all(f["tasks"] == n_models * CANDIDATES_PER_MODEL - stored for f in full), (stored, full)
        no_change = measure(uri, db, "marked")
        assert no_change["models_visited"] == 0 and no_change["tasks"] == 0, no_change
        rng = random.Random(1)
        picked = rng.sample(range(n_models), min(changed, n_models))
        t0 = time.perf_counter()
        store.upsert_models([model_doc(i, revision=f"{i + 1:040x}new") for i in picked])
        update_s = time.perf_counter() - t0
        after_change = measure(uri, db, "marked")
        assert after_change["models_visited"] == len(picked), after_change
        assert after_change["tasks"] == len(picked) * CANDIDATES_PER_MODEL, after_change
        return {"models": n_models, "candidates": n_models * CANDIDATES_PER_MODEL, "setup_seconds": setup,
                "full_pass": full, "no_change": no_change,
                "after_changes": {"models_changed": len(picked), "upsert_seconds": round(update_s, 2), **after_change}}
    finally:
        store.client.drop_database(db)
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--done", type=float, default=0.99)
    ap.add_argument("--changed", type=int, default=100, help="models given a new revision before the last cycle")
    ap.add_argument("--scales", default="", help="more candidate counts for the no-change cycle, e.g. 1000000,10000000")
    ap.add_argument("--quick", action="store_true", help="10,000 models (a smoke run; the targets are for 100,000)")
    ap.add_argument("--child", choices=("full", "complete", "marked"), help=argparse.SUPPRESS)
    ap.add_argument("--uri", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.uri, args.db, args.child)))
        return
    if args.quick:
        args.models = 10_000
    extra = [int(float(s)) // CANDIDATES_PER_MODEL for s in args.scales.split(",") if s.strip()]
    with temp_mongo() as uri:
        headline = scale(uri, args.models, args.done, args.changed, full_runs=2)
        others = [scale(uri, n, args.done, args.changed, full_runs=1) for n in extra]
    best_full = min(f["seconds"] for f in headline["full_pass"])
    runs = [headline, *others]
    targets = [target(f"full planning pass seconds, {headline['candidates']:,} candidates", best_full, FULL_TARGET_S,
                      applies=headline["candidates"] >= 1_000_000, higher_is_better=False)]
    for run in runs:  # the targets are for 1 million candidates and more
        applies = run["candidates"] >= 1_000_000
        targets.append(target(f"no-change cycle seconds, {run['candidates']:,} candidates", run["no_change"]["seconds"],
                              NO_CHANGE_TARGET_S, applies=applies, higher_is_better=False))
        targets.append(target(f"no-change cycle peak RSS MB, {run['candidates']:,} candidates",
                              run["no_change"]["peak_rss_mb"], RSS_TARGET_MB, applies=applies, higher_is_better=False))
    report("planning", {"variants": len(VARIANTS), "modules": len(DATASETS), "done": args.done,
                        "full_pass_best_seconds": best_full,
                        "candidates_per_second": round(headline["candidates"] / best_full), "scales": runs,
                        "targets": targets})


if __name__ == "__main__":
    main()
