"""Web pages at scale: a synthetic store of 100,000 models and 1,000,000 results, target < 300 ms per page.

The store is inserted directly (no inference): models shaped as the scrapers store them, results computed by
the real classification processor's functions (``metrics_from_confusion``, ``confusion_doc``) from seeded
random confusion matrices (a 1,000-class dataset among them, stored sparse), superseded results of older
revisions, failures and runs. Each page is then rendered through the FastAPI app in process (TestClient: the
whole request, query and template) several times; the figure is the median and the worst of the warm runs.

Usage: python benchmarks/bench_web.py [--models 100000] [--results 1000000] [--repeats 5] [--quick]
       [--home DIR]  (keep the store's mongod data in DIR and reuse it on the next run)
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._common import report, temp_mongo  # noqa: E402
from core.store import Store  # noqa: E402
from processors.classification import confusion_doc, metrics_from_confusion  # noqa: E402

TEXT_VARIANTS = ("original", "lowercase", "uppercase", "typos")
IMAGE_VARIANTS = ("original", "greyscale", "flipped", "mirrored", "inverted", "rotated90")
DATASETS = {  # name -> (datatype, number of classes, test samples, variants)
    "synth-sentiment": ("text", 2, 1000, TEXT_VARIANTS),
    "synth-topics": ("text", 20, 2000, TEXT_VARIANTS),
    "synth-digits": ("image", 10, 360, IMAGE_VARIANTS),
    "synth-imagenet": ("image", 1000, 5000, ("original", "greyscale")),
}
LICENSES = ("apache-2.0", "mit", "cc-by-4.0", "other", None)
POOL = 400  # distinct result bodies per (dataset, variant); documents differ in ids, models and timings


def _classes(n: int) -> list[str]:
    return ["negative", "positive"] if n == 2 else [f"class-{i:04d}" for i in range(n)]


def dataset_doc(name: str) -> dict[str, Any]:
    datatype, n, total, variants = DATASETS[name]
    classes = _classes(n)
    counts = {c: total // n for c in classes}
    return {"name": name, "datatype": datatype, "task": f"{datatype}-classification", "version": "1",
            "description": f"synthetic benchmark dataset ({n} classes)", "path": f"/nonexistent/{name}",
            "classes": [{"id": i, "label": c, "extra": {}} for i, c in enumerate(classes)],
            "splits": [{"name": "test", "total": total, "class_counts": counts}], "revision": f"rev-{name}",
            "supported_variants": list(variants[1:]), "synonyms": {}, "compatible_with": []}


def _bodies(name: str, variant: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``POOL`` result bodies (overall, per class, confusion matrix, misclassifications) of random models."""
    _, n, total, _ = DATASETS[name]
    classes = _classes(n)
    out = []
    for _ in range(POOL):
        skill = rng.uniform(0.3, 0.97) * (0.9 if variant != "original" else 1.0)
        cm = np.zeros((n, n), dtype=np.int64)
        truth = rng.integers(0, n, size=total)
        right = rng.random(total) < skill
        wrong = (truth + rng.integers(1, n, size=total)) % n if n > 1 else truth
        pred = np.where(right, truth, wrong)
        np.add.at(cm, (truth, pred), 1)
        body = metrics_from_confusion(cm, classes)
        body["confusion_matrix"] = confusion_doc(cm, classes)
        mis = np.flatnonzero(pred != truth)[:20]
        body["misclassifications"] = [{"instance": f"{name}-{int(i):05d}", "true_class": classes[int(truth[i])],
                                       "predicted_class": classes[int(pred[i])],
                                       "confidence": float(rng.uniform(0.3, 1.0))} for i in mis]
        body["misclassifications_truncated"] = bool(int((pred != truth).sum()) > len(mis))
        out.append(body)
    return out


def _model_doc(i: int, rng: random.Random, now: dt.datetime) -> dict[str, Any]:
    text = i % 5 < 3
    org = f"org{i % 977}"
    name = f"{org}/{'bert' if text else 'resnet'}-{i:06d}"
    classes = _classes(2 if text else 10)
    declared = ["synth-sentiment"] if text and i % 2 else (["synth-digits"] if not text and i % 3 else [])
    return {"_id": f"huggingface/{name}", "name": name, "source": "huggingface", "status": "active",
            "task": "text-classification" if text else "image-classification", "revision": f"{i:040x}",
            "last_modified": now - dt.timedelta(minutes=i), "first_seen": now - dt.timedelta(minutes=2 * i),
            "scraped_at": now, "license": LICENSES[i % len(LICENSES)], "library": "transformers",
            "tags": ["text-classification" if text else "image-classification", "transformers"],
            "datasets": declared, "inferred_datasets": [] if declared else (["synth-topics"] if text else []),
            "config": {"architectures": ["BertForSequenceClassification" if text else "ResNetForImageClassification"],
                       "id2label": {str(k): c for k, c in enumerate(classes)}, "model_type": "bert" if text else "resnet"},
            "files": {"config.json": 700, "model.safetensors": 4_000_000 + rng.randrange(10_000_000), "README.md": 900},
            "references": [], "notes": [], "base_model": f"huggingface/{org}/base" if i % 7 == 0 else None}


def _result_specs(i: int, per_model: int) -> list[tuple[str, str, bool]]:
    """(dataset, variant, superseded) of model ``i``'s ``per_model`` results."""
    text = i % 5 < 3
    current = [(d, v, False) for d in (("synth-sentiment", "synth-topics") if text else ("synth-digits",))
               for v in DATASETS[d][3]]
    if not text and i % 200 == 3:
        current += [("synth-imagenet", v, False) for v in DATASETS["synth-imagenet"][3]]
    older = [(d, v, True) for d, v, _ in current]
    return (current + older)[:max(per_model, len(current))]


def build_store(store: Store, n_models: int, n_results: int, seed: int = 0, log=print) -> dict[str, Any]:
    """Insert the synthetic zoo; returns what was inserted (counts and a few keys the pages are timed on)."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    now = dt.datetime.now(dt.timezone.utc)
    for name in DATASETS:
        store.upsert_dataset(dataset_doc(name), [])
    t0 = time.perf_counter()
    pools = {(d, v): _bodies(d, v, nrng) for d, (_, _, _, variants) in DATASETS.items() for v in variants}
    log(f"result bodies computed in {time.perf_counter() - t0:.1f} s")
    evaluated = int(n_models * 0.95)
    per_model = max(1, round(n_results / max(evaluated, 1)))
    runs = [f"run{k:02d}" for k in range(10)]
    models, results, failures = [], [], []
    n_res = n_fail = 0
    planned: dict[str, dict[str, int]] = {r: {} for r in runs}
    planned_ds: dict[str, dict[str, int]] = {r: {} for r in runs}

    def flush(force: bool = False) -> None:
        nonlocal models, results, failures
        for coll, docs in (("models", models), ("results", results), ("failures", failures)):
            if docs and (force or len(docs) >= 10_000):
                store.db[coll].insert_many(docs, ordered=False)
                docs.clear()

    for i in range(n_models):
        model = _model_doc(i, rng, now)
        models.append(model)
        run_id = runs[i % len(runs)]
        if i < evaluated and n_res < n_results:
            for k, (dataset, variant, superseded) in enumerate(_result_specs(i, per_model)):
                body = pools[(dataset, variant)][rng.randrange(POOL)]
                revision = f"{i + 1:040x}" if superseded else model["revision"]
                created = now - dt.timedelta(days=30 if superseded else 0, seconds=i)
                n = body["overall"]["n"]
                seconds = n / rng.uniform(20, 400)
                results.append({
                    "_id": f"r{i:06d}-{k:02d}", "inference_id": f"i{i:06d}-{k:02d}", "model_key": model["_id"],
                    "model_name": model["name"], "source": "huggingface", "model_revision": revision,
                    "module": f"hf-{DATASETS[dataset][0]}-classification/{dataset}", "module_version": 1,
                    "processor": "classification", "processor_version": 2, "task": f"{DATASETS[dataset][0]}-classification",
                    "dataset": dataset, "split": "test", "dataset_revision": f"rev-{dataset}", "variant": variant,
                    "variant_version": 0 if variant == "original" else 1, "variant_params": {}, "variant_seed": 0,
                    "run_id": run_id, "created_at": created, **body,
                    "runtime": {"n": n, "batch_size": 32, "device": "cpu", "load_s": rng.uniform(0.1, 3),
                                "warmup_s": rng.uniform(0.05, 1), "time_in_seconds": seconds,
                                "time_per_instance": seconds / n, "instances_per_second": n / seconds},
                    "label_mapping": {"method": "name", "pairs": []},
                })
                n_res += 1
                key = model["_id"].replace(".", "\uff0e")
                planned[run_id][key] = planned[run_id].get(key, 0) + 1
                planned_ds[run_id][dataset] = planned_ds[run_id].get(dataset, 0) + 1
        if i % 33 == 5:  # about 3% of the models fail somewhere
            failures.append({"_id": f"f{i:06d}", "model_key": model["_id"], "model_name": model["name"],
                             "source": "huggingface", "model_revision": model["revision"], "dataset": "synth-sentiment",
                             "split": "test", "variant": "original", "module": "hf-text-classification/synth-sentiment",
                             "error_class": ("model_load", "unknown_labels", "timeout")[i % 3],
                             "reason": "synthetic failure for the benchmark", "attempts": 1 + i % 3, "permanent": i % 2 == 0,
                             "run_id": run_id, "first_at": now, "last_at": now, "traceback": "Traceback: ..."})
            n_fail += 1
            key = model["_id"].replace(".", "\uff0e")
            planned[run_id][key] = planned[run_id].get(key, 0) + 1
        flush()
        if i and i % 20_000 == 0:
            log(f"{i} models, {n_res} results inserted ({time.perf_counter() - t0:.0f} s)")
    flush(force=True)
    for k, run_id in enumerate(runs):
        store.db.runs.insert_one({"_id": run_id, "status": "done", "started_at": now - dt.timedelta(days=10 - k),
                                  "ended_at": now - dt.timedelta(days=10 - k, hours=-2), "planned": sum(planned[run_id].values()),
                                  "planned_by_model": planned[run_id], "planned_by_dataset": planned_ds[run_id],
                                  "counts": {}, "problems": []})
    return {"models": n_models, "results": n_res, "failures": n_fail, "runs": len(runs),
            "seconds": round(time.perf_counter() - t0, 1)}


@contextlib.contextmanager
def kept_mongo(home: Path) -> Iterator[str]:
    """A mongod whose data stays in ``home`` (reused by the next run; stopped at the end)."""
    from service.mongo import EmbeddedMongo, free_port

    server = EmbeddedMongo(home, port=free_port())
    try:
        yield server.ensure_running()
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--results", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="10,000 models and 100,000 results (a smoke run)")
    ap.add_argument("--home", type=Path, default=None, help="keep the store in this folder and reuse it")
    args = ap.parse_args()
    if args.quick:
        args.models, args.results = 10_000, 100_000
    mongo = kept_mongo(args.home) if args.home else temp_mongo()
    with mongo as uri:
        store = Store(uri, f"bench_web_{args.models}")
        if store.db.models.estimated_document_count() != args.models:
            store.client.drop_database(store.db_name)
            store = Store(uri, store.db_name)
            built = build_store(store, args.models, args.results)
            print(f"store built: {built}", flush=True)
        else:
            built = {"models": args.models, "results": store.db.results.estimated_document_count(), "reused": True}
        timings = time_pages(store, args.repeats)
        worst = max(t["median_ms"] for t in timings.values())
        report("web", {"store": built, "pages": timings, "target_ms": 300, "worst_median_ms": worst,
                       "pass": worst < 300})


def time_pages(store: Store, repeats: int) -> dict[str, dict[str, float]]:
    """Median and worst render time of each page (after one warm-up request), in ms."""
    from fastapi.testclient import TestClient

    from service.web.app import create_app

    app = create_app(store, Path("/nonexistent-home"), token="bench-token", open_views=True)
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    big = store.db.results.find_one({"dataset": "synth-imagenet"}, {"model_key": 1})  # a 1,000-class result
    model = big["model_key"]
    other = store.db.models.find_one({"task": "image-classification", "_id": {"$ne": model}}, {"_id": 1})["_id"]
    first_page = client.get("/models").text
    assert "resnet" in first_page or "bert" in first_page
    pages = {
        "models (default sort)": "/models",
        "models, search 'bert-0123'": "/models?q=bert-0123",
        "models, filter source+task+license": "/models?source=huggingface&task=image-classification&license=mit",
        "models, sorted by accuracy on synth-sentiment/typos": "/models?sort=metric&metric=accuracy&dataset=synth-sentiment"
                                                              "&variant=typos",
        "models, evaluated on synth-imagenet": "/models?evaluated_on=synth-imagenet",
        "models, failed": "/models?failed=true",
        "model page (10 classes)": f"/model/{model}",
        "model page (1,000 classes)": f"/model/{model}?dataset=synth-imagenet&variant=original",
        "variant comparison": f"/variants/{model}?dataset=synth-digits",
        "model comparison": f"/compare?m={model}&m={other}",
        "scatter": "/scatter?metric=accuracy&dataset=synth-sentiment&variant=original",
        "datasets": "/datasets",
        "dataset page": "/dataset/synth-digits",
        "runs": "/runs",
        "run page": "/run/run03",
        "API: models page": "/api/v1/models?limit=100",
        "API: results of a dataset, page 1": "/api/v1/results?dataset=synth-digits&limit=100",
        "API: results of a model": f"/api/v1/results?model={model}",
    }
    out = {}
    for title, url in pages.items():
        headers = {"Authorization": "Bearer bench-token"} if url.startswith("/api/") else {}
        status = client.get(url, headers=headers).status_code  # warm-up
        assert status == 200, (url, status)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            client.get(url, headers=headers)
            times.append((time.perf_counter() - t0) * 1000)
        out[title] = {"url": url, "median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
        print(f"{title:55s} {out[title]['median_ms']:8.1f} ms (max {out[title]['max_ms']:.1f})", flush=True)
    return out


if __name__ == "__main__":
    main()
