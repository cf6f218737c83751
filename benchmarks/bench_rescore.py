"""Re-scoring: adding a processor to N evaluated models costs zero forward passes.

One command: a full cycle over the demo zoo (every model x variant: inference + processing + storage),
then a new processor is registered and the cycle runs again; only stored predictions are read.
Usage: python benchmarks/bench_rescore.py [--quick] [--home DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import processors.classification  # noqa: E402,F401
from benchmarks._common import report, target, temp_mongo  # noqa: E402
from core.store import Store  # noqa: E402
from demo.build import build_demo  # noqa: E402
from pipeline.catalog import build_modules  # noqa: E402
from pipeline.executor import Executor  # noqa: E402
from processors.base import Processor, register_processor  # noqa: E402
from scraper.datasets import register_catalogue, register_datasets  # noqa: E402
from scraper.local import scrape_local  # noqa: E402


@register_processor
class TopKAccuracy(Processor):
    """Top-k accuracy for k = 1..5: the 'new metric' added after evaluation."""

    name = "bench_topk_accuracy"
    version = 1
    tasks = ("image-classification", "text-classification")

    def __init__(self, classes):
        super().__init__(classes)
        self.hits = [0] * 5
        self.n = 0

    def update(self, batch):
        for k in range(1, 6):
            self.hits[k - 1] += int((batch.topk_labels[:, :k] == batch.y_true[:, None]).any(axis=1).sum())
        self.n += len(batch)

    def merge(self, other):
        self.hits = [a + b for a, b in zip(self.hits, other.hits)]
        self.n += other.n

    def compute(self):
        return {"overall": {f"top{k}_accuracy": (h / self.n if self.n else 0.0) for k, h in enumerate(self.hits, 1)}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="zooeval-bench-home-"))
    build_demo(home, quick=args.quick, log=lambda *a: None)
    with temp_mongo() as uri:
        store = Store(uri, "bench_rescore")
        register_catalogue(store)
        register_datasets(store, home / "datasets", log=lambda *a: None)
        scrape_local(store, home / "zoo", log=lambda *a: None)
        mods = build_modules(store.datasets())
        t0 = time.perf_counter()
        full = Executor(store, mods, home, progress=False, echo=lambda s: None).run()
        t_full = time.perf_counter() - t0
        # the new processor reads classification predictions: the modules of the tasks it reads get it
        readers = [m for m in mods if m.task in TopKAccuracy.tasks]
        for m in readers:
            m.processors = (*m.processors, TopKAccuracy.name)
        t0 = time.perf_counter()
        again = Executor(store, readers, home, progress=False, echo=lambda s: None).run()
        t_rescore = time.perf_counter() - t0
        assert again.models_loaded == 0 and again.forward_samples == 0 and again.inferences == 0
        assert again.rescored == store.count("inferences", {"task": {"$in": list(TopKAccuracy.tasks)}}), again
        report("rescore", {
            "evaluated_models": len({r["model_key"] for r in store.iter_results()}),
            "inference_tasks": full.inferences, "samples_forwarded_full_run": full.forward_samples,
            "full_run_seconds": round(t_full, 2), "add_processor_seconds": round(t_rescore, 3),
            "add_processor_forward_passes": again.forward_samples, "models_loaded": again.models_loaded,
            "ratio_rescore_over_full": round(t_rescore / t_full, 4),
            "targets": [target("forward passes when a processor is added", again.forward_samples, 0,
                               higher_is_better=False)],
        })


if __name__ == "__main__":
    main()
