"""The segmentation processor (processors/segmentation.py) against torchmetrics 1.9 (MulticlassJaccardIndex,
MulticlassAccuracy, MulticlassRecall with ignore_index=255) and a plain numpy reference written here (per class,
boolean masks: a different computation from the processor's bincount), on random and hand-built cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_jaccard_index, multiclass_recall

from processors.segmentation import SegmentationProcessor
from tasks.segmentation import SegmentationPredictions

IGNORE = 255


def numpy_reference(truths: list[np.ndarray], preds: list[np.ndarray], n: int) -> dict:
    """IoU / accuracy per class by boolean masks over all scored pixels, and the four summary numbers."""
    t = np.concatenate([x.reshape(-1) for x in truths]) if truths else np.zeros(0, int)
    p = np.concatenate([x.reshape(-1) for x in preds]) if preds else np.zeros(0, int)
    scored = t != IGNORE
    t, p = t[scored], p[scored]
    iou, acc, support = [], [], []
    for c in range(n):
        inter = np.sum((t == c) & (p == c))
        union = np.sum((t == c) | (p == c))
        iou.append(inter / union if union else None)
        acc.append(inter / np.sum(t == c) if np.sum(t == c) else None)
        support.append(int(np.sum(t == c)))
    defined = [v for v in iou if v is not None]
    present = [v for v in acc if v is not None]
    return {"iou": iou, "accuracy": acc,
            "mean_iou": np.mean(defined) if defined else None,
            "mean_accuracy": np.mean(present) if present else None,
            "pixel_accuracy": np.mean(t == p) if t.size else None,
            "fw_iou": sum(s * v for s, v in zip(support, iou) if s) / t.size if t.size else None}


def torchmetrics_reference(truths: list[np.ndarray], preds: list[np.ndarray], n: int) -> dict:
    t = torch.as_tensor(np.concatenate([x.reshape(-1) for x in truths]).astype(np.int64))
    p = torch.as_tensor(np.concatenate([x.reshape(-1) for x in preds]).astype(np.int64))
    kw = {"num_classes": n, "ignore_index": IGNORE}
    return {"iou": multiclass_jaccard_index(p, t, average="none", **kw).tolist(),
            "mean_iou": float(multiclass_jaccard_index(p, t, average="macro", **kw)),
            "fw_iou": float(multiclass_jaccard_index(p, t, average="weighted", **kw)),
            "pixel_accuracy": float(multiclass_accuracy(p, t, average="micro", **kw)),
            "recall": multiclass_recall(p, t, average="none", **kw).tolist(),
            "macro_accuracy": float(multiclass_accuracy(p, t, average="macro", **kw))}


def scored(truths, preds, classes, batches=None) -> dict:
    """The processor's result over the images, streamed in the given batch sizes (all at once by default)."""
    proc = SegmentationProcessor(classes)
    at = 0
    for size in batches or [len(truths)]:
        proc.update(SegmentationPredictions([str(i) for i in range(at, at + size)], truths[at : at + size],
                                            preds[at : at + size]))
        at += size
    return proc.compute()


def check_equal(result: dict, truths, preds, n: int) -> None:
    ref = numpy_reference(truths, preds, n)
    tm = torchmetrics_reference(truths, preds, n)
    o, per = result["overall"], list(result["per_class"].values())
    for key in ("mean_iou", "mean_accuracy", "pixel_accuracy", "fw_iou"):
        assert o[key] == pytest.approx(ref[key], abs=1e-12), key
    assert [c["iou"] for c in per] == pytest.approx(ref["iou"], abs=1e-12)
    assert [c["accuracy"] for c in per] == pytest.approx(ref["accuracy"], abs=1e-12)
    # torchmetrics (float32): IoU of every class with a union (it gives 0 where the union is empty), recall of
    # every class in the truth; its macro Jaccard (weight 0 for empty unions), weighted Jaccard and micro accuracy
    assert [c["iou"] for c in per if c["iou"] is not None] == pytest.approx(
        [v for c, v in zip(per, tm["iou"]) if c["iou"] is not None], abs=1e-6)
    assert [c["accuracy"] for c in per if c["accuracy"] is not None] == pytest.approx(
        [v for c, v in zip(per, tm["recall"]) if c["accuracy"] is not None], abs=1e-6)
    assert o["mean_iou"] == pytest.approx(tm["mean_iou"], abs=1e-6)
    assert o["fw_iou"] == pytest.approx(tm["fw_iou"], abs=1e-6)
    assert o["pixel_accuracy"] == pytest.approx(tm["pixel_accuracy"], abs=1e-6)


def random_case(seed: int, n_images: int = 7, n: int = 5):
    rng = np.random.default_rng(seed)
    truths, preds = [], []
    for _ in range(n_images):
        h, w = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        t = rng.integers(0, n, (h, w))
        t[rng.random((h, w)) < 0.1] = IGNORE
        p = np.where(rng.random((h, w)) < 0.6, np.where(t == IGNORE, 0, t), rng.integers(0, n, (h, w)))
        truths.append(t.astype(np.uint8))
        preds.append(p.astype(np.int64))
    return truths, preds, [f"c{i}" for i in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_maps_equal_numpy_and_torchmetrics_streamed_or_not(seed):
    truths, preds, classes = random_case(seed)
    whole = scored(truths, preds, classes)
    check_equal(whole, truths, preds, len(classes))
    for batches in ([1] * 7, [2, 3, 2], [7]):
        assert scored(truths, preds, classes, batches) == whole
    merged = SegmentationProcessor(classes)  # two shards merged = one stream
    other = SegmentationProcessor(classes)
    merged.update(SegmentationPredictions(["a"], truths[:1], preds[:1]))
    other.update(SegmentationPredictions([str(i) for i in range(6)], truths[1:], preds[1:]))
    merged.merge(other)
    assert merged.compute() == whole
    o = whole["overall"]
    assert o["n"] == 7 and o["n_pixels"] + o["ignored_pixels"] == sum(t.size for t in truths)
    assert o["ignored_pixels"] == sum(int((t == IGNORE).sum()) for t in truths) > 0


def test_one_image_equals_the_same_pixels_split_into_images():
    truths, preds, classes = random_case(3, n_images=1)
    one = scored(truths, preds, classes)
    halves_t, halves_p = np.array_split(truths[0], 2), np.array_split(preds[0], 2)
    two = scored(halves_t, halves_p, classes, [1, 1])
    assert two["overall"] == {**one["overall"], "n": 2} and two["per_class"] == one["per_class"]


def test_hand_built_case():
    """truth [[0, 0, 1], [1, 255, 2]] against prediction [[0, 1, 1], [1, 0, 0]], 4 classes. Scored pixels: 5.
    class 0: TP 1, union 3 -> IoU 1/3, accuracy 1/2; class 1: TP 2, union 3 -> 2/3, accuracy 1; class 2: never
    predicted -> IoU 0, accuracy 0; class 3: absent from both -> no IoU, no accuracy (left out of the means).
    mIoU (1/3 + 2/3 + 0) / 3 = 1/3; pixel accuracy 3/5; mean accuracy (1/2 + 1 + 0) / 3 = 1/2;
    FW IoU (2 x 1/3 + 2 x 2/3 + 1 x 0) / 5 = 2/5."""
    truth = np.array([[0, 0, 1], [1, 255, 2]], dtype=np.uint8)
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    result = scored([truth], [pred], ["a", "b", "c", "d"])
    o, per = result["overall"], result["per_class"]
    assert o["mean_iou"] == pytest.approx(1 / 3) and o["pixel_accuracy"] == pytest.approx(3 / 5)
    assert o["mean_accuracy"] == pytest.approx(1 / 2) and o["fw_iou"] == pytest.approx(2 / 5)
    assert [per[c]["iou"] for c in "abcd"] == pytest.approx([1 / 3, 2 / 3, 0.0, None])
    assert [per[c]["accuracy"] for c in "abcd"] == pytest.approx([1 / 2, 1.0, 0.0, None])
    assert (per["a"]["tp"], per["a"]["fp"], per["a"]["fn"], per["a"]["support"]) == (1, 1, 1, 2)
    assert o["n_pixels"] == 5 and o["ignored_pixels"] == 1 and o["classes_scored"] == 3
    assert result["confusion_matrix"]["matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    check_equal(result, [truth], [pred], 4)


def test_a_class_predicted_but_absent_from_the_truth():
    """Its IoU is 0 (it has false positives) and it has no accuracy: left out of mean_accuracy as mmsegmentation
    and Hugging Face's mean_iou do; torchmetrics' macro accuracy counts it as 0 instead (the one convention that
    differs, asserted here so a change on either side shows)."""
    truth = np.array([[0, 0], [1, 1]], dtype=np.uint8)
    pred = np.array([[0, 2], [1, 1]])
    result = scored([truth], [pred], ["a", "b", "c"])
    assert result["per_class"]["c"]["iou"] == 0.0 and result["per_class"]["c"]["accuracy"] is None
    assert result["overall"]["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    check_equal(result, [truth], [pred], 3)
    assert torchmetrics_reference([truth], [pred], 3)["macro_accuracy"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_all_pixels_ignored_and_no_images():
    truth = np.full((4, 4), IGNORE, dtype=np.uint8)
    pred = np.zeros((4, 4), dtype=np.int64)
    result = scored([truth], [pred], ["a", "b"])
    o = result["overall"]
    assert (o["mean_iou"], o["pixel_accuracy"], o["mean_accuracy"], o["fw_iou"]) == (None, None, None, None)
    assert o["n_pixels"] == 0 and o["ignored_pixels"] == 16 and o["n"] == 1
    assert all(c["iou"] is None and c["accuracy"] is None for c in result["per_class"].values())
    assert np.isnan(torchmetrics_reference([truth], [pred], 2)["mean_iou"])  # torchmetrics: 0 / 0
    empty = SegmentationProcessor(["a"]).compute()["overall"]
    assert empty["n"] == 0 and empty["mean_iou"] is None


def test_bad_maps_are_refused_naming_the_image():
    proc = SegmentationProcessor(["a", "b"])
    with pytest.raises(ValueError, match="image 'x': true class 7 is outside the 2 classes"):
        proc.update(SegmentationPredictions(["x"], [np.array([[0, 7]])], [np.array([[0, 1]])]))
    with pytest.raises(ValueError, match="image 'y': predicted class 2 is outside"):
        proc.update(SegmentationPredictions(["y"], [np.array([[0, 1]])], [np.array([[0, 2]])]))
    with pytest.raises(ValueError, match=r"image 'z': the true map is \(1, 2\) but the predicted map \(2, 1\)"):
        proc.update(SegmentationPredictions(["z"], [np.array([[0, 1]])], [np.array([[0], [1]])]))
    assert proc.compute()["overall"]["n"] == 0  # nothing of the refused images was counted
