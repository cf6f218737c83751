"""End to end against the real mongod, real (small, trained) models and real labelled data.

The demo zoo is built once per session from wheels (quick mode), and one full demo cycle is stored once per session
(conftest's ``demo_cycle``): its own test reads it and runs the second cycle (which must find nothing to do) on it,
a test that writes results works on a copy of it, and a test that needs a cycle of its own (killed and resumed)
runs one in its own database.
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, f1_score

from core.store import Store
from service.cli import main
from tests.cli_child import run_zooeval, start_zooeval
from tests.web_store import copy_database

GOOD_MODELS = {
    "demo/minilm-rt-labels": "rotten_tomatoes",
    "demo/minilm-rt-cased": "rotten_tomatoes",
    "demo/minilm-rt-sentiment": "rotten_tomatoes",
    "demo/resnet-digits": "digits",
    "demo/resnet-digits-words": "digits",
    # the real ImageNet MobileNetV2 weights: as the FiftyOne zoo model, and converted to a timm repo
    "mobilenet-v2-imagenet-torch": "imagenet-foolbox20",
    "zooeval/mobilenetv2_100.tv_in1k": "imagenet-foolbox20",
}
VARIANTS = {"rotten_tomatoes": 4, "digits": 6, "imagenet-foolbox20": 6}  # original + supported perturbations
#: the sentence-pair task kinds: the demo's cross-encoders fine-tuned on its pair sets, and the real MiniLM embedder
PAIR_RESULTS = {("demo/minilm-rt-edit-overlap", "rt-edit-overlap", "classification"),
                ("demo/minilm-rt-edit-similarity", "rt-edit-similarity", "regression"),
                ("sentence-transformers/all-MiniLM-L6-v2", "rt-edit-similarity", "regression")}


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def cycle_env(env, demo_cycle, monkeypatch):
    """``env`` on the session's stored demo cycle (conftest.demo_cycle) instead of an empty database."""
    monkeypatch.setenv("ZOOEVAL_DB", demo_cycle["db"])
    return {**env, "db": demo_cycle["db"]}


def test_demo_cycle_then_nothing_to_do(cycle_env, demo_cycle):
    out = demo_cycle["output"]  # `zooeval demo --quick --no-progress --scenarios offline`
    store = Store(cycle_env["uri"], cycle_env["db"])
    # every good model x every variant of its dataset has a classification result
    for name, dataset in GOOD_MODELS.items():
        res = list(store.iter_results({"model_name": name, "processor": "classification"}))
        assert sorted(r["variant"] for r in res) == sorted(
            ["original", *store.datasets()[dataset]["supported_variants"]]
        ), name
        assert len(res) == VARIANTS[dataset]
        for r in res:
            assert r["dataset"] == dataset and r["split"] == "test"
            assert r["model_revision"] and r["dataset_revision"] and r["module_version"] >= 1
            assert r["env"]["libraries"]["torch"] and r["env"]["device"] == "cpu" and r["env"]["cpu"]
            rt = r["runtime"]
            assert rt["n"] == r["overall"]["n"] > 0 and rt["instances_per_second"] > 0 and rt["load_s"] > 0
            assert rt["time_per_instance"] == pytest.approx(rt["time_in_seconds"] / rt["n"])
    # metrics equal scikit-learn on the stored predictions
    r = next(store.iter_results({"model_name": "demo/resnet-digits", "variant": "original"}))
    chunks = list(store.iter_predictions(r["inference_id"]))
    y_true = np.concatenate([c["y_true"] for c in chunks])
    y_pred = np.concatenate([np.asarray(c["topk_labels"])[:, 0] for c in chunks])
    assert r["overall"]["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert r["overall"]["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-12)
    assert r["overall"]["macro_f1_all_classes"] == pytest.approx(
        f1_score(y_true, y_pred, labels=list(range(10)), average="macro", zero_division=0), abs=1e-12)
    assert r["overall"]["accuracy"] > 0.8  # a real trained model
    # label mapping recorded with the rule used
    rules = {r["model_name"]: {p["rule"] for p in r["label_mapping"]["pairs"]}
             for r in store.iter_results({"variant": "original"}) if "pairs" in r["label_mapping"]}
    assert rules["demo/minilm-rt-labels"] == {"index"}
    assert rules["demo/minilm-rt-cased"] == {"normalised"}
    assert rules["demo/minilm-rt-sentiment"] == {"synonym"}
    assert "synonym" in rules["demo/resnet-digits-words"]
    assert rules["zooeval/mobilenetv2_100.tv_in1k"] == {"synonym"}  # timm's synset ids via the dataset's synonyms
    for name in ("mobilenet-v2-imagenet-torch", "zooeval/mobilenetv2_100.tv_in1k"):  # real weights, real accuracy
        r = next(store.iter_results({"model_name": name, "variant": "original"}))
        assert r["overall"]["n"] == 20 and r["overall"]["accuracy"] >= 0.8, (name, r["overall"])
    # broken models: a failure each, with the right class; never scored
    fails = {f["model_name"]: f for f in store.db.failures.find()}
    assert fails["broken/corrupt-weights"]["error_class"] == "model_load"
    assert fails["broken/no-config"]["error_class"] == "model_load"
    assert "config.json" in fails["broken/no-config"]["reason"]
    assert fails["broken/unmappable-labels"]["error_class"] == "unknown_labels"
    assert fails["broken/unmappable-labels"]["details"]["unmapped_labels"] == ["spam", "ham"]
    for broken in fails:
        assert store.count("results", {"model_name": broken}) == 0
    assert "demo/resnet-digits" in out and "accuracy" in out and "instances/s" in out
    # the demo card's deliberately wrong claim (accuracy 0.95) is shown contradicted in the summary
    claim_rows = [line for line in out.splitlines() if line.startswith("demo/minilm-rt-sentiment") and "0.95" in line]
    assert "claimed vs measured" in out and len(claim_rows) == 1 and "contradicted" in claim_rows[0], out[-3000:]
    # the sentence-pair tasks: a similarity score has no labels to map
    pair_results = [r for r in store.iter_results({"variant": "original"}) if r["dataset"].startswith("rt-edit-")]
    assert {(r["model_name"], r["dataset"], r["processor"]) for r in pair_results} >= PAIR_RESULTS
    assert all(r["label_mapping"]["method"] == "none" for r in pair_results if r["processor"] == "regression")
    # runtime scenarios: as asked, the offline throughput only
    runtime = next(store.iter_results({"model_name": "demo/minilm-rt-cased", "variant": "original"}))["runtime"]
    assert runtime["scenarios"] == ["offline"] and "single_stream" not in runtime
    # the ImageNet set's class groups: per-group numbers for both MobileNetV2s
    grouped = next(store.iter_results({"model_name": "mobilenet-v2-imagenet-torch", "variant": "original"}))
    assert set(grouped["per_group"]) == {"animals (classes 0-397)", "not animals (classes 398-999)"}
    assert sum(g["support"] for g in grouped["per_group"].values()) == 20
    # the demo's detection row: the MTCNN of the facenet-pytorch wheel on the faces set, every variant
    det = {r["variant"]: r for r in store.iter_results({"model_name": "facenet-pytorch/mtcnn", "processor": "detection"})}
    assert sorted(det) == sorted(["original", *store.datasets()["faces"]["supported_variants"]])
    assert det["original"]["overall"]["AP50"] > 0.8 and det["original"]["module_params"]["nms_iou"] == 0.65
    assert "facenet-pytorch/mtcnn" in out and "AP50" in out
    n_results = store.count("results")

    # second run: nothing to do, no model loaded, nothing written
    out2 = cli("run", "--no-progress")
    assert "nothing to do" in out2
    assert store.count("results") == n_results

    # results and export
    out3 = cli("results", "demo/minilm-rt-cased", "--per-class")
    assert "rotten" in out3 and "fresh" in out3 and "macro-F1" in out3
    export = cycle_env["home"] / "export.csv"
    cli("export", "--format", "csv", "-o", str(export))
    lines = export.read_text().splitlines()
    assert lines[0] == "model,source,revision,dataset,split,variant,processor,class,metric,value"
    assert any(",overall,accuracy," in line for line in lines) and any(",fresh,f1," in line for line in lines)


def test_new_processor_costs_no_forward_pass(env, demo_cycle, monkeypatch):
    from pipeline.catalog import build_modules
    from pipeline.executor import Executor
    from processors.base import PROCESSORS, Processor

    copy_database(env["uri"], demo_cycle["db"], env["db"])  # the stored demo cycle; this test writes to its copy
    store = Store(env["uri"], env["db"])
    classified = {r["model_name"] for r in store.iter_results({"processor": "classification"})}
    assert classified == set(GOOD_MODELS) | {name for name, _, proc in PAIR_RESULTS if proc == "classification"}
    # the single-input classifiers' results on the original data, the tasks the modules below plan (the pair
    # classifier's task is not one the test's processor reads)
    single = {"processor": "classification", "model_name": {"$in": list(GOOD_MODELS)}, "variant": "original"}
    evaluated = {r["model_key"] for r in store.iter_results(single)}

    class Top2Accuracy(Processor):
        name = "top2_accuracy_test"
        version = 1
        tasks = ("image-classification", "text-classification")

        def __init__(self, classes):
            super().__init__(classes)
            self.hits = self.n = 0

        def update(self, batch):
            self.hits += int((batch.topk_labels[:, :2] == batch.y_true[:, None]).any(axis=1).sum())
            self.n += len(batch)

        def merge(self, other):
            self.hits += other.hits
            self.n += other.n

        def compute(self):
            return {"overall": {"top2_accuracy": self.hits / self.n if self.n else 0.0}}

    PROCESSORS.register(Top2Accuracy.name, Top2Accuracy)
    try:
        mods = [m for m in build_modules(store.datasets(), variants=["original"]) if m.task in Top2Accuracy.tasks]
        for m in mods:
            m.processors = (*m.processors, Top2Accuracy.name)
            monkeypatch.setattr(m, "load", lambda *a, **k: pytest.fail("a model was loaded"))
        summary = Executor(store, mods, env["home"], progress=False, echo=lambda s: None).run()
        assert summary.models_loaded == 0 and summary.forward_samples == 0
        assert summary.rescored == len(GOOD_MODELS)
        new = {r["model_key"]: r for r in store.iter_results({"processor": Top2Accuracy.name})}
        assert set(new) == evaluated
        for r in new.values():
            base = next(store.iter_results({"inference_id": r["inference_id"], "processor": "classification"}))
            assert r["overall"]["top2_accuracy"] >= base["overall"]["accuracy"]

        # a bumped processor version (as classification 1 -> 2) makes every stored result of it stale:
        # the next cycle re-scores each from the stored predictions, again with no inference
        from processors.classification import ClassificationProcessor

        before = {r["inference_id"]: r for r in store.iter_results(single)}
        monkeypatch.setattr(ClassificationProcessor, "version", ClassificationProcessor.version + 1)
        summary = Executor(store, mods, env["home"], progress=False, echo=lambda s: None).run()
        assert summary.models_loaded == 0 and summary.forward_samples == 0
        assert summary.rescored == len(GOOD_MODELS) and summary.results_written == len(GOOD_MODELS)
        bumped = {r["inference_id"]: r for r in store.iter_results(
            {**single, "processor_version": ClassificationProcessor.version})}
        assert set(bumped) == set(before)
        for inference_id, r in bumped.items():  # same code, same stored predictions: same numbers
            assert r["overall"] == before[inference_id]["overall"]
        # tables and exports show the newest result of each task, not the superseded one beside it
        shown = store.latest_results(single)
        assert len(shown) == len(before) and {r["processor_version"] for r in shown} == {ClassificationProcessor.version}
    finally:
        PROCESSORS.unregister(Top2Accuracy.name)


def test_sigkill_mid_cycle_then_resume_without_duplicates(env):
    store = Store(env["uri"], env["db"])
    # offline throughput only (the runtime scenarios are tested in tests/test_runtime_scenarios.py)
    # one of the four text variants: three tasks (one per good text model) of about 3 s on an idle machine; the cycle
    # is killed during the second, after the first result, and the resume does the two left
    args = ["run", "--no-progress", "--scenarios", "offline",
            "--module", "hf-text-classification/*", "--variant", "original"]
    # a first quick scrape so the run has models
    cli("scrape", "--source", "local")
    # each finished task stored at once, so the first result is there before the second task ends on any machine
    child_env = {**os.environ, "ZOOEVAL_WRITE_EVERY_S": "0"}
    with start_zooeval(args, env=child_env) as proc:  # (killed if the test fails before it is waited for)
        deadline = time.time() + 300
        while store.count("results") < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, "the cycle ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60).returncode == -signal.SIGKILL
    partial = store.count("results")
    expected = 3  # 3 good text models x 1 variant
    assert 0 < partial < expected
    out = run_zooeval(args, env=os.environ.copy(), timeout=600)  # the resume
    assert out.returncode == 0, out.stderr[-3000:]
    assert store.count("results", {"module": {"$regex": "^hf-text"}}) == expected
    dup = list(store.db.results.aggregate([
        {"$group": {"_id": {"i": "$inference_id", "p": "$processor"}, "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}}]))
    assert dup == []
    # and predictions: one set of chunks per inference
    for inf in store.db.inferences.find():
        assert store.count("predictions", {"inference_id": inf["_id"]}) == inf["n_chunks"]
