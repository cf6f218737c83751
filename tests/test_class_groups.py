"""Superclass results for classification: a dataset's class groups (``class_groups.json``) give per-group accuracy,
precision, recall and F1 equal to scikit-learn on the same predictions, including awkward groups (never
predicted, absent from the truth, no predictions at all), and declaring groups for an evaluated dataset
re-scores the stored predictions with no new inference."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from core.data import DataError, check_class_groups
from pipeline.executor import Executor
from processors.classification import ClassificationProcessor, confusion_matrix, group_metrics
from scraper.datasets import register_datasets
from tasks.classification import ClassificationPredictions
from tests.test_faults import DATASET, fault_zoo, only, store, text_module  # noqa: F401  (fixtures)

CLASSES = [f"c{i}" for i in range(8)]
GROUPS = {
    "animals": ["c0", "c1", "c2"],
    "vehicles": ["c3", "c4"],
    "never-predicted": ["c5"],  # y_pred never holds c5
    "absent": ["c6"],  # y_true never holds c6 (predicted sometimes)
    "overlapping": ["c2", "c3", "c7"],  # a class may be in several groups
}


def _reference(y_true: np.ndarray, y_pred: np.ndarray, members: list[str]) -> dict[str, float]:
    labels = [CLASSES.index(c) for c in members]
    ref: dict[str, float] = {"support": int(np.isin(y_true, labels).sum())}
    in_group = np.isin(y_true, labels)
    ref["accuracy"] = accuracy_score(y_true[in_group], y_pred[in_group]) if in_group.any() else 0.0
    for avg in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        ref.update({f"{avg}_precision": p, f"{avg}_recall": r, f"{avg}_f1": f})
    p, r, f, _ = precision_recall_fscore_support(np.isin(y_true, labels), np.isin(y_pred, labels), average="binary",
                                                 zero_division=0)
    ref.update({"coarse_precision": p, "coarse_recall": r, "coarse_f1": f})
    return ref


def _stream(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.choice([0, 1, 2, 3, 4, 5, 7], size=n)  # c6 absent from the truth
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 8, size=n))
    y_pred[y_pred == 5] = 6  # c5 never predicted
    return y_true, y_pred


@pytest.mark.parametrize("seed", range(5))
def test_group_metrics_equal_scikit_learn(seed):
    y_true, y_pred = _stream(seed, 500)
    out = group_metrics(confusion_matrix(y_true, y_pred, len(CLASSES)), CLASSES, GROUPS)
    assert set(out) == set(GROUPS)
    for name, members in GROUPS.items():
        ref = _reference(y_true, y_pred, members)
        assert out[name]["classes"] == members
        for key, value in ref.items():
            assert out[name][key] == pytest.approx(value, abs=1e-12), (name, key)
    assert out["absent"]["support"] == 0 and out["absent"]["accuracy"] == 0.0
    assert out["never-predicted"]["micro_precision"] == 0.0


def test_no_predictions_at_all():
    out = group_metrics(np.zeros((8, 8), dtype=np.int64), CLASSES, GROUPS)
    assert all(v == 0 or v == 0.0 for g in out.values() for k, v in g.items() if k != "classes")


def test_processor_stores_per_group_only_when_groups_are_declared():
    y_true, y_pred = _stream(7, 300)
    batch = ClassificationPredictions([f"s{i}" for i in range(300)], y_true, y_pred[:, None], np.ones((300, 1)))
    plain = ClassificationProcessor(CLASSES)
    plain.update(batch)
    assert "per_group" not in plain.compute()
    grouped = ClassificationProcessor.from_dataset({"classes": [{"label": c} for c in CLASSES], "class_groups": GROUPS})
    for s in range(0, 300, 64):  # in batches, as the executor feeds it
        grouped.update(ClassificationPredictions(batch.sample_ids[s:s + 64], y_true[s:s + 64], y_pred[s:s + 64, None],
                                                 np.ones((len(y_true[s:s + 64]), 1))))
    result = grouped.compute()
    assert result["overall"] == plain.compute()["overall"]
    assert result["per_group"]["vehicles"]["macro_f1"] == pytest.approx(
        _reference(y_true, y_pred, GROUPS["vehicles"])["macro_f1"], abs=1e-12)
    assert ClassificationProcessor.dataset_params({"class_groups": GROUPS}) != {}
    assert ClassificationProcessor.dataset_params({}) == {}


@pytest.mark.parametrize("groups, message", [
    (["c0"], "must map a group name"),
    ({"g": []}, "non-empty list"),
    ({"g": ["c0", "zebra"]}, "does not have: \\['zebra'\\]"),
    ({"g": ["c0", "c0"]}, "lists a class twice"),
])
def test_bad_groups_are_named(groups, message):
    with pytest.raises(ValueError, match=message):
        check_class_groups(groups, CLASSES)


def test_declaring_groups_rescores_with_no_inference(store, fault_zoo, tmp_path):  # noqa: F811
    datasets = tmp_path / "datasets"
    shutil.copytree(f"{fault_zoo['datasets']}/{DATASET}", datasets / DATASET)
    register_datasets(store, datasets, log=lambda *a: None)
    revision = store.datasets()[DATASET]["revision"]
    run = lambda: Executor(store, [text_module()], tmp_path, batch_size=16, progress=False,  # noqa: E731
                           echo=lambda s: None, scenarios=("offline",)).run(only("good"))
    first = run()
    assert first.inferences == 1 and first.results_written == 1
    assert "per_group" not in store.db.results.find_one()

    groups = {"positive only": ["positive"], "both": ["negative", "positive"]}
    (datasets / DATASET / "class_groups.json").write_text(json.dumps(groups))
    register_datasets(store, datasets, log=lambda *a: None)
    assert store.datasets()[DATASET]["revision"] == revision  # the content did not change
    assert store.datasets()[DATASET]["class_groups"] == groups
    second = run()
    assert second.inferences == 0 and second.rescored == 1 and second.results_written == 1  # zero forward passes
    newest = store.latest_results({"model_name": "fault/good"})[0]
    chunks = list(store.iter_predictions(newest["inference_id"]))
    y_true = np.asarray([t for c in chunks for t in c["y_true"]])
    y_pred = np.asarray([row[0] for c in chunks for row in c["topk_labels"]])
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=[1], average="micro", zero_division=0)
    assert newest["per_group"]["positive only"]["micro_f1"] == pytest.approx(f, abs=1e-12)
    assert newest["per_group"]["both"]["accuracy"] == pytest.approx(newest["overall"]["accuracy"], abs=1e-12)
    assert run().results_written == 0  # and nothing more to do

    (datasets / DATASET / "class_groups.json").write_text(json.dumps({"g": ["neutral"]}))
    with pytest.raises(DataError, match="does not have"):
        from tasks.classification import read_class_groups

        read_class_groups(datasets / DATASET, ["negative", "positive"])
