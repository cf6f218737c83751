"""An unreadable dataset file met mid-cycle (issue 4's "data error" failure class).

A copy of the demo's digits dataset is registered, one model is evaluated, then one test image is truncated
on disk. The next model's tasks must fail as ``data_error`` with the file named in the reason, the variant
built from the broken data must not be left (half built) in the cache, the first model's results must be
untouched, and nothing may be stored for the failed tasks. Real mongod, real trained digits ResNets.
"""
from __future__ import annotations

import json
import shutil

import pytest

import processors.classification  # noqa: F401  (registers the classification processor)
from core.store import Store
from modules.hf import HFImageClassification
from perturbations.cache import is_complete
from pipeline.executor import Executor
from scraper.datasets import register_datasets
from scraper.local import scrape_local


@pytest.fixture
def store(demo_home, mongo_uri, db_name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    shutil.copytree(demo_home / "datasets" / "digits", tmp_path / "datasets" / "digits")
    s = Store(mongo_uri, db_name)
    assert register_datasets(s, tmp_path / "datasets", log=lambda *a: None) == ["digits"]
    scrape_local(s, demo_home / "zoo", log=lambda *a: None)
    yield s
    s.close()


def test_unreadable_image_is_a_data_error_and_nothing_stored_is_lost(store, tmp_path):
    module = HFImageClassification(dataset="digits", variants=("original", "mirrored"))
    home = tmp_path / "home"

    def run(model: str):
        ex = Executor(store, [module], home, batch_size=32, progress=False, echo=lambda s: None)
        return ex.run({"name": model})

    run("demo/resnet-digits")
    before = {r["_id"]: r["overall"]["accuracy"] for r in store.iter_results({"model_name": "demo/resnet-digits"})}
    assert len(before) == 2 and store.count("failures") == 0

    # truncate one test image: the header survives, the pixel data does not
    ds = tmp_path / "datasets" / "digits"
    row = json.loads((ds / "test.jsonl").read_text().splitlines()[3])
    image = ds / row["file"]
    image.write_bytes(image.read_bytes()[:20])
    # the mirrored variant is cached already (built from the intact data): drop it, so it is rebuilt from the
    # broken data and the build itself meets the error
    shutil.rmtree(home / "variants")

    summary = run("demo/resnet-digits-words")
    assert not summary.stopped
    fails = list(store.db.failures.find({"model_name": "demo/resnet-digits-words"}))
    assert sorted(f["variant"] for f in fails) == ["mirrored", "original"]
    for f in fails:
        assert f["error_class"] == "data_error", f
        assert row["file"].split("/")[-1] in f["reason"] and "cannot read image" in f["reason"]
        assert f["traceback"]
    assert store.count("results", {"model_name": "demo/resnet-digits-words"}) == 0
    assert store.count("inferences", {"model_name": "demo/resnet-digits-words"}) == 0
    # no complete variant was made from the broken data, and no half-built one is left behind
    leftovers = [p for p in (home / "variants").rglob("*") if p.is_dir() and ".tmp-" in p.name]
    assert leftovers == []
    assert not any(is_complete(p) for p in (home / "variants").rglob("*") if p.is_dir())
    # the first model's results are untouched
    after = {r["_id"]: r["overall"]["accuracy"] for r in store.iter_results({"model_name": "demo/resnet-digits"})}
    assert after == before
    assert store.last_run()["status"] == "done"
