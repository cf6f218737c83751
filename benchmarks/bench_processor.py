"""The classification processor against scikit-learn on the same predictions (issue 15's peer benchmark).

1,000,000 predictions over 1,000 classes (a skewed, partly wrong prediction stream, with classes never
predicted and classes absent from the truth), fed in batches as the Executor feeds them. zooeval's side is
``ClassificationProcessor``: ``update`` per batch, then ``compute`` (accuracy, per-class TP/FP/FN/precision/
recall/F1, macro / micro / weighted averages, the confusion matrix document, misclassifications). scikit-learn's
side computes the same numbers from the concatenated arrays: ``accuracy_score``, ``confusion_matrix``,
``precision_recall_fscore_support`` per class and for each average. Both run in this process, alternately,
``--repeats`` times; the ratio is the median of sklearn's time over zooeval's. Every number is checked equal
(to 1e-12) before any timing counts.

Python's cyclic garbage collector: each timed section starts after an untimed ``gc.collect()`` with the previous
repeat's results freed, so neither side pays a full collection that the other's objects made due (one costs
0.09-0.18 s on this 2-core machine under load, which alone decides a 50 ms section). The collections that zooeval
starts itself stay inside its time. zooeval's live output (~140,000 confusion triples) added ~1 ms to a full
collection (20 alternated pairs, 2026-12-01): within the noise.

Target: at least 10x, identical numbers. Usage: python benchmarks/bench_processor.py [--quick] [--repeats N]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support  # noqa: E402

from benchmarks._common import report, target  # noqa: E402
from processors.classification import ClassificationProcessor  # noqa: E402
from tasks.classification import ClassificationPredictions  # noqa: E402

TARGET = 10.0
AVERAGES = ("macro", "micro", "weighted")


def make_stream(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth, top-1 prediction and its score: Zipf-like class frequencies, 70% right, the last 5% of the classes
    never in the truth and the 5% before them never predicted."""
    rng = np.random.default_rng(seed)
    present = int(n_classes * 0.95)
    weights = 1.0 / np.arange(1, present + 1)
    y_true = rng.choice(present, size=n, p=weights / weights.sum())
    wrong = rng.random(n) >= 0.7
    y_pred = y_true.copy()
    y_pred[wrong] = rng.integers(0, n_classes, size=int(wrong.sum()))
    never_predicted = np.arange(int(n_classes * 0.90), present)
    y_pred[np.isin(y_pred, never_predicted)] = 0
    scores = rng.random(n)
    return y_true.astype(np.int64), y_pred.astype(np.int64), scores


def run_zooeval(ids: list[str], y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, classes: list[str],
                batch: int) -> tuple[ClassificationProcessor, dict]:
    """The processor fed batch by batch as the Executor feeds it, then computed."""
    proc = ClassificationProcessor(classes)
    for s in range(0, len(y_true), batch):
        e = s + batch
        proc.update(ClassificationPredictions(ids[s:e], y_true[s:e], y_pred[s:e, None], scores[s:e, None]))
    return proc, proc.compute()


def run_sklearn(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """scikit-learn's numbers from the whole arrays (imported beforehand: its import is not timed)."""
    out = {"accuracy": accuracy_score(y_true, y_pred),
           "confusion": confusion_matrix(y_true, y_pred, labels=range(n_classes)),
           "per_class": precision_recall_fscore_support(y_true, y_pred, labels=range(n_classes), average=None,
                                                        zero_division=0)}
    for avg in AVERAGES:
        out[avg] = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)[:3]
    return out


def check_equal(ours: dict, ref: dict, classes: list[str], confmat: np.ndarray) -> None:
    """Raise AssertionError at the first number that differs."""
    overall = ours["overall"]
    assert abs(overall["accuracy"] - ref["accuracy"]) <= 1e-12, "accuracy"
    assert np.array_equal(confmat, ref["confusion"]), "confusion matrix"
    p, r, f, support = ref["per_class"]
    for i, label in enumerate(classes):
        row = ours["per_class"][label]
        assert row["support"] == support[i], f"support of {label}"
        for key, value in (("precision", p[i]), ("recall", r[i]), ("f1", f[i])):
            assert abs(row[key] - value) <= 1e-12, f"{key} of {label}: {row[key]} != {value}"
    for avg in AVERAGES:
        for key, value in zip(("precision", "recall", "f1"), ref[avg]):
            assert abs(overall[f"{avg}_{key}"] - value) <= 1e-12, f"{avg}_{key}: {overall[f'{avg}_{key}']} != {value}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 predictions (a smoke run; the target is for 1M)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32768, help="predictions per update() (the Executor's batches)")
    args = ap.parse_args()
    n, n_classes = (100_000 if args.quick else 1_000_000), 1000
    classes = [f"class {i}" for i in range(n_classes)]
    y_true, y_pred, scores = make_stream(n, n_classes)
    ids = [f"s{i}" for i in range(n)]  # the Executor has the sample ids already

    ours_t, ref_t = [], []
    for _ in range(args.repeats):
        ref = proc = ours = None  # the previous repeat's results, freed before the collection
        gc.collect()
        t0 = time.perf_counter()
        ref = run_sklearn(y_true, y_pred, n_classes)
        ref_t.append(time.perf_counter() - t0)
        gc.collect()
        t0 = time.perf_counter()
        proc, ours = run_zooeval(ids, y_true, y_pred, scores, classes, args.batch)
        ours_t.append(time.perf_counter() - t0)
        check_equal(ours, ref, classes, proc.confmat)  # outside the timed region

    ratio = statistics.median(ref_t) / statistics.median(ours_t)
    report("processor", {
        "predictions": n, "classes": n_classes, "batch": args.batch, "repeats": args.repeats,
        "zooeval_s": [round(t, 4) for t in ours_t], "sklearn_s": [round(t, 4) for t in ref_t],
        "numbers_identical": True,
        "targets": [target("classification processor vs scikit-learn (1M x 1000)", ratio, TARGET,
                           applies=not args.quick)],
    })


if __name__ == "__main__":
    main()
