"""Planning: 100,000 stored models x 2 modules x 6 variants = 1.2 million candidate tasks, 99% already done.

Measures the Executor's steps 1-3 (module selection, task creation, task filtering) against the real
mongod. Usage: python benchmarks/bench_planning.py [--models 100000] [--done 0.99]
"""
from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import report, target, temp_mongo  # noqa: E402
from core.identity import processor_fingerprint, result_id  # noqa: E402
from core.store import Store, utcnow  # noqa: E402
from modules.hf import HFImageClassification  # noqa: E402
from pipeline.executor import Executor  # noqa: E402
from processors.classification import ClassificationProcessor  # noqa: E402

VARIANTS = ("original", "greyscale", "flipped", "mirrored", "inverted", "rotated90")
#: issue 15: planning 1.2 million candidates in under 5 s
PLAN_TARGET_S = 5.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--done", type=float, default=0.99)
    ap.add_argument("--quick", action="store_true", help="10,000 models (a smoke run; the target is for 100,000)")
    args = ap.parse_args()
    if args.quick:
        args.models = 10_000
    with temp_mongo() as uri:
        store = Store(uri, "bench_planning")
        for name in ("bench_a", "bench_b"):
            store.upsert_dataset({"name": name, "datatype": "image", "classes": [{"id": 0, "label": "x"}],
                                  "splits": [{"name": "test", "total": 1, "class_counts": {"x": 1}}],
                                  "revision": f"rev-{name}", "supported_variants": list(VARIANTS[1:]), "path": "/nonexistent"})
        t0 = time.perf_counter()
        batch = []
        for i in range(args.models):
            batch.append({"_id": f"huggingface/org{i % 977}/model-{i}", "name": f"org{i % 977}/model-{i}",
                          "source": "huggingface", "status": "active", "task": "image-classification",
                          "datasets": ["bench_a", "bench_b"], "revision": f"{i:040x}"})
            if len(batch) == 10_000:
                store.db.models.insert_many(batch, ordered=False)
                batch = []
        if batch:
            store.db.models.insert_many(batch, ordered=False)
        setup_models = time.perf_counter() - t0
        modules = [HFImageClassification(dataset=d, variants=VARIANTS) for d in ("bench_a", "bench_b")]
        ex = Executor(store, modules, Path("/tmp"), progress=False, echo=lambda s: None)

        first = ex.plan()  # nothing stored yet: every candidate is a task
        assert len(first.tasks) == args.models * len(modules) * len(VARIANTS), len(first.tasks)
        rng = random.Random(0)
        proc_fp = processor_fingerprint(ClassificationProcessor.name, ClassificationProcessor.version)
        now = utcnow()
        t0 = time.perf_counter()
        docs, done = [], 0
        for task in first.tasks:
            if rng.random() >= args.done:
                continue
            done += 1
            docs.append({"_id": result_id(task.inference_id, proc_fp), "inference_id": task.inference_id,
                         "model_key": task.model_key, "model_revision": "r", "module": task.module.name,
                         "processor": "classification", "dataset": task.module.dataset, "split": "test",
                         "dataset_revision": "r", "variant": task.variant, "overall": {}, "created_at": now})
            if len(docs) == 20_000:
                store.db.results.insert_many(docs, ordered=False)
                docs = []
        if docs:
            store.db.results.insert_many(docs, ordered=False)
        setup_results = time.perf_counter() - t0

        timings = []
        for _ in range(2):
            ex._datasets = None
            t0 = time.perf_counter()
            plan = ex.plan()
            timings.append(time.perf_counter() - t0)
        expected_missing = len(first.tasks) - done
        assert len(plan.tasks) == expected_missing, (len(plan.tasks), expected_missing)
        best = min(timings)
        report("planning", {
            "models": args.models, "modules": len(modules), "variants": len(VARIANTS),
            "candidate_tasks": plan.candidates, "already_done": done, "planned_tasks": len(plan.tasks),
            "plan_seconds": [round(t, 2) for t in timings], "tasks_per_second": round(plan.candidates / best),
            "first_plan_seconds_nothing_stored": round(first.seconds, 2),
            "setup_seconds": {"models": round(setup_models, 1), "results": round(setup_results, 1)},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "targets": [target(f"planning seconds, {plan.candidates:,} candidates", best, PLAN_TARGET_S,
                               applies=plan.candidates >= 1_000_000, higher_is_better=False)],
        })


if __name__ == "__main__":
    main()
