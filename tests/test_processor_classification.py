"""ClassificationProcessor and its pure metric functions, checked against scikit-learn."""
from __future__ import annotations

import gc
import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from processors.base import PROCESSORS, ProcessorSpec
from processors.classification import (
    DENSE_MAX_CLASSES,
    ClassificationProcessor,
    confusion_matrix,
    dense_confusion,
    metrics_from_confusion,
)
from tasks.classification import ClassificationPredictions

TOL = 1e-12


def make_batch(y_true, y_pred, scores=None, ids=None, k=3, rng=None) -> ClassificationPredictions:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    n = len(y_true)
    if ids is None:
        ids = [f"s{i}" for i in range(n)]
    rng = rng or np.random.default_rng(0)
    labels = np.zeros((n, k), dtype=np.int64)
    labels[:, 0] = y_pred
    if k > 1:
        labels[:, 1:] = rng.integers(0, max(int(y_pred.max(initial=0)) + 1, 1), size=(n, k - 1))
    if scores is None:
        top = rng.uniform(0.34, 1.0, size=n)
    else:
        top = np.asarray(scores, dtype=np.float64)
    topk_scores = np.zeros((n, k), dtype=np.float64)
    topk_scores[:, 0] = top
    if k > 1:
        topk_scores[:, 1:] = (1.0 - top)[:, None] / (k - 1)
    return ClassificationPredictions(list(ids), y_true, labels, topk_scores)


def classes_for(c: int) -> list[str]:
    return [f"class_{i}" for i in range(c)]


AVERAGES = ("macro", "micro", "weighted")
ALL_CLASSES_KEYS = ("macro_precision_all_classes", "macro_recall_all_classes", "macro_f1_all_classes")
OVERALL_KEYS = {"n", "correct", "incorrect", "accuracy", *ALL_CLASSES_KEYS,
                *(f"{avg}_{m}" for avg in AVERAGES for m in ("precision", "recall", "f1"))}


def sklearn_expected(y_true, y_pred, c: int) -> dict:
    """sklearn's numbers: ``default`` with labels=None (the present labels), ``all_classes`` with
    labels=range(c); both with zero_division=0."""
    labels = list(range(c))
    out = {"accuracy": skm.accuracy_score(y_true, y_pred), "default": {}, "all_classes": {}}
    for avg in AVERAGES:
        for which, kw in (("default", {}), ("all_classes", {"labels": labels})):
            p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0, **kw)
            out[which][f"{avg}_precision"], out[which][f"{avg}_recall"], out[which][f"{avg}_f1"] = p, r, f
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    out["per_class"] = (p, r, f, s)
    out["cm"] = skm.confusion_matrix(y_true, y_pred, labels=labels)
    return out


def assert_matches_sklearn(result: dict, y_true, y_pred, c: int) -> None:
    exp = sklearn_expected(y_true, y_pred, c)
    overall = result["overall"]
    assert set(overall) == OVERALL_KEYS
    assert overall["n"] == len(y_true)
    assert overall["correct"] == int(np.sum(np.asarray(y_true) == np.asarray(y_pred)))
    assert overall["incorrect"] == len(y_true) - overall["correct"]
    assert abs(overall["accuracy"] - float(exp["accuracy"])) <= TOL
    for m in ("precision", "recall", "f1"):
        # macro_*: sklearn's default (mean over the labels in y_true or y_pred)
        key = f"macro_{m}"
        assert abs(overall[key] - float(exp["default"][key])) <= TOL, (key, overall[key], exp["default"][key])
        # macro_*_all_classes: mean over every dataset class
        key_all = f"macro_{m}_all_classes"
        assert abs(overall[key_all] - float(exp["all_classes"][key])) <= TOL, (key_all, overall[key_all])
        # micro and weighted: equal to sklearn's default and to labels=range(C)
        for avg in ("micro", "weighted"):
            key = f"{avg}_{m}"
            for which in ("default", "all_classes"):
                assert abs(overall[key] - float(exp[which][key])) <= TOL, (key, which, overall[key], exp[which][key])
    p, r, f, s = exp["per_class"]
    cm = exp["cm"]
    names = classes_for(c)
    assert list(result["per_class"]) == names
    for i, name in enumerate(names):
        pc = result["per_class"][name]
        assert pc["support"] == int(s[i])
        assert pc["tp"] == int(cm[i, i])
        assert pc["fp"] == int(cm[:, i].sum() - cm[i, i])
        assert pc["fn"] == int(cm[i, :].sum() - cm[i, i])
        assert abs(pc["precision"] - p[i]) <= TOL
        assert abs(pc["recall"] - r[i]) <= TOL
        assert abs(pc["f1"] - f[i]) <= TOL
    assert result["confusion_matrix"]["labels"] == names
    np.testing.assert_array_equal(dense_confusion(result["confusion_matrix"]), cm)  # dense or sparse form
    if c <= DENSE_MAX_CLASSES:
        assert result["confusion_matrix"]["matrix"] == cm.tolist()


def assert_plain_json(obj) -> None:
    """Only plain Python types, no NaN/inf; round-trips through strict JSON."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) is str
            assert_plain_json(v)
    elif isinstance(obj, list):
        for v in obj:
            assert_plain_json(v)
    elif isinstance(obj, float):
        assert type(obj) is float and math.isfinite(obj)
    else:
        assert obj is None or type(obj) in (int, str, bool), type(obj)
    json.dumps(obj, allow_nan=False)


def run(y_true, y_pred, c: int, **kw) -> dict:
    proc = ClassificationProcessor(classes_for(c), **kw)
    proc.update(make_batch(y_true, y_pred))
    return proc.compute()


# --------------------------------------------------------------------------- registry / identity


def test_registered_with_identity():
    assert PROCESSORS.get("classification") is ClassificationProcessor
    # version 2: macro_* became sklearn's default average (version 1 averaged over all classes)
    assert ProcessorSpec.parse("classification").identity() == {"name": "classification", "version": 2}
    assert ClassificationProcessor.tasks == ("image-classification", "text-classification")


# --------------------------------------------------------------------------- random vs sklearn


@pytest.mark.parametrize("seed", range(50))
def test_random_inputs_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 13))
    n = int(rng.integers(1, 301))
    if seed % 5 == 1:  # many classes, few samples: most classes absent from both y_true and y_pred
        c, n = int(rng.integers(20, 201)), int(rng.integers(1, 31))
    y_true = rng.integers(0, c, size=n)
    # mix of correct and random predictions, sometimes with a skewed distribution
    y_pred = np.where(rng.uniform(size=n) < rng.uniform(), y_true, rng.integers(0, c, size=n))
    if seed % 3 == 0:  # restrict labels so some classes are missing from y_true / y_pred
        y_true = np.minimum(y_true, c - 2)
        y_pred = np.maximum(y_pred, 1)
    result = run(y_true, y_pred, c)
    assert_matches_sklearn(result, y_true, y_pred, c)
    assert_plain_json(result)
    # both macro averages share the per-class sum: all-classes = default * present / C
    present = len(set(y_true.tolist()) | set(y_pred.tolist()))
    o = result["overall"]
    for m in ("precision", "recall", "f1"):
        assert abs(o[f"macro_{m}_all_classes"] * c - o[f"macro_{m}"] * present) <= 1e-9
    # the pure functions give the same as the processor
    cm = confusion_matrix(y_true, y_pred, c)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(c)))
    pure = metrics_from_confusion(cm, classes_for(c))
    assert pure["overall"] == result["overall"]
    assert pure["per_class"] == result["per_class"]


# --------------------------------------------------------------------------- missing classes


def macro_values(result: dict, suffix: str = "") -> tuple[float, float, float]:
    o = result["overall"]
    return tuple(o[f"macro_{m}{suffix}"] for m in ("precision", "recall", "f1"))


def test_class_never_predicted():
    y_true = [0, 1, 2, 2, 1, 0]
    y_pred = [0, 1, 1, 1, 1, 0]  # class 2 never predicted
    result = run(y_true, y_pred, 3)
    assert_matches_sklearn(result, y_true, y_pred, 3)
    pc = result["per_class"]["class_2"]
    assert pc == {"tp": 0, "fp": 0, "fn": 2, "support": 2, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    # class 2 is in y_true, so it counts (as 0.0) in the default macro: precision (1 + 2/4 + 0) / 3,
    # recall (1 + 1 + 0) / 3; every class is present, so both macro averages agree
    assert macro_values(result) == pytest.approx((0.5, 2 / 3, (1 + 2 / 3 + 0) / 3), abs=TOL)
    assert macro_values(result) == macro_values(result, "_all_classes")


def test_class_absent_from_ground_truth():
    y_true = [0, 1, 1, 0]
    y_pred = [0, 2, 1, 2]  # class 2 predicted, never true; class 3 in neither
    result = run(y_true, y_pred, 4)
    assert_matches_sklearn(result, y_true, y_pred, 4)
    pc = result["per_class"]["class_2"]
    assert pc == {"tp": 0, "fp": 2, "fn": 0, "support": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    # class 2 (in y_pred) counts in the default macro, class 3 only in the all-classes one:
    # precision (1, 1, 0, 0), recall (1/2, 1/2, 0, 0), f1 (2/3, 2/3, 0, 0)
    assert macro_values(result) == pytest.approx((2 / 3, 1 / 3, 4 / 9), abs=TOL)
    assert macro_values(result, "_all_classes") == pytest.approx((2 / 4, 1 / 4, 4 / 12), abs=TOL)


def test_class_absent_from_both_is_left_out_of_macro():
    y_true = [0, 1, 0, 1]
    y_pred = [0, 1, 0, 1]  # perfect on classes 0/1; classes 2 and 3 never appear
    result = run(y_true, y_pred, 4)
    assert_matches_sklearn(result, y_true, y_pred, 4)
    o = result["overall"]
    assert o["accuracy"] == 1.0
    assert macro_values(result) == (1.0, 1.0, 1.0)
    assert macro_values(result, "_all_classes") == (0.5, 0.5, 0.5)
    assert o["weighted_f1"] == 1.0 and o["micro_f1"] == 1.0
    assert set(result["per_class"]) == set(classes_for(4))
    assert result["per_class"]["class_3"]["support"] == 0


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
def test_single_class():
    result = run([0, 0, 0], [0, 0, 0], 1)
    assert_matches_sklearn(result, [0, 0, 0], [0, 0, 0], 1)
    assert result["overall"]["macro_f1"] == 1.0
    assert result["overall"]["macro_f1_all_classes"] == 1.0


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
def test_one_class_present_of_many():
    result = run([3, 3, 3], [3, 3, 3], 5)
    assert_matches_sklearn(result, [3, 3, 3], [3, 3, 3], 5)
    assert macro_values(result) == (1.0, 1.0, 1.0)
    assert macro_values(result, "_all_classes") == (0.2, 0.2, 0.2)
    # one true class, one wrong prediction into another class: both classes count in the default macro
    y_true, y_pred = [3, 3, 3, 3], [3, 3, 3, 1]
    result = run(y_true, y_pred, 5)
    assert_matches_sklearn(result, y_true, y_pred, 5)
    assert macro_values(result) == pytest.approx((1 / 2, 3 / 8, (6 / 7) / 2), abs=TOL)


def test_perfect_model_on_a_20_sample_subset_of_1000_classes():
    rng = np.random.default_rng(20)
    y_true = rng.choice(1000, size=20, replace=False)  # 20 images, each of a different class
    result = run(y_true, y_true, 1000)
    assert_matches_sklearn(result, y_true, y_true, 1000)
    o = result["overall"]
    assert macro_values(result) == (1.0, 1.0, 1.0)
    assert o["macro_f1_all_classes"] == 0.02
    assert o["macro_precision_all_classes"] == o["macro_recall_all_classes"] == 0.02
    assert o["accuracy"] == o["micro_f1"] == o["weighted_f1"] == 1.0


# --------------------------------------------------------------------------- empty


def _assert_empty_result(result: dict, c: int) -> None:
    o = result["overall"]
    assert set(o) == OVERALL_KEYS
    assert (o["n"], o["correct"], o["incorrect"]) == (0, 0, 0)
    for k, v in o.items():
        if k not in ("n", "correct", "incorrect"):
            assert v == 0.0 and type(v) is float, k
    assert result["confusion_matrix"]["matrix"] == [[0] * c for _ in range(c)]
    assert result["misclassifications"] == []
    assert result["misclassifications_truncated"] is False
    for pc in result["per_class"].values():
        assert pc == {"tp": 0, "fp": 0, "fn": 0, "support": 0,
                      "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert_plain_json(result)


def test_no_updates():
    _assert_empty_result(ClassificationProcessor(classes_for(3)).compute(), 3)


def test_empty_is_defined_as_zero_where_sklearn_rejects_it():
    """sklearn defines nothing for empty input (it raises), so every rate of an empty result is 0.0."""
    for kw in ({}, {"labels": [0, 1, 2]}):
        with pytest.raises(ValueError, match="empty"):
            skm.precision_recall_fscore_support([], [], average="macro", zero_division=0, **kw)
    with pytest.raises(ValueError, match="empty"):
        skm.accuracy_score([], [])
    _assert_empty_result(run([], [], 3), 3)


def test_empty_batches():
    proc = ClassificationProcessor(classes_for(3))
    proc.update(ClassificationPredictions([], np.zeros(0, np.int64),
                                          np.zeros((0, 5), np.int64), np.zeros((0, 5))))
    proc.update(ClassificationPredictions([], np.zeros(0, np.int64),
                                          np.zeros(0, np.int64), np.zeros(0)))
    _assert_empty_result(proc.compute(), 3)


def test_pure_functions_empty():
    cm = confusion_matrix([], [], 4)
    assert cm.shape == (4, 4) and cm.dtype == np.int64 and cm.sum() == 0
    out = metrics_from_confusion(cm, classes_for(4))
    assert out["overall"]["n"] == 0 and out["overall"]["weighted_f1"] == 0.0
    assert out["overall"]["macro_f1"] == out["overall"]["macro_f1_all_classes"] == 0.0


# --------------------------------------------------------------------------- merge / streaming


@pytest.mark.parametrize("seed", range(10))
def test_merge_equals_concatenation(seed):
    rng = np.random.default_rng(1000 + seed)
    c = int(rng.integers(2, 9))
    n1, n2 = int(rng.integers(0, 80)), int(rng.integers(0, 80))
    yt = rng.integers(0, c, size=n1 + n2)
    yp = rng.integers(0, c, size=n1 + n2)
    sc = rng.uniform(0.2, 1.0, size=n1 + n2)
    ids = [f"id{i}" for i in range(n1 + n2)]

    whole = ClassificationProcessor(classes_for(c))
    whole.update(make_batch(yt, yp, sc, ids))

    a = ClassificationProcessor(classes_for(c))
    b = ClassificationProcessor(classes_for(c))
    a.update(make_batch(yt[:n1], yp[:n1], sc[:n1], ids[:n1]))
    b.update(make_batch(yt[n1:], yp[n1:], sc[n1:], ids[n1:]))
    a.merge(b)
    assert a.compute() == whole.compute()
    assert_matches_sklearn(a.compute(), yt, yp, c)


def test_merge_respects_cap_and_rejects_mismatch():
    a = ClassificationProcessor(["x", "y"], max_misclassifications=3)
    b = ClassificationProcessor(["x", "y"], max_misclassifications=3)
    a.update(make_batch([0, 0], [1, 1], ids=["a0", "a1"]))
    b.update(make_batch([1, 1, 1], [0, 0, 0], ids=["b0", "b1", "b2"]))
    a.merge(b)
    out = a.compute()
    assert [m["instance"] for m in out["misclassifications"]] == ["a0", "a1", "b0"]
    assert out["misclassifications_truncated"] is True
    assert out["overall"]["incorrect"] == 5
    with pytest.raises(ValueError):
        a.merge(ClassificationProcessor(["x", "z"]))


def test_streaming_batches_equal_one_batch():
    rng = np.random.default_rng(7)
    c, n = 6, 250
    yt = rng.integers(0, c, size=n)
    yp = rng.integers(0, c, size=n)
    sc = rng.uniform(size=n)
    ids = [f"id{i}" for i in range(n)]
    one = ClassificationProcessor(classes_for(c))
    one.update(make_batch(yt, yp, sc, ids))
    streamed = ClassificationProcessor(classes_for(c))
    cuts = [0, 1, 1, 40, 41, 120, 200, n]  # includes an empty and a length-1 batch
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        streamed.update(make_batch(yt[lo:hi], yp[lo:hi], sc[lo:hi], ids[lo:hi]))
    assert streamed.compute() == one.compute()
    assert_matches_sklearn(streamed.compute(), yt, yp, c)


def test_streaming_and_merge_with_different_classes_per_batch():
    """The default macro is over the classes present in the WHOLE stream: batches covering different
    classes, streamed or merged, give the one-shot (and sklearn) numbers, not a mean of batch macros."""
    rng = np.random.default_rng(11)
    c = 1000
    parts = []
    for lo in (0, 300, 600):  # each batch draws its classes from its own range
        yt = rng.integers(lo, lo + 15, size=20)
        yp = np.where(rng.uniform(size=20) < 0.6, yt, rng.integers(lo, lo + 40, size=20))
        parts.append((yt, yp))
    yt_all = np.concatenate([t for t, _ in parts])
    yp_all = np.concatenate([q for _, q in parts])
    ids = [f"id{i}" for i in range(len(yt_all))]
    one = ClassificationProcessor(classes_for(c))
    one.update(make_batch(yt_all, yp_all, ids=ids, rng=np.random.default_rng(1)))
    expected = one.compute()
    assert_matches_sklearn(expected, yt_all, yp_all, c)

    streamed = ClassificationProcessor(classes_for(c))
    shards = [ClassificationProcessor(classes_for(c)) for _ in parts]
    batch_macro_f1 = []
    for k, (yt, yp) in enumerate(parts):
        batch_ids = ids[20 * k:20 * (k + 1)]
        streamed.update(make_batch(yt, yp, ids=batch_ids))
        shards[k].update(make_batch(yt, yp, ids=batch_ids))
        batch_macro_f1.append(shards[k].compute()["overall"]["macro_f1"])
    merged = shards[0]
    for other in shards[1:]:
        merged.merge(other)
    for proc in (streamed, merged):
        got = proc.compute()
        assert got["overall"] == expected["overall"]
        assert got["per_class"] == expected["per_class"]
    # the case tells the two apart: averaging the batches' macro-F1 gives another number
    assert abs(float(np.mean(batch_macro_f1)) - expected["overall"]["macro_f1"]) > 1e-3


# --------------------------------------------------------------------------- misclassifications


def test_misclassifications_content_in_input_order():
    classes = ["cat", "dog", "bird"]
    proc = ClassificationProcessor(classes)
    proc.update(make_batch([0, 1, 2, 0], [0, 2, 2, 1], scores=[0.9, 0.6, 0.8, 0.55],
                           ids=["img-a", "img-b", "img-c", "img-d"]))
    out = proc.compute()
    assert out["misclassifications"] == [
        {"instance": "img-b", "true_class": "dog", "predicted_class": "bird", "confidence": 0.6},
        {"instance": "img-d", "true_class": "cat", "predicted_class": "dog", "confidence": 0.55},
    ]
    assert out["misclassifications_truncated"] is False
    assert all(type(m["confidence"]) is float for m in out["misclassifications"])
    assert_plain_json(out)


def test_misclassifications_cap_across_batches():
    proc = ClassificationProcessor(["a", "b"], max_misclassifications=4)
    proc.update(make_batch([0, 0, 0], [1, 0, 1], ids=["x0", "x1", "x2"]))
    proc.update(make_batch([1, 1, 1, 1], [0, 0, 0, 1], ids=["y0", "y1", "y2", "y3"]))
    out = proc.compute()
    assert [m["instance"] for m in out["misclassifications"]] == ["x0", "x2", "y0", "y1"]
    assert out["misclassifications_truncated"] is True
    assert out["overall"]["incorrect"] == 5


def test_cap_zero_and_exact_cap():
    out = run([0, 1], [1, 0], 2, max_misclassifications=0)
    assert out["misclassifications"] == [] and out["misclassifications_truncated"] is True
    out = run([0, 1], [1, 0], 2, max_misclassifications=2)
    assert len(out["misclassifications"]) == 2 and out["misclassifications_truncated"] is False


# --------------------------------------------------------------------------- validation


def test_out_of_range_true_label_names_value_and_sample():
    proc = ClassificationProcessor(classes_for(3))
    with pytest.raises(ValueError, match=r"5.*'s1'|'s1'.*5"):
        proc.update(make_batch([0, 5, 1], [0, 1, 1]))
    # nothing was accumulated from the rejected batch
    assert proc.compute()["overall"]["n"] == 0


def test_out_of_range_predicted_label_names_value_and_sample():
    proc = ClassificationProcessor(classes_for(3))
    batch = make_batch([0, 1, 2], [0, 1, 2], ids=["a", "b", "c"])
    batch.topk_labels[2, 0] = -1
    with pytest.raises(ValueError, match=r"-1.*'c'"):
        proc.update(batch)


def test_pure_function_validation():
    with pytest.raises(ValueError, match="3"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError):
        metrics_from_confusion(np.zeros((2, 2), np.int64), classes_for(3))


def test_constructor_validation():
    with pytest.raises(ValueError):
        ClassificationProcessor([])
    with pytest.raises(ValueError):
        ClassificationProcessor(["a", "a"])
    with pytest.raises(ValueError):
        ClassificationProcessor(["a"], max_misclassifications=-1)


def test_many_classes_store_a_sparse_confusion_matrix_that_reads_back_equal():
    from sklearn import metrics as skm

    from processors.classification import DENSE_MAX_CLASSES, ClassificationProcessor, dense_confusion
    from tasks.classification import ClassificationPredictions

    n_classes = 1000
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, n_classes, 500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, n_classes, 500))
    proc = ClassificationProcessor([f"c{i}" for i in range(n_classes)])
    scores = np.ones((500, 1))
    proc.update(ClassificationPredictions([str(i) for i in range(500)], y_true, y_pred[:, None], scores))
    doc = proc.compute()["confusion_matrix"]
    assert n_classes > DENSE_MAX_CLASSES and doc["format"] == "sparse" and "matrix" not in doc
    assert len(doc["entries"]) <= 500
    np.testing.assert_array_equal(dense_confusion(doc), skm.confusion_matrix(y_true, y_pred, labels=range(n_classes)))
    small = ClassificationProcessor(["a", "b", "c"])
    small.update(ClassificationPredictions(["0", "1"], np.array([0, 2]), np.array([[0], [1]]), np.ones((2, 1))))
    dense = small.compute()["confusion_matrix"]
    assert dense["matrix"] == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    np.testing.assert_array_equal(dense_confusion(dense), np.array(dense["matrix"]))


@pytest.mark.parametrize("n_classes, n", [(3, 10_000), (1000, 500), (1000, 200_000), (1, 7), (40, 1599), (40, 1600)])
def test_add_pairs_dense_and_sparse_paths_equal_sklearn(n_classes, n):
    """add_pairs counts by a dense bincount when the batch is large against the C x C cells and by the cells
    hit otherwise: both give scikit-learn's confusion matrix, and adding twice doubles it."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    from processors.classification import add_pairs

    rng = np.random.default_rng(n_classes + n)
    y_true = rng.integers(0, n_classes, size=n)
    y_pred = rng.integers(0, n_classes, size=n)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    add_pairs(cm, y_true, y_pred)
    expected = sk_confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
    assert np.array_equal(cm, expected)
    add_pairs(cm, y_true, y_pred)
    assert np.array_equal(cm, 2 * expected)


def test_add_pairs_rejects_a_matrix_it_cannot_add_to_in_place():
    from processors.classification import add_pairs

    cm = np.zeros((4, 4), dtype=np.int64, order="F")
    with pytest.raises(ValueError, match="C-contiguous"):
        add_pairs(cm, np.array([0, 1]), np.array([1, 2]))


def test_sparse_confusion_entries_are_int_triples_by_true_then_predicted_class():
    """The stored sparse form, exactly: one [true, predicted, count] list of plain ints per non-zero cell, ordered
    by true class, then predicted class (what the web pages, the CLI and the cards read)."""
    rng = np.random.default_rng(3)
    n_classes, n = 300, 5000
    y_true = rng.integers(0, n_classes, n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, n_classes, n))
    ids = [f"s{i}" for i in range(n)]
    proc = ClassificationProcessor(classes_for(n_classes))
    for lo in range(0, n, 700):  # several batches
        proc.update(make_batch(y_true[lo:lo + 700], y_pred[lo:lo + 700], ids=ids[lo:lo + 700]))
    doc = proc.compute()["confusion_matrix"]
    cm = skm.confusion_matrix(y_true, y_pred, labels=range(n_classes))
    expected = [[i, j, int(cm[i, j])] for i in range(n_classes) for j in range(n_classes) if cm[i, j]]
    assert list(doc) == ["labels", "format", "entries"]
    assert doc["labels"] == classes_for(n_classes) and doc["format"] == "sparse"
    assert doc["entries"] == expected
    assert all(type(e) is list and [type(x) for x in e] == [int, int, int] for e in doc["entries"])


def test_garbage_collector_is_left_as_it_was():
    """compute() and update() pause the cyclic collector while they build many small lists and dicts; afterwards it
    runs again if it ran before, and stays off if the caller had switched it off."""
    from core.collector import collector_paused

    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 200, 400)
    y_pred = rng.integers(0, 200, 400)
    assert gc.isenabled()
    proc = ClassificationProcessor(classes_for(200))
    proc.update(make_batch(y_true, y_pred))
    assert proc.compute()["confusion_matrix"]["format"] == "sparse"
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with collector_paused():
            assert not gc.isenabled()
            raise RuntimeError("inside")
    assert gc.isenabled()
    gc.disable()
    try:
        proc.update(make_batch(y_true, y_pred))
        proc.compute()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_misclassification_confidence_is_a_plain_float_of_any_score_dtype():
    for dtype in (np.float32, np.float16, np.float64):
        scores = np.array([[0.7], [0.3], [0.9]], dtype=dtype)
        proc = ClassificationProcessor(["a", "b"])
        proc.update(ClassificationPredictions(["x", "y", "z"], np.array([0, 1, 1]), np.array([[1], [1], [0]]), scores))
        got = proc.compute()["misclassifications"]
        assert [m["instance"] for m in got] == ["x", "z"]
        assert [m["confidence"] for m in got] == [float(scores[0, 0]), float(scores[2, 0])]
        assert all(type(m["confidence"]) is float for m in got)
