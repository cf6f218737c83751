"""Text throughput, side by side in one process on the same model and data (issues 2 and 15): the full pipeline
task (prefetching loader, length-bucketed batches, label mapping, top-k, storing predictions, processing,
storing results) against a plain batched loop (load batch, forward, argmax), the same loop over length-sorted
inputs, and Hugging Face evaluate's text-classification evaluator; alternated, best of --repeats each.

Targets: pipeline >= 0.90 of the plain loop (issue 2), >= 0.95 of the length-sorted loop and >= 2.5 x the
evaluate evaluator (issue 15). The report also counts the tokens each batching runs through the model (the forward
pass is nearly all of the time, so these bound the speed-ups batching order can give): batches in sample order
(the plain loop; the evaluator's are the same), zooeval's length-bucketed batches, and no padding at all.

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
from benchmarks._common import pipeline_seconds, report, target, temp_mongo  # noqa: E402
from core.data import LocalDataset  # noqa: E402
from core.store import Store  # noqa: E402
from demo.build import build_demo  # noqa: E402
from pipeline.catalog import build_modules  # noqa: E402
from scraper.datasets import register_catalogue, register_datasets  # noqa: E402
from scraper.local import scrape_local  # noqa: E402
from tasks.batching import length_order  # noqa: E402

ACCURACY_METRIC = '''"""Accuracy (the evaluator needs a metric; evaluate ships no scripts offline)."""
import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="accuracy", citation="", inputs_description="class indices",
                                   features=datasets.Features({"predictions": datasets.Value("int64"),
                                                               "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}
'''


def bare_loop(module, loaded, dataset: LocalDataset, split: str, batch_size: int, sort: bool = False) -> tuple[float, int]:
    """A plain batched loop; with ``sort`` the inputs are taken in order of their length (less padding)."""
    rows = dataset.rows(split)
    if sort:
        rows = sorted(rows, key=lambda r: len(r["text"]))
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


def evaluate_loop(loaded, dataset: LocalDataset, split: str, batch_size: int, metric_dir: Path) -> tuple[float, int]:
    """Hugging Face evaluate's text-classification evaluator on a transformers pipeline of the same model."""
    import evaluate
    from datasets import Dataset
    from transformers import pipeline

    task_evaluator = evaluate.evaluator("text-classification")
    # importing evaluate.evaluator swaps the transformers module object; transformers 5 has no TF classes
    sys.modules["transformers"].TFPreTrainedModel = type("NoTF", (), {})
    rows = dataset.rows(split)
    data = Dataset.from_dict({"text": [r["text"] for r in rows], "label": [int(r["label"]) for r in rows]})
    pipe = pipeline("text-classification", model=loaded.model, tokenizer=loaded.preprocessor, device=-1,
                    batch_size=batch_size)
    labels = {name: i for i, name in sorted(loaded.model.config.id2label.items())}
    t0 = time.perf_counter()
    task_evaluator.compute(model_or_pipeline=pipe, data=data, metric=evaluate.load(str(metric_dir)),
                           label_mapping=labels, input_column="text", label_column="label")
    return time.perf_counter() - t0, len(rows)


def padded_tokens(module, loaded, dataset: LocalDataset, split: str, batch_size: int) -> dict[str, int]:
    """Tokens (padding included) the model runs through for the split's batches: in sample order, length-bucketed
    (zooeval's order), and with no padding at all (the least any batching can reach)."""
    rows = dataset.rows(split)
    encoded = loaded.preprocessor([r["text"] for r in rows], truncation=True, max_length=module.max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]

    def padded(order: list[int]) -> int:
        return sum(len(part) * max(lengths[i] for i in part)
                   for part in (order[s : s + batch_size] for s in range(0, len(order), batch_size)))

    return {"sample_order": padded(list(range(len(rows)))), "length_bucketed": padded(length_order(rows)),
            "no_padding": sum(lengths)}


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
        metric_dir = home / "bench-accuracy-metric"
        metric_dir.mkdir(exist_ok=True)
        (metric_dir / "bench-accuracy-metric.py").write_text(ACCURACY_METRIC)
        bare_loop(module, loaded, dataset, module.split, args.batch_size)  # warm-up
        bare, sorted_bare, peer, pipe = [], [], [], []
        for rep in range(args.repeats):
            t, n = bare_loop(module, loaded, dataset, module.split, args.batch_size)
            bare.append(n / t)
            t, _ = bare_loop(module, loaded, dataset, module.split, args.batch_size, sort=True)
            sorted_bare.append(n / t)
            t, _ = evaluate_loop(loaded, dataset, module.split, args.batch_size, metric_dir)
            peer.append(n / t)
            pipe.append(n / pipeline_seconds(store, module, model, home, args.batch_size))
        ratios = {"pipeline_over_bare": max(pipe) / max(bare), "pipeline_over_sorted_bare": max(pipe) / max(sorted_bare),
                  "pipeline_over_evaluate": max(pipe) / max(peer)}
        targets = {"pipeline_over_bare": 0.90, "pipeline_over_sorted_bare": 0.95, "pipeline_over_evaluate": 2.5}
        tokens = padded_tokens(module, loaded, dataset, module.split, args.batch_size)
        report("overhead", {
            "model": args.model, "dataset": module.dataset, "samples": n, "batch_size": args.batch_size,
            "bare_loop_instances_per_s": [round(x, 1) for x in bare],
            "sorted_bare_loop_instances_per_s": [round(x, 1) for x in sorted_bare],
            "evaluate_evaluator_instances_per_s": [round(x, 1) for x in peer],
            "pipeline_instances_per_s": [round(x, 1) for x in pipe],
            **{k: round(v, 3) for k, v in ratios.items()},
            "padded_tokens": tokens,
            "sample_order_over_bucketed_tokens": round(tokens["sample_order"] / tokens["length_bucketed"], 3),
            "sample_order_over_unpadded_tokens": round(tokens["sample_order"] / tokens["no_padding"], 3),
            "note": "pipeline time = run() wall time minus model load and planning; includes warm-up, storage and processing",
            "targets": [target(k, ratios[k], v) for k, v in targets.items()],
        })


if __name__ == "__main__":
    main()
