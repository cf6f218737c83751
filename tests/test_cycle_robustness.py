"""One bad dataset, module or model never stops the cycle: every exception inside a task is a stored failure
with its class and traceback, a module that cannot be planned is left out with a warning, and the good
models next to them are evaluated completely and correctly. Also: dataset registration refuses a dataset
that names two classes alike (ImageNet's two "crane"s) and registers the others.
"""
from __future__ import annotations

import json
import shutil

import pytest

import processors.classification  # noqa: F401  (registers the classification processor)
from core.data import LocalDataset
from core.store import Store
from modules.hf import HFTextClassification
from pipeline.executor import Executor
from scraper.datasets import register_datasets
from scraper.local import scrape_local
from tests.fault_repos import DATASET, session_fault_zoo


@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


class ForwardFails(HFTextClassification):
    """A module whose forward pass raises (a bug in a module, or an input it cannot take)."""

    kind = "test-forward-fails"

    def forward(self, loaded, batch):
        raise RuntimeError("this module's forward is broken")


class AcceptsFails(HFTextClassification):
    """A module that raises while planning decides which models it takes."""

    kind = "test-accepts-fails"

    def accepts(self, model, datasets):
        raise KeyError("config")


def copy_dataset(src, dest, name, **changes):
    shutil.copytree(src, dest)
    meta = json.loads((dest / "dataset.json").read_text())
    meta.update(name=name, **changes)
    (dest / "dataset.json").write_text(json.dumps(meta))
    return dest


def test_broken_dataset_and_modules_next_to_good_ones(fault_zoo, mongo_uri, db_name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = tmp_path / "datasets"
    shutil.copytree(fault_zoo["dataset_dir"], datasets / DATASET)
    copy_dataset(fault_zoo["dataset_dir"], datasets / "tinysent-broken", "tinysent-broken")
    copy_dataset(fault_zoo["dataset_dir"], datasets / "tinysent-badvariant", "tinysent-badvariant",
                 supported_variants=["no-such-variant"])
    store = Store(mongo_uri, db_name)
    try:
        assert sorted(register_datasets(store, datasets, log=lambda *a: None)) == [DATASET, "tinysent-badvariant",
                                                                                   "tinysent-broken"]
        (datasets / "tinysent-broken" / "test.jsonl").write_text("{not json\n")  # unreadable after registration
        scrape_local(store, fault_zoo["zoo"], log=lambda *a: None)
        # the good model is "trained on" every copy (compatible datasets), so each module takes it
        store.db.models.update_one({"name": "fault/good"},
                                   {"$set": {"datasets": [DATASET, "tinysent-broken", "tinysent-badvariant"]}})
        modules = [HFTextClassification(dataset=DATASET), HFTextClassification(dataset="tinysent-broken"),
                   HFTextClassification(dataset="tinysent-badvariant", variants=("original", "no-such-variant")),
                   ForwardFails(dataset=DATASET), AcceptsFails(dataset=DATASET)]
        lines: list[str] = []
        summary = Executor(store, modules, tmp_path / "home", batch_size=16, progress=False, echo=lines.append).run(
            {"name": "fault/good"})
        assert not summary.stopped and store.last_run()["status"] == "done"
        # the broken variant's module and the module whose accepts() raises are left out, with a warning
        warnings = [line for line in lines if line.startswith("WARNING")]
        assert any("hf-text-classification/tinysent-badvariant left out" in w and "no-such-variant" in w for w in warnings), lines
        assert any("test-accepts-fails/tinysent could not judge model local/fault/good" in w for w in warnings), lines
        assert store.last_run()["problems"]
        # each broken task is a stored failure with its class and traceback
        fails = {f["module"]: f for f in store.db.failures.find()}
        assert set(fails) == {"hf-text-classification/tinysent-broken", "test-forward-fails/tinysent"}
        assert fails["hf-text-classification/tinysent-broken"]["error_class"] == "data_error"
        assert "test.jsonl:1" in fails["hf-text-classification/tinysent-broken"]["reason"]
        assert fails["test-forward-fails/tinysent"]["error_class"] == "inference_error"
        assert "forward is broken" in fails["test-forward-fails/tinysent"]["reason"]
        assert all(f["traceback"] for f in fails.values())
        # the good tasks are complete and right
        ok = {r["module"]: r for r in store.iter_results({"model_name": "fault/good"})}
        assert set(ok) == {"hf-text-classification/tinysent"}
        assert ok["hf-text-classification/tinysent"]["overall"]["accuracy"] == pytest.approx(fault_zoo["accuracy"], abs=1e-12)
    finally:
        store.close()


def test_a_dataset_naming_two_classes_alike_is_skipped(fault_zoo, mongo_uri, db_name, tmp_path):
    datasets = tmp_path / "datasets"
    shutil.copytree(fault_zoo["dataset_dir"], datasets / DATASET)
    copy_dataset(fault_zoo["dataset_dir"], datasets / "cranes", "cranes", classes=["crane", "crane"])
    assert LocalDataset.open(datasets / "cranes").classes == ["crane", "crane"]
    store = Store(mongo_uri, db_name)
    try:
        said: list[str] = []
        assert register_datasets(store, datasets, log=said.append) == [DATASET]
        assert len(said) == 1 and "cranes" in said[0] and "'crane' (classes 0 and 1)" in said[0], said
        assert set(store.datasets()) == {DATASET}
    finally:
        store.close()
