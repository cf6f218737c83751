"""Pipeline overhead: a bare loop (load batch, forward, argmax) against the full pipeline task (prefetching
loader, label mapping, top-k, storing predictions, processing, storing results) on the same model and
data, alternated in one process, best of --repeats each.

Usage: python benchmarks/bench_overhead.py [--model demo/minilm-rt-cased] [--batch-size 32] [--repeats 3]
Needs the demo zoo (built on first use under a temporary ZOOEVAL_HOME unless --home is given).
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

import torch  # noqa: E402

import processors.classification  # noqa: E402,F401
from benchmarks._common import report, temp_mongo  # noqa: E402
from core.data import LocalDataset  # noqa: E402
from core.store import Store  # noqa: E402
from demo.build import build_demo  # noqa: E402
from pipeline.catalog import build_modules  # noqa: E402
from pipeline.executor import Executor  # noqa: E402
from scraper.datasets import register_catalogue, register_datasets  # noqa: E402
from scraper.local import scrape_local  # noqa: E402


def bare_loop(module, loaded, dataset: LocalDataset, split: str, batch_size: int) -> tuple[float, int]:
    rows = dataset.rows(split)
    t0 = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            part = rows[start : start + batch_size]
            batch = module.prepare(loaded, [dataset.load_input(r) for r in part])
            logits = module.forward(loaded, batch)
            logits.argmax(-1).tolist()
            n += len(part)
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo/minilm-rt-cased")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--home", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    home = Path(args.home or tempfile.mkdtemp(prefix="zooeval-bench-home-"))
    build_demo(home, quick=args.quick, log=lambda *a: None)
    with temp_mongo() as uri:
        store = Store(uri, "bench_overhead")
        register_catalogue(store)
        register_datasets(store, home / "datasets", log=lambda *a: None)
        scrape_local(store, home / "zoo", log=lambda *a: None)
        model = store.get_model(args.model)
        modules = [m for m in build_modules(store.datasets(), variants=["original"]) if m.accepts(model, store.datasets())]
        module = modules[0]
        dataset = LocalDataset.open(store.datasets()[module.dataset]["path"])
        loaded = module.load(model, "cpu")
        bare_loop(module, loaded, dataset, module.split, args.batch_size)  # warm-up
        bare, pipe = [], []
        for rep in range(args.repeats):
            t, n = bare_loop(module, loaded, dataset, module.split, args.batch_size)
            bare.append(n / t)
            store.db.results.delete_many({})
            store.db.inferences.delete_many({})
            store.db.predictions.delete_many({})
            ex = Executor(store, [module], home, batch_size=args.batch_size, device="cpu", progress=False, echo=lambda s: None)
            plan = ex.plan({"_id": model["_id"]})
            t0 = time.perf_counter()
            summary = ex.run({"_id": model["_id"]})
            wall = time.perf_counter() - t0
            assert summary.inferences == 1 and summary.results_written == 1, summary
            inf = store.db.inferences.find_one()
            # pipeline time: everything run() did except loading the model (the bare loop's model is loaded too)
            pipe_time = wall - inf["runtime"]["load_s"] - plan.seconds
            pipe.append(n / pipe_time)
        ratio = max(pipe) / max(bare)
        report("overhead", {
            "model": args.model, "dataset": module.dataset, "samples": n, "batch_size": args.batch_size,
            "bare_loop_instances_per_s": [round(x, 1) for x in bare],
            "pipeline_instances_per_s": [round(x, 1) for x in pipe],
            "pipeline_over_bare_best": round(ratio, 3),
            "note": "pipeline time = run() wall time minus model load and planning; includes warm-up, storage and processing",
            "target": ">= 0.90", "pass": ratio >= 0.90,
        })


if __name__ == "__main__":
    main()
