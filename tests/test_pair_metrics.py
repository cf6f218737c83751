"""The sentence-pair processors against scipy / scikit-learn: regression (Pearson, Spearman, MSE, MAE) and mcc;
streaming and merging equal to one shot; no NaN stored."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from processors.mcc import MatthewsProcessor, mcc_from_confusion
from processors.regression import RegressionProcessor, average_ranks, pearson, regression_metrics, spearman
from tasks.classification import ClassificationPredictions
from tasks.sentence_pairs import ScorePredictions as RegressionPredictions


def LabelPredictions(ids, y_true, y_pred):  # noqa: N802 (a record of top-1 predictions)
    y_pred = np.asarray(y_pred)
    return ClassificationPredictions(list(ids), np.asarray(y_true), y_pred.reshape(-1, 1), np.ones((len(y_pred), 1)))

TOL = dict(rel=1e-12, abs=1e-12)


def assert_same(got, expected):
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, **TOL)


def scipy_or_none(fn, x, y):
    """scipy's statistic, None where scipy gives NaN (with its ConstantInputWarning) or raises for n < 2."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            value = float(fn(x, y).statistic)
    except ValueError:
        return None
    return None if np.isnan(value) else value


def random_cases():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 17, 200, 1000):
        x = rng.normal(size=n)
        yield x, 0.5 * x + rng.normal(size=n)
        yield x, -x ** 3  # perfect monotone, negative
        # heavy ties: scores on a 0..5 grid of halves, as STS labels are
        yield rng.integers(0, 11, n) / 2.0, rng.integers(0, 11, n) / 2.0
        yield rng.integers(0, 3, n).astype(float), rng.normal(size=n)


HAND_CASES = [
    ([1.0, 2.0], [3.0, 1.0]),            # n = 2: exactly -1
    ([1.0, 2.0, 2.0, 3.0], [1.0, 1.0, 2.0, 2.0]),  # ties on both sides
    ([0.0, 5.0, 2.5, 2.5], [0.1, 0.9, 0.5, 0.5]),
    ([1e150, -1e150, 3e149, 0.0], [1.0, 2.0, 3.0, 4.0]),  # huge deviations
    ([1.0, 2.0, 3.0, 4.0], [1e-9, 2e-9, 3e-9, 4e-9]),
]


@pytest.mark.parametrize("case", list(random_cases()) + HAND_CASES)
def test_correlations_and_errors_equal_scipy_and_sklearn(case):
    x, y = (np.asarray(v, dtype=float) for v in case)
    assert_same(pearson(x, y), scipy_or_none(stats.pearsonr, x, y))
    assert_same(spearman(x, y), scipy_or_none(stats.spearmanr, x, y))
    got = regression_metrics(x, y)["overall"]
    assert got["mse"] == pytest.approx(skm.mean_squared_error(x, y), **TOL)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(x, y), **TOL)
    assert got["n"] == len(x)


def test_pearson_does_not_overflow_like_scipy():
    x, y = [1e200, -1e200, 3e199, 0.0], [1.0, 2.0, 3.0, 4.0]
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, **TOL)


def test_ranks_equal_scipy_rankdata():
    rng = np.random.default_rng(1)
    for values in (rng.integers(0, 4, 50).astype(float), rng.normal(size=30), np.array([2.0, 2.0, 2.0]), np.zeros(0)):
        np.testing.assert_array_equal(average_ranks(values), stats.rankdata(values, method="average"))


@pytest.mark.parametrize("x, y, reason", [
    ([1.0, 2.0, 3.0], [2.5, 2.5, 2.5], "the predictions are constant (all 2.5)"),
    ([4.0, 4.0, 4.0], [1.0, 2.0, 3.0], "the true values are constant (all 4)"),
    ([4.0, 4.0], [1.0, 1.0], "the true values are constant (all 4) and the predictions are constant (all 1)"),
    ([3.0], [1.0], "fewer than 2 samples (1)"),
])
def test_undefined_correlation_is_none_with_its_reason_where_scipy_gives_nan(x, y, reason):
    assert scipy_or_none(stats.spearmanr, x, y) is None  # scipy: NaN (constant) or NaN for n < 2
    assert scipy_or_none(stats.pearsonr, x, y) is None   # scipy: NaN with a warning, or ValueError for n < 2
    result = regression_metrics(x, y)
    assert result["overall"]["pearson"] is None and result["overall"]["spearman"] is None
    assert result["undefined"] == {"pearson": reason, "spearman": reason}
    assert result["overall"]["mse"] == pytest.approx(skm.mean_squared_error(x, y), **TOL)


def test_no_samples():
    result = RegressionProcessor().compute()
    assert result["overall"] == {"n": 0, "pearson": None, "spearman": None, "mse": None, "mae": None}
    assert set(result["undefined"]) == {"pearson", "spearman", "mse", "mae"}


def test_regression_streaming_and_merge_equal_one_shot():
    rng = np.random.default_rng(2)
    n = 503
    y_true = rng.integers(0, 26, n) / 5.0
    y_pred = y_true + rng.normal(scale=1.0, size=n)
    ids = [f"s{i}" for i in range(n)]
    one = RegressionProcessor()
    one.update(RegressionPredictions(ids, y_true, y_pred))
    streamed = RegressionProcessor()
    for start in range(0, n, 64):
        streamed.update(RegressionPredictions(ids[start:start + 64], y_true[start:start + 64], y_pred[start:start + 64]))
    shards = [RegressionProcessor() for _ in range(3)]
    for k, shard in enumerate(shards):  # interleaved shards: merge order differs from the sample order
        shard.update(RegressionPredictions(ids[k::3], y_true[k::3], y_pred[k::3]))
    merged = RegressionProcessor()
    for shard in reversed(shards):
        merged.merge(shard)
    merged.update(RegressionPredictions([], np.zeros(0), np.zeros(0)))
    expected = one.compute()
    assert expected["overall"]["spearman"] == pytest.approx(stats.spearmanr(y_true, y_pred).statistic, **TOL)
    for other in (streamed.compute(), merged.compute()):
        assert other["overall"]["n"] == n
        for key in ("pearson", "spearman", "mse", "mae"):
            assert other["overall"][key] == pytest.approx(expected["overall"][key], **TOL)


def test_regression_rejects_bad_input_naming_the_sample():
    proc = RegressionProcessor()
    with pytest.raises(ValueError, match=r"y_pred of sample 'b' is nan"):
        proc.update(RegressionPredictions(["a", "b"], np.array([1.0, 2.0]), np.array([1.0, np.nan])))
    with pytest.raises(ValueError, match=r"y_true must have shape \(2,\)"):
        proc.update(RegressionPredictions(["a", "b"], np.array([1.0]), np.array([1.0, 2.0])))
    with pytest.raises(TypeError):
        proc.merge(MatthewsProcessor(["a", "b"]))
    assert proc.compute()["overall"]["n"] == 0  # nothing of the rejected batches was kept


def mcc_cases():
    rng = np.random.default_rng(3)
    for n_classes in (2, 3, 7):
        for n in (1, 5, 40, 500):
            t = rng.integers(0, n_classes, n)
            noisy = np.where(rng.random(n) < 0.6, t, rng.integers(0, n_classes, n))
            yield n_classes, t, noisy
    yield 2, np.array([1, 1, 1, 1]), np.array([1, 1, 1, 1])        # one class everywhere: 0/0 -> 0.0
    yield 2, np.array([0, 1, 0, 1]), np.array([1, 1, 1, 1])        # constant prediction -> 0.0
    yield 3, np.array([2, 2, 2]), np.array([0, 1, 2])              # constant truth -> 0.0
    yield 2, np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])        # perfectly wrong: -1
    yield 2, np.array([0, 1, 0, 1]), np.array([0, 1, 0, 1])        # perfect: 1
    yield 4, np.array([0, 1, 2, 3, 0]), np.array([1, 2, 3, 0, 0])  # multiclass, negative
    yield 2, np.array([1, 1, 1, 0]), np.array([1, -0, 1, 1])


@pytest.mark.parametrize("n_classes, y_true, y_pred", list(mcc_cases()))
def test_mcc_equals_sklearn(n_classes, y_true, y_pred):
    proc = MatthewsProcessor([f"c{i}" for i in range(n_classes)])
    proc.update(LabelPredictions([str(i) for i in range(len(y_true))], y_true, y_pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn warns when a single label is found
        expected = skm.matthews_corrcoef(y_true, y_pred)
    assert proc.compute()["overall"]["mcc"] == pytest.approx(expected, **TOL)
    assert proc.compute()["overall"]["n"] == len(y_true)


def test_mcc_degenerate_cases_say_why():
    proc = MatthewsProcessor(["different sentiment", "same sentiment"])
    assert proc.compute()["overall"] == {"n": 0, "mcc": 0.0}
    assert "no samples" in proc.compute()["undefined"]["mcc"]
    proc.update(LabelPredictions(["a", "b"], np.array([0, 1]), np.array([1, 1])))
    assert proc.compute()["overall"]["mcc"] == 0.0
    assert "all one class" in proc.compute()["undefined"]["mcc"]
    proc.update(LabelPredictions(["c"], np.array([0]), np.array([0])))
    assert "undefined" not in proc.compute()
    assert proc.compute()["overall"]["mcc"] == pytest.approx(skm.matthews_corrcoef([0, 1, 0], [1, 1, 0]), **TOL)


def test_mcc_streaming_and_merge_equal_one_shot():
    rng = np.random.default_rng(4)
    classes = ["entailment", "neutral", "contradiction"]
    t = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.5, t, rng.integers(0, 3, 300))
    ids = [str(i) for i in range(300)]
    one = MatthewsProcessor(classes)
    one.update(LabelPredictions(ids, t, p))
    a, b = MatthewsProcessor(classes), MatthewsProcessor(classes)
    for start in range(0, 300, 32):
        target = a if start % 64 == 0 else b
        target.update(LabelPredictions(ids[start:start + 32], t[start:start + 32], p[start:start + 32]))
    a.merge(b)
    assert a.compute() == one.compute()
    assert one.compute()["overall"]["mcc"] == pytest.approx(skm.matthews_corrcoef(t, p), **TOL)
    assert mcc_from_confusion(skm.confusion_matrix(t, p)) == pytest.approx(skm.matthews_corrcoef(t, p), **TOL)


def test_mcc_rejects_bad_input():
    proc = MatthewsProcessor(["a", "b"])
    with pytest.raises(ValueError, match=r"predicted label 2 of sample 'y' is out of range \[0, 2\)"):
        proc.update(LabelPredictions(["x", "y"], np.array([0, 1]), np.array([0, 2])))
    with pytest.raises(ValueError, match="different classes"):
        proc.merge(MatthewsProcessor(["b", "a"]))
    with pytest.raises(ValueError, match="duplicate class labels"):
        MatthewsProcessor(["a", "a"])
    with pytest.raises(ValueError, match="square"):
        mcc_from_confusion(np.zeros((2, 3)))
