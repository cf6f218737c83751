import math

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import brentq
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef, precision_recall_fscore_support
from statsmodels.stats.proportion import proportion_confint

from cards.intervals import (
    CONFUSION_METRICS,
    bootstrap_confusion_interval,
    bootstrap_confusion_replicates,
    bootstrap_indices,
    confusion_cells,
    confusion_metric,
    confusion_statistics,
    fisher_z_interval,
    percentile_interval,
    wilson_interval,
)

CASES = [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (357, 360), (25, 360), (1, 5), (4999, 5000), (180, 360)]


@pytest.mark.parametrize("successes,n", CASES)
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_wilson_equals_statsmodels(successes, n, level):
    expected = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    assert wilson_interval(successes, n, level) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("successes,n", CASES)
def test_wilson_is_the_score_test_inversion(successes, n):
    """The Wilson bounds are the p where |p_hat - p| = z sqrt(p (1 - p) / n), found here by root finding."""
    z = stats.norm.ppf(0.975)
    p_hat = successes / n

    def score(p):
        return abs(p_hat - p) - z * math.sqrt(p * (1 - p) / n)

    eps = 1e-15
    lo = 0.0 if successes == 0 else brentq(score, eps, min(p_hat, 1 - eps))
    hi = 1.0 if successes == n else brentq(score, max(p_hat, eps), 1 - eps)
    assert wilson_interval(successes, n) == pytest.approx((lo, hi), abs=1e-9)


def test_wilson_rejects_bad_counts():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(-1, 10)
    with pytest.raises(ValueError, match="level"):
        wilson_interval(1, 10, level=1.5)


def test_fisher_pearson_equals_scipy():
    rng = np.random.default_rng(3)
    for n in (10, 50, 400):
        x = rng.normal(size=n)
        y = 0.6 * x + rng.normal(size=n)
        res = stats.pearsonr(x, y)
        expected = res.confidence_interval(confidence_level=0.95)
        assert fisher_z_interval(res.statistic, n) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_fisher_spearman_covers_at_its_level():
    """Bonett-Wright's interval for Spearman's rho covers the population value about 95% of the time."""
    rng = np.random.default_rng(11)
    rho_pearson = 0.6
    # population Spearman rho of a bivariate normal: (6 / pi) asin(r / 2)
    rho = 6 / math.pi * math.asin(rho_pearson / 2)
    n, trials, covered = 60, 2000, 0
    cov = [[1, rho_pearson], [rho_pearson, 1]]
    for _ in range(trials):
        x, y = rng.multivariate_normal([0, 0], cov, size=n).T
        r = stats.spearmanr(x, y).statistic
        lo, hi = fisher_z_interval(r, n, kind="spearman")
        covered += lo <= rho <= hi
    assert 0.93 <= covered / trials <= 0.97


def test_fisher_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="4 pairs"):
        fisher_z_interval(0.5, 3)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        fisher_z_interval(1.5, 30)
    assert fisher_z_interval(1.0, 30) == (1.0, 1.0)


def _random_labels(seed, n=500, c=6):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, c - 1, size=n)  # class c-1 never true
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, c, size=n))
    y_pred[y_pred == 2] = 3  # class 2 never predicted
    return y_true, y_pred, c


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # balanced accuracy leaves them out
def test_confusion_statistics_equal_sklearn(seed):
    y_true, y_pred, c = _random_labels(seed)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    doc = {"labels": [f"k{i}" for i in range(c)], "matrix": cm.tolist()}
    expected = {"accuracy": float((y_true == y_pred).mean()),
                "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
                "matthews_correlation": matthews_corrcoef(y_true, y_pred)}
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        expected.update({f"{average}_precision": p, f"{average}_recall": r, f"{average}_f1": f})
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=range(c), average="macro",
                                                     zero_division=0)
        expected.update({"macro_precision_all_classes": p, "macro_recall_all_classes": r,
                         "macro_f1_all_classes": f})
    assert set(expected) == set(CONFUSION_METRICS) - {"class_precision", "class_recall", "class_f1"}
    for metric, value in expected.items():
        assert confusion_metric(doc, metric) == pytest.approx(value, abs=1e-12), metric
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=range(c), average=None, zero_division=0)
    for k in range(c):
        assert confusion_metric(doc, "class_precision", k) == pytest.approx(p[k], abs=1e-12)
        assert confusion_metric(doc, "class_recall", k) == pytest.approx(r[k], abs=1e-12)
        assert confusion_metric(doc, "class_f1", k) == pytest.approx(f[k], abs=1e-12)


def test_balanced_accuracy_leaves_out_classes_only_predicted():
    """sklearn's balanced accuracy averages recall over the classes in the truth; zooeval's macro_recall also
    counts a class that is only predicted (recall 0), so the two differ and the claim is judged on sklearn's."""
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([0, 0, 2, 1, 1, 2])  # class 2 predicted, never true
    cm = np.zeros((3, 3), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    doc = {"labels": ["a", "b", "c"], "matrix": cm.tolist()}
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected = balanced_accuracy_score(y_true, y_pred)
    assert confusion_metric(doc, "balanced_accuracy") == pytest.approx(expected, abs=1e-12) == pytest.approx(2 / 3)
    macro_recall = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)[1]
    assert confusion_metric(doc, "macro_recall") == pytest.approx(macro_recall) == pytest.approx(4 / 9)


def test_sparse_and_dense_confusion_agree():
    y_true, y_pred, c = _random_labels(5)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    labels = [f"k{i}" for i in range(c)]
    dense = {"labels": labels, "matrix": cm.tolist()}
    rows, cols = np.nonzero(cm)
    sparse = {"labels": labels, "format": "sparse", "entries": [[int(i), int(j), int(cm[i, j])]
                                                                 for i, j in zip(rows, cols)]}
    for a, b in zip(confusion_cells(dense), confusion_cells(sparse)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(bootstrap_confusion_replicates(dense, "macro_f1", n_boot=50),
                          bootstrap_confusion_replicates(sparse, "macro_f1", n_boot=50))


def test_confusion_cells_reject_bad_matrices():
    with pytest.raises(ValueError, match="labels"):
        confusion_cells({"matrix": [[1]]})
    with pytest.raises(ValueError, match="shape"):
        confusion_cells({"labels": ["a", "b"], "matrix": [[1, 2, 3]]})
    with pytest.raises(ValueError, match="negative"):
        confusion_cells({"labels": ["a", "b"], "format": "sparse", "entries": [[0, 5, 1]]})
    with pytest.raises(ValueError, match="unknown confusion metric"):
        confusion_metric({"labels": ["a"], "matrix": [[1]]}, "auc")


def test_bootstrap_over_matrix_matches_the_sample_bootstrap():
    """Multinomial draws over the matrix cells are the ordinary bootstrap over samples: both give the same
    interval up to Monte Carlo error."""
    y_true, y_pred, c = _random_labels(7, n=300, c=4)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    doc = {"labels": list("abcd"), "matrix": cm.tolist()}
    from_matrix = bootstrap_confusion_interval(doc, "macro_f1", n_boot=4000, seed=1)
    values = []
    for idx in bootstrap_indices(len(y_true), n_boot=4000, seed=2):
        counts = np.zeros((c, c))
        np.add.at(counts, (y_true[idx], y_pred[idx]), 1)  # the resampled samples' matrix (metric: sklearn-equal)
        values.append(confusion_statistics(np.diag(counts), counts.sum(1), counts.sum(0), "macro_f1"))
    from_samples = percentile_interval(values)
    assert from_matrix == pytest.approx(from_samples, abs=0.01)


def test_bootstrap_is_seeded_and_covers():
    doc = {"labels": ["a", "b", "c"], "matrix": [[80, 15, 5], [10, 70, 20], [5, 5, 90]]}
    first = bootstrap_confusion_interval(doc, "macro_f1")
    assert bootstrap_confusion_interval(doc, "macro_f1") == first
    assert bootstrap_confusion_interval(doc, "macro_f1", seed=1) != first
    assert first[0] < confusion_metric(doc, "macro_f1") < first[1]
    # coverage of the population macro-F1 by intervals from samples of it
    population = np.asarray(doc["matrix"], dtype=float)
    truth = confusion_metric(doc, "macro_f1")  # F1 is scale-free: the matrix's proportions are the population
    rng = np.random.default_rng(4)
    trials, covered = 150, 0
    for _ in range(trials):
        sample = rng.multinomial(300, (population / population.sum()).ravel()).reshape(3, 3)
        lo, hi = bootstrap_confusion_interval({"labels": doc["labels"], "matrix": sample.tolist()}, "macro_f1",
                                              n_boot=1000, seed=int(rng.integers(1 << 30)))
        covered += lo <= truth <= hi
    assert 0.89 <= covered / trials <= 0.99


def test_percentile_interval_checks_input():
    assert percentile_interval([0.0, 1.0, 2.0, 3.0, 4.0], level=0.5) == (1.0, 3.0)
    with pytest.raises(ValueError, match="at least 2"):
        percentile_interval([0.5])
    with pytest.raises(ValueError, match="finite"):
        percentile_interval([0.5, float("nan")])


def test_confusion_statistics_is_vectorised():
    tp = np.array([[5, 3], [4, 4]])
    support = np.array([[6, 4], [5, 5]])
    predicted = np.array([[7, 3], [5, 5]])
    out = confusion_statistics(tp, support, predicted, "macro_recall")
    assert out == pytest.approx([(5 / 6 + 3 / 4) / 2, (4 / 5 + 4 / 5) / 2])
