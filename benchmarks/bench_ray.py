"""Ray executor scaling: the same work with the local executor and with 1, 2 and 4 Ray workers.

The work is sleep-bound (these machines have 2 cores): benchmark-only stand-in models whose load sleeps
``--load-s`` and whose every forward (the warm-up batch included) sleeps ``--batch-s``, on the fault tests' tiny
``tinysent`` dataset (48 test sentences, batch 16: 4 forwards per task) under two variants; everything else is
the real pipeline (planning, label mapping, stored predictions, the classification processor, MongoDB). The
Ray cluster is a ``ray.cluster_utils.Cluster`` on 127.0.0.1 (a head that runs nothing, one-CPU worker nodes
added between runs); each timed run goes to a fresh database after an untimed warm-up run that starts the
workers' processes and imports (the local executor gets one too). Prints the wall times, the scaling ratio
(1-worker time / N-worker time), each run's overhead per group beyond the sleeps, and the overhead Ray adds per
group ((1-worker time - local time) / groups).
Usage: python benchmarks/bench_ray.py [--quick] [--models N] [--load-s S] [--batch-s S]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# loopback only, no usage stats, offline; the workers import this repo (read by Ray when it is imported)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)

import json  # noqa: E402

import torch  # noqa: E402

import processors.classification  # noqa: E402,F401  (registers the classification processor)
from benchmarks._common import report, temp_mongo  # noqa: E402
from core.store import Store  # noqa: E402
from demo.sources import model_card  # noqa: E402
from modules.base import EvaluationModule, LoadedModel  # noqa: E402
from pipeline.executor import Executor  # noqa: E402
from pipeline.ray_executor import RayExecutor  # noqa: E402
from scraper.datasets import register_datasets  # noqa: E402
from scraper.local import scrape_local  # noqa: E402
from tests.fault_repos import CLASSES, DATASET, NEGATIVE, POSITIVE, build_dataset  # noqa: E402

VARIANTS = ("original", "lowercase")
BATCH = 16


class SleepText(EvaluationModule):
    """A benchmark-only stand-in: loading sleeps ``load_s``, every forward sleeps ``batch_s`` and scores a
    sentence by its counts of positive and negative words (deterministic, so every run stores the same)."""

    kind = "bench-sleep-text"
    sources = ("local",)
    task = "text-classification"
    datatype = "text"
    default = False

    def __init__(self, *args, load_s: float = 0.0, batch_s: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.load_s, self.batch_s = load_s, batch_s

    def load(self, model: dict, device: str) -> LoadedModel:
        time.sleep(self.load_s)
        return LoadedModel(model=None, preprocessor=None, id2label=dict(enumerate(CLASSES)), device=device)

    def prepare(self, loaded: LoadedModel, inputs: list) -> dict:
        counts = [[sum(w in NEGATIVE for w in text.lower().split()), sum(w in POSITIVE for w in text.lower().split())]
                  for text in inputs]
        return {"scores": torch.tensor(counts, dtype=torch.float32)}

    def forward(self, loaded: LoadedModel, batch: dict):
        time.sleep(self.batch_s)
        return batch["scores"]


def write_zoo(root: Path, n: int) -> Path:
    """``n`` stand-in model repos (a card and a config) that the stand-in module accepts."""
    for i in range(n):
        repo = root / "bench" / f"sleep-{i:03d}"
        repo.mkdir(parents=True)
        card = {"pipeline_tag": "text-classification", "datasets": [DATASET], "license": "mit"}
        (repo / "README.md").write_text(model_card(card, f"# bench/sleep-{i:03d}\n\nA sleep-bound stand-in model."))
        (repo / "config.json").write_text(json.dumps({"id2label": dict(enumerate(CLASSES))}))
    return root


def prepared_store(uri: str, db: str, datasets: Path, zoo: Path) -> Store:
    store = Store(uri, db)
    register_datasets(store, datasets, log=lambda *a: None)
    scrape_local(store, zoo, log=lambda *a: None)
    return store


def timed_run(executor: Executor, expect_results: int) -> float:
    t0 = time.perf_counter()
    summary = executor.run()
    seconds = time.perf_counter() - t0
    if summary.failures or summary.results_written != expect_results:
        raise SystemExit(f"the run did not do the expected work: {summary.counts()} {summary.failures[:2]}")
    return seconds


def empty_task_ms(ray, n: int = 100) -> float:
    """Milliseconds per empty Ray task submitted and awaited one at a time, with the options a group gets (1 CPU,
    1 GiB of memory, retries): Ray's own cost per group, without zooeval's."""
    def empty() -> None:
        return None

    remote = ray.remote(empty).options(num_cpus=1, memory=1 << 30, max_retries=2, retry_exceptions=False)
    ray.get(remote.remote())
    t0 = time.perf_counter()
    for _ in range(n):
        ray.get(remote.remote())
    return round((time.perf_counter() - t0) / n * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="8 models, shorter sleeps")
    ap.add_argument("--models", type=int, default=None, help="stand-in models (default 16, quick 8)")
    ap.add_argument("--load-s", type=float, default=None, help="seconds per model load (default 1.0, quick 0.5)")
    ap.add_argument("--batch-s", type=float, default=None, help="seconds per forward (default 0.25, quick 0.1)")
    ap.add_argument("--workers", default="1,2,4", help="worker counts, ascending")
    args = ap.parse_args()
    n_models = args.models or (8 if args.quick else 16)
    load_s = args.load_s if args.load_s is not None else (0.5 if args.quick else 1.0)
    batch_s = args.batch_s if args.batch_s is not None else (0.1 if args.quick else 0.25)
    worker_counts = sorted({int(w) for w in args.workers.split(",")})

    import ray
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory(prefix="zooeval-bench-ray-") as tmp, temp_mongo() as uri:
        tmp = Path(tmp)
        build_dataset(tmp / "datasets")
        zoo = write_zoo(tmp / "zoo", n_models)
        warm_zoo = write_zoo(tmp / "warm-zoo", 2 * max(worker_counts))
        module = SleepText(dataset=DATASET, variants=VARIANTS, load_s=load_s, batch_s=batch_s)
        home = tmp / "home"
        tasks = n_models * len(VARIANTS)
        forwards_per_task = 1 + -(-48 // BATCH)  # the warm-up batch, then the batches
        sleep_per_group = load_s + len(VARIANTS) * forwards_per_task * batch_s
        # the offline scenario only: the single-stream one's batch-1 forwards would add 32 sleeps per task
        opts = {"batch_size": BATCH, "progress": False, "echo": lambda s: None, "scenarios": ("offline",)}

        warm_module = SleepText(dataset=DATASET, variants=VARIANTS)  # no sleeps: processes, imports, variants
        warm_results = 2 * max(worker_counts) * len(VARIANTS)

        def overhead_per_group(seconds: float, workers: int) -> float:
            """Seconds per group beyond its sleep (the pipeline, MongoDB, and Ray when it is used)."""
            return round((seconds * workers - n_models * sleep_per_group) / n_models, 3)

        # the local executor (after an untimed warm-up run that builds the variant), and the ideal serial time
        timed_run(Executor(prepared_store(uri, "bench_local_warm", tmp / "datasets", warm_zoo), [warm_module], home,
                           **opts), warm_results)
        local = timed_run(Executor(prepared_store(uri, "bench_local", tmp / "datasets", zoo), [module], home, **opts), tasks)
        out = {"models": n_models, "tasks": tasks, "load_s": load_s, "batch_s": batch_s,
               "sleep_per_group_s": round(sleep_per_group, 3), "serial_sleep_s": round(n_models * sleep_per_group, 2),
               "local_s": round(local, 2), "local_overhead_per_group_s": overhead_per_group(local, 1), "ray": {}}
        print(f"local executor: {local:.2f} s ({n_models} models x {len(VARIANTS)} variants, "
              f"{n_models * sleep_per_group:.1f} s of sleep)", flush=True)

        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False})
        try:
            ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False)
            nodes = 0
            for workers in worker_counts:
                while nodes < workers:
                    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
                    nodes += 1
                cluster.wait_for_nodes()
                warm_store = prepared_store(uri, f"bench_warm{workers}", tmp / "datasets", warm_zoo)
                warm = timed_run(RayExecutor(warm_store, [warm_module], home, **opts), warm_results)
                store = prepared_store(uri, f"bench_ray{workers}", tmp / "datasets", zoo)
                seconds = timed_run(RayExecutor(store, [module], home, **opts), tasks)
                out["ray"][workers] = {"seconds": round(seconds, 2), "ideal_s": round(n_models * sleep_per_group / workers, 2),
                                       "overhead_per_group_s": overhead_per_group(seconds, workers),
                                       "warm_up_run_s": round(warm, 2)}
                print(f"ray, {workers} worker(s): {seconds:.2f} s (ideal {n_models * sleep_per_group / workers:.1f} s; "
                      f"untimed warm-up run {warm:.1f} s)", flush=True)
            out["ray_empty_task_ms"] = empty_task_ms(ray)
            print(f"ray, an empty task with the groups' options, one at a time: {out['ray_empty_task_ms']:.1f} ms", flush=True)
        finally:
            ray.shutdown()
            cluster.shutdown()

        one = out["ray"][worker_counts[0]]["seconds"]
        out["scaling"] = {w: round(one / r["seconds"], 2) for w, r in out["ray"].items()}
        if worker_counts[0] == 1:  # what Ray adds to a group, on one worker: its time minus the local executor's
            out["ray_overhead_per_group_s"] = round((one - local) / n_models, 3)
    report("ray", out)


if __name__ == "__main__":
    main()
