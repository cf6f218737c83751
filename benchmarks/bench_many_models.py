"""Many small models (issue 15): the per-model fixed costs of a cycle (store round trips, load, warm-up, result
writes) against a bare script that loads and evaluates each model once, side by side in one process.

50 tiny real models (BertForSequenceClassification, 2 layers of 32, trained here on the fault tests' `tinysent`
set with 5 seeds, each saved under 10 names as safetensors repos) on its 48-sentence test split. zooeval's side:
scrape the folder, then one Executor.run over all 50 (planning, per model: load, label mapping, warm-up pass,
the batched pass, predictions, processing and result stored). The bare side, per model: from_pretrained of
model and tokenizer, tokenize, forward, argmax, accuracy. Each side's time per model is split into inference
(its forward passes: zooeval's warm-up and timed batched pass, the bare script's one pass) and the rest; the
ratio compared with the target is zooeval's non-inference time per model over the bare script's (target: at
most 1.2). Both sides alternate, best of ``--repeats``. The MongoDB commands zooeval's cycle sends per model are
counted too (by name and collection): unlike the times, they do not depend on how busy the machine is.

Usage: python benchmarks/bench_many_models.py [--models 50] [--repeats 2]
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from pymongo import MongoClient, monitoring  # noqa: E402

import processors.classification  # noqa: E402,F401
from benchmarks._common import report, target, temp_mongo  # noqa: E402
from core.store import Store  # noqa: E402
from modules.hf import HFTextClassification  # noqa: E402
from pipeline.executor import Executor  # noqa: E402
from scraper.datasets import register_datasets  # noqa: E402
from scraper.local import scrape_local  # noqa: E402
from tests.fault_repos import DATASET, build_dataset, copy_repo, train_tiny_model, write_good  # noqa: E402

TARGET = 1.2
SEEDS = 5


def build_zoo(root: Path, n_models: int) -> tuple[Path, Path]:
    """The dataset folder and a zoo of ``n_models`` tiny trained models (SEEDS distinct ones, copied)."""
    datasets = root / "datasets"
    build_dataset(datasets)  # writes datasets/tinysent
    zoo = root / "zoo"
    trained = []
    for seed in range(SEEDS):
        trained.append(write_good(root / "trained" / f"seed{seed}", f"bench/seed{seed}",
                                  train_tiny_model(datasets / DATASET, seed=seed)))
    for i in range(n_models):
        copy_repo(trained[i % SEEDS], zoo / "bench" / f"tiny-{i:03d}", f"bench/tiny-{i:03d}")
    return datasets, zoo


class CommandCounter(monitoring.CommandListener):
    """MongoDB commands sent while ``counting`` is on, by (command name, collection)."""

    def __init__(self) -> None:
        self.counting = False
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.counting:
            target = event.command.get(event.command_name)
            self.counts[(event.command_name, target if isinstance(target, str) else "")] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def bare_script(zoo: Path, dataset_dir: Path) -> tuple[float, float, int]:
    """Load and evaluate each model once with plain transformers; (total s, inference s, models)."""
    import json

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = [json.loads(line) for line in (dataset_dir / "test.jsonl").read_text().splitlines() if line.strip()]
    texts, labels = [r["text"] for r in rows], torch.tensor([r["label"] for r in rows])
    total = inference = 0.0
    repos = sorted(p for p in (zoo / "bench").iterdir())
    for repo in repos:
        t0 = time.perf_counter()
        model = AutoModelForSequenceClassification.from_pretrained(repo).eval()
        tokenizer = AutoTokenizer.from_pretrained(repo)
        t1 = time.perf_counter()
        with torch.inference_mode():
            enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            pred = model(**enc).logits.argmax(-1)
        inference += time.perf_counter() - t1
        float((pred == labels).float().mean())
        total += time.perf_counter() - t0
    return total, inference, len(repos)


def zooeval_cycle(store: Store, home: Path, commands: CommandCounter) -> tuple[float, float, int]:
    """One Executor.run over every stored model; (total s, inference s, models). ``commands`` counts the cycle's
    MongoDB commands."""
    store.delete_results({})  # and the planning watermarks, so every model is planned again
    for coll in ("inferences", "predictions", "failures"):
        store.db[coll].delete_many({})
    ex = Executor(store, [HFTextClassification(dataset=DATASET)], home, batch_size=64, device="cpu", progress=False,
                  echo=lambda s: None, scenarios=("offline",))
    commands.counts.clear()
    commands.counting = True
    t0 = time.perf_counter()
    summary = ex.run()
    total = time.perf_counter() - t0
    commands.counting = False
    assert not summary.failures and summary.inferences == store.count("models"), summary
    # the warm-up is a forward pass too (the bare script's single pass includes its first-call costs)
    inference = sum(d["runtime"]["time_in_seconds"] + d["runtime"]["warmup_s"]
                    for d in store.db.inferences.find({}, {"runtime": 1}))
    return total, inference, summary.inferences


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="10 models, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.models, args.repeats = 10, 1
    torch.set_num_threads(os.cpu_count() or 1)
    root = Path(tempfile.mkdtemp(prefix="zooeval-bench-many-"))
    try:
        datasets, zoo = build_zoo(root, args.models)
        with temp_mongo() as uri:
            commands = CommandCounter()
            store = Store(uri, "bench_many_models", client=MongoClient(uri, tz_aware=True, event_listeners=[commands]))
            register_datasets(store, datasets, log=lambda *a: None)
            scrape_local(store, zoo, log=lambda *a: None)
            bare_script(zoo, datasets / DATASET)  # warm-up: imports, file cache
            bare, ours = [], []
            for _ in range(args.repeats):
                bare.append(bare_script(zoo, datasets / DATASET))
                ours.append(zooeval_cycle(store, root, commands))
        per_model = lambda runs: min((total - inf) / n for total, inf, n in runs)  # noqa: E731
        ratio = per_model(ours) / per_model(bare)
        report("many_models", {
            "models": args.models, "test_samples": 48,
            "bare_total_s": [round(t, 2) for t, _, _ in bare], "bare_inference_s": [round(i, 2) for _, i, _ in bare],
            "zooeval_total_s": [round(t, 2) for t, _, _ in ours], "zooeval_inference_s": [round(i, 3) for _, i, _ in ours],
            "bare_non_inference_ms_per_model": round(1000 * per_model(bare), 1),
            "zooeval_non_inference_ms_per_model": round(1000 * per_model(ours), 1),
            # the whole time a model too: a change that only moves work into the forward passes' time (which the
            # ratio subtracts) shows here as no gain
            "bare_total_ms_per_model": round(1000 * min(total / n for total, _, n in bare), 1),
            "zooeval_total_ms_per_model": round(1000 * min(total / n for total, _, n in ours), 1),
            "zooeval_commands_per_model": round(sum(commands.counts.values()) / args.models, 2),
            "zooeval_commands_per_model_by_kind": {f"{name} {coll}": round(n / args.models, 2)
                                                   for (name, coll), n in commands.counts.most_common()
                                                   if n >= args.models / 10},
            "note": "zooeval's total includes planning and every store write of the cycle; its commands are those of "
                    "the last cycle (by kind: those sent at least once per 10 models)",
            "targets": [target("per-model non-inference time, zooeval / bare script", ratio, TARGET,
                               applies=not args.quick, higher_is_better=False)],
        })
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
