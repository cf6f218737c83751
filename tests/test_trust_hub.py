"""Real repo shapes from the Hub that must be refused with their reason, never scored: a body published
without its head (sentence-transformers / SetFit style, which transformers would complete with a random head)
and TensorFlow-only weights. Through `zooeval scrape --source huggingface` + `zooeval run` against the Hub
stand-in, with the unmodified huggingface_hub and transformers.

Also: a refusal that cannot change without a new revision is parked at once (the next cycle does not try it
again), a load failure is printed once per model, and the same revision evaluated twice (in two stores) gives
bit-identical stored metrics.
"""
from __future__ import annotations

import os
import shutil
import uuid

import pytest
import torch
from pymongo import MongoClient

from core.store import Store
from tests.cli_child import run_zooeval
from tests.fault_repos import DATASET, build_trust_repos, session_fault_zoo
from tests.hubserver import HubServer


@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


def zooeval(*args: str, env: dict[str, str]) -> str:
    out = run_zooeval(args, env=env, timeout=600)
    assert out.returncode == 0, f"zooeval {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def metrics(store: Store, name: str) -> dict[str, dict]:
    """Every stored number of a model's results, by variant (no ids, timestamps or runtimes)."""
    keep = ("overall", "per_class", "confusion_matrix", "misclassifications")
    return {r["variant"]: {k: r[k] for k in keep} for r in store.iter_results({"model_name": name})}


def body_only_logits(repo) -> list[torch.Tensor]:
    """What loading the body-only repo as a classifier gives, twice: transformers fills the head at random."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(repo))
    enc = tok(["the film was very good"], return_tensors="pt")
    out = []
    for _ in range(2):
        net = AutoModelForSequenceClassification.from_pretrained(str(repo)).eval()
        with torch.inference_mode():
            out.append(net(**enc).logits)
    return out


@pytest.mark.slow
def test_refusals_from_the_hub_are_parked_and_said_once(fault_zoo, mongo_uri, db_name, tmp_path):
    root = tmp_path / "hub"
    shutil.copytree(fault_zoo["repos"]["good"], root / "org" / "good")
    trust = build_trust_repos(fault_zoo["repos"]["good"], tmp_path / "trust")
    for name, folder in trust.items():
        shutil.copytree(folder, root / "org" / name)
    # why the body-only repo must be refused: the same revision loaded twice scores differently
    first, second = body_only_logits(trust["body-only"])
    assert not torch.equal(first, second)

    home = tmp_path / "home"
    shutil.copytree(fault_zoo["dataset_dir"], home / "datasets" / DATASET)
    other_db = "zt_" + uuid.uuid4().hex[:10]
    with HubServer(root) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "ZOOEVAL_HOME": str(home),
               "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name, "HF_HUB_DISABLE_TELEMETRY": "1"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            env.pop(var, None)
        zooeval("scrape", "--source", "huggingface", "--no-progress", env=env)
        out = zooeval("run", "--no-progress", "--batch-size", "16", env=env)
        rerun = zooeval("run", "--no-progress", env=env)
        full_rerun = zooeval("run", "--no-progress", "--full-plan", env=env)  # every candidate visited
        # the same revisions in a second store: a fresh evaluation of the good model
        env2 = {**env, "ZOOEVAL_DB": other_db}
        zooeval("scrape", "--source", "huggingface", "--no-progress", env=env2)
        zooeval("run", "--no-progress", "--batch-size", "16", env=env2)
    store = Store(mongo_uri, db_name)
    store2 = Store(mongo_uri, other_db)
    try:
        n_tasks = 1 + len(store.datasets()[DATASET]["supported_variants"])
        fails = {}
        for f in store.db.failures.find():
            fails.setdefault(f["model_name"], []).append(f)
        assert set(fails) == {"org/body-only", "org/tf-only"}
        body = fails["org/body-only"]
        assert len(body) == n_tasks and {f["error_class"] for f in body} == {"incomplete_weights"}
        assert "classifier.weight" in body[0]["reason"] and "classifier.bias" in body[0]["reason"], body[0]["reason"]
        tf = fails["org/tf-only"]
        assert {f["error_class"] for f in tf} == {"incompatible_library"}
        assert "only TensorFlow weights (tf_model.h5); zooeval runs PyTorch weights" in tf[0]["reason"], tf[0]["reason"]
        for f in body + tf:
            assert f["permanent"] is True and f["retry_after"] is None and f["attempts"] == 1
        # one line per model, naming how many tasks it covers
        for name in ("org/body-only", "org/tf-only"):
            lines = [line for line in out.splitlines() if line.startswith("FAILED") and name in line]
            assert len(lines) == 1 and f"{n_tasks} task(s)" in lines[0], out
        # parked at once: the next cycle does not try them again (the watermarks spare it even visiting the models;
        # a full plan finds the parked tasks and still does not try them)
        assert "0 models visited" in rerun and "nothing to do" in rerun, rerun
        assert f"{2 * n_tasks} failed before" in full_rerun and "nothing to do" in full_rerun, full_rerun
        assert {f["attempts"] for f in store.db.failures.find()} == {1}
        # the good model: right, and bit-identical in the second store
        good = metrics(store, "org/good")
        assert good["original"]["overall"]["accuracy"] == pytest.approx(fault_zoo["accuracy"], abs=1e-12)
        assert good == metrics(store2, "org/good")
    finally:
        store.close()
        store2.close()
        with MongoClient(mongo_uri) as client:
            client.drop_database(other_db)
