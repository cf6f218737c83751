"""Length-bucketed batches for text: a task's inputs are predicted in order of their length (batches pad little)
and every prediction is stored at its own sample's position; the predictions equal the unsorted run's."""
from __future__ import annotations

import numpy as np
import pytest

import tasks.batching as batching
from core.data import LocalDataset
from modules.hf import HFTextClassification
from tasks.base import Mapping
from tasks.batching import length_order, restore_order
from tests.fault_repos import DATASET, session_fault_zoo


@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


def test_order_and_restore_are_inverse():
    rows = [{"id": str(i), "text": "x" * n} for i, n in enumerate([5, 1, 3, 1, 9])]
    order = length_order(rows)
    assert order == [1, 3, 2, 0, 4]  # stable: equal lengths keep their order
    values = np.array([len(rows[i]["text"]) for i in order])
    assert restore_order(values, order).tolist() == [5, 1, 3, 1, 9]
    pairs = [{"id": "a", "text": "xx", "text_pair": "yyyy"}, {"id": "b", "text": "xxx", "text_pair": ""}]
    assert length_order(pairs) == [1, 0]
    assert length_order([{"id": "i", "file": "a.png"}]) is None and length_order([]) is None


def test_bucketed_predictions_equal_the_unsorted_run(fault_zoo, monkeypatch):
    from tasks.classification import TEXT_CLASSIFICATION as kind

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dataset = LocalDataset.open(fault_zoo["dataset_dir"])
    module = HFTextClassification(dataset=DATASET)
    model = {"name": "fault/good", "path": str(fault_zoo["repos"]["good"]), "source": "local",
             "files": {"model.safetensors": 1}}
    loaded = module.load(model, "cpu")
    doc = {"classes": [{"label": c} for c in dataset.classes], "synonyms": {}}
    mapping = kind.map_labels(loaded.id2label, doc, trained_on_dataset=True)
    rows = dataset.rows("test")
    assert length_order(rows) != list(range(len(rows)))  # the bucketed run really predicts in another order
    bucketed, _ = kind.run(module, loaded, dataset, "test", Mapping(mapping.index), batch_size=8)
    monkeypatch.setattr(batching, "length_order", lambda rows: None)
    plain, _ = kind.run(module, loaded, dataset, "test", Mapping(mapping.index), batch_size=8)
    assert bucketed.sample_ids == plain.sample_ids == [r["id"] for r in rows]
    assert np.array_equal(bucketed.y_true, plain.y_true)
    assert np.array_equal(bucketed.topk_labels, plain.topk_labels)
    np.testing.assert_allclose(bucketed.topk_scores, plain.topk_scores, rtol=0, atol=1e-6)
    assert bucketed.topk_labels[:, 0].tolist() == fault_zoo["predictions"]
