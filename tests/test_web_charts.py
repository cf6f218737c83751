"""What the model page draws for a 1,000-class result (no store needed): the per-class bars show the weakest of
the classes the data or the predictions touched, and the confusion heatmap shows the classes of the largest
confusions; both from a confusion matrix made by scikit-learn and stored as the classification processor
stores it (sparse above 100 classes)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix

from processors.classification import confusion_doc, metrics_from_confusion
from service.web import analysis, charts


def thousand_class_result(n_samples: int = 300, seed: int = 0) -> tuple[dict, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    classes = [f"class-{i:04d}" for i in range(1000)]
    y_true = rng.integers(0, 60, size=n_samples)  # 60 classes in the data
    y_pred = np.where(rng.random(n_samples) < 0.7, y_true, rng.integers(0, 80, size=n_samples))
    cm = confusion_matrix(y_true, y_pred, labels=range(1000))
    body = metrics_from_confusion(cm, classes)
    body["confusion_matrix"] = confusion_doc(cm, classes)
    return body, cm, classes


def test_per_class_bars_show_the_weakest_touched_classes():
    body, cm, classes = thousand_class_result()
    per_class = body["per_class"]
    fig, shown = charts.per_class_bars(per_class, ("precision", "recall", "f1"), "per class")
    touched = {classes[i] for i in range(1000) if cm[i, :].sum() or cm[:, i].sum()}
    assert len(shown) == charts.MAX_BAR_CLASSES and set(shown) <= touched
    weakest = sorted(touched, key=lambda c: (per_class[c]["f1"], c))[:charts.MAX_BAR_CLASSES]
    assert shown == weakest
    assert fig["data"][2]["y"] == [per_class[c]["f1"] for c in shown]
    assert f"of the {len(touched)} classes" in fig["layout"]["title"]["text"]


def test_the_heatmap_of_1000_classes_shows_the_largest_confusions():
    body, cm, classes = thousand_class_result()
    cm_doc = body["confusion_matrix"]
    assert cm_doc["format"] == "sparse"
    top = analysis.top_confusions(cm_doc, 20)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    largest = sorted(((int(off[i, j]), i, j) for i, j in zip(*np.nonzero(off))), key=lambda c: (-c[0], c[1], c[2]))[:20]
    assert [(t["true"], t["predicted"], t["count"]) for t in top] == [(classes[i], classes[j], n) for n, i, j in largest]
    focus = analysis.confusion_focus(cm_doc, 40, 20)
    assert focus is not None and len(focus) <= 40
    assert {c for t in top for c in (t["true"], t["predicted"])} >= set(focus)
    sub = analysis.confusion_submatrix(cm_doc, focus)
    index = [classes.index(c) for c in focus]
    assert sub["matrix"] == cm[np.ix_(index, index)].tolist()
    heatmap = charts.confusion_heatmap(sub, "confusion matrix")["data"][0]
    assert heatmap["z"] == sub["matrix"] and heatmap["x"] == focus
