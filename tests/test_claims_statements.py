import numpy as np
import pytest

from cards import statements as st
from cards.intervals import wilson_interval
from cards.statements import class_statements, drop_statements, model_statements, variant_phrase
from tests.claims_factory import classification_result, labels_with_accuracy

DIGITS = [str(d) for d in range(10)]


def _pair(n, correct_original, correct_variant, variant="rotated90"):
    y_true, y_pred = labels_with_accuracy(n, correct_original, 10, seed=3)
    original = classification_result(y_true, y_pred, DIGITS)
    y_true, y_pred = labels_with_accuracy(n, correct_variant, 10, seed=4)
    perturbed = classification_result(y_true, y_pred, DIGITS, variant=variant)
    return [original, perturbed]


def test_large_significant_drop_gives_the_statement():
    results = _pair(360, 356, 25)
    out = drop_statements(results)
    assert len(out) == 1
    s = out[0]
    assert s["kind"] == "drop" and s["variant"] == "rotated90" and s["dataset"] == "digits"
    assert "accuracy falls from 0.99 to 0.07 on images rotated by 90 degrees" in s["text"]
    assert s["evidence"]["original"]["correct"] == 356 and s["evidence"]["perturbed"]["correct"] == 25
    assert s["evidence"]["drop"] == pytest.approx(356 / 360 - 25 / 360)
    assert s["evidence"]["perturbed"]["interval"][1] < s["evidence"]["original"]["interval"][0]
    assert s["thresholds"]["MIN_DROP"] == st.MIN_DROP and s["thresholds"]["MIN_SAMPLES"] == st.MIN_SAMPLES


def test_tiny_dataset_gets_no_drop_statement():
    y = np.arange(5) % 10
    original = classification_result(y, y, DIGITS)
    rotated = classification_result(y, (y + 1) % 10, DIGITS, variant="rotated90")
    # 5/5 -> 0/5: the two Wilson intervals do not even overlap, but 5 samples are too few to say anything
    assert wilson_interval(0, 5)[1] < wilson_interval(5, 5)[0]
    assert drop_statements([original, rotated]) == []
    assert model_statements([original, rotated]) == []


def test_small_or_insignificant_drops_give_none():
    assert drop_statements(_pair(360, 356, 349)) == []  # significant but below MIN_DROP
    y_true, y_pred = labels_with_accuracy(40, 32, 10, seed=1)
    original = classification_result(y_true, y_pred, DIGITS)
    y_true, y_pred = labels_with_accuracy(40, 28, 10, seed=2)
    typos = classification_result(y_true, y_pred, DIGITS, variant="typos")
    lo0 = wilson_interval(32, 40)[0]
    assert 32 / 40 - 28 / 40 >= st.MIN_DROP and wilson_interval(28, 40)[1] >= lo0  # overlapping intervals
    assert drop_statements([original, typos]) == []


def test_drops_are_ordered_and_capped():
    original, rotated = _pair(360, 356, 25)
    results = [original, rotated]
    for i, variant in enumerate(["greyscale", "inverted", "fog-5", "gaussian_noise-3", "flipped"]):
        y_true, y_pred = labels_with_accuracy(360, 300 - 40 * i, 10, seed=10 + i)
        results.append(classification_result(y_true, y_pred, DIGITS, variant=variant))
    out = drop_statements(results)
    assert len(out) == st.MAX_DROP_STATEMENTS
    drops = [s["evidence"]["drop"] for s in out]
    assert drops == sorted(drops, reverse=True)
    assert out[0]["variant"] == "rotated90"
    assert "images with fog (severity 5 of 5)" in next(s["text"] for s in out if s["variant"] == "fog-5")


def _four_classes():
    """a, b, c: 95 of 100 right (errors to the next class); d: 50 of 100 right (errors to a)."""
    y_true, y_pred = [], []
    for k in range(3):
        y_true += [k] * 100
        y_pred += [k] * 95 + [k + 1] * 5
    y_true += [3] * 100
    y_pred += [3] * 50 + [0] * 50
    return classification_result(y_true, y_pred, ["a", "b", "c", "d"], dataset="shapes")


def test_weakest_and_strongest_classes():
    result = _four_classes()
    out = class_statements(result)
    weakest = [s for s in out if s["kind"] == "weakest class"]
    strongest = [s for s in out if s["kind"] == "strongest class"]
    assert [s["evidence"]["class"] for s in weakest] == ["d"]
    assert "On shapes (test), class 'd' is its weakest class: F1 0.65" in weakest[0]["text"]
    assert weakest[0]["evidence"]["recall"] == 0.5 and weakest[0]["evidence"]["support"] == 100
    # b and c: F1 0.95, recall 0.95 whose Wilson lower bound 0.888 lies above the overall interval
    assert [s["evidence"]["class"] for s in strongest] == ["b", "c"]
    assert "one of its 2 strongest classes" in strongest[0]["text"]
    assert strongest[0]["evidence"]["recall_interval"][0] > strongest[0]["evidence"]["overall_interval"][1]


def test_no_extreme_class_when_the_gap_is_not_significant():
    y_true, y_pred = labels_with_accuracy(400, 360, 4, seed=5)
    out = class_statements(classification_result(y_true, y_pred, ["a", "b", "c", "d"]))
    assert not [s for s in out if s["kind"] in ("weakest class", "strongest class")]


def test_groups():
    result = _four_classes()
    out = class_statements(result, {"pets": ["a", "b", "c"], "wild": ["d"], "empty": ["zebra"]})
    groups = [s for s in out if s["kind"].endswith("group")]
    assert [(s["kind"], s["evidence"]["group"]) for s in groups] == [("weakest group", "wild")]
    with_one_group = class_statements(result, {"all": ["a", "b", "c", "d"]})
    assert not [s for s in with_one_group if s["kind"].endswith("group")]  # nothing to compare it with


def test_error_bias_four_classes():
    out = [s for s in class_statements(_four_classes()) if s["kind"] == "error bias"]
    assert len(out) == 1
    assert "77% of its errors (50 of 65) predict 'a'" in out[0]["text"]
    assert out[0]["evidence"]["uniform_share"] == 0.25


def _binary(n_fresh_errors, n_rotten_errors, n_right):
    labels = ["fresh", "rotten"]
    y_true = [1] * n_fresh_errors + [0] * n_rotten_errors + [0] * (n_right // 2) + [1] * (n_right - n_right // 2)
    y_pred = [0] * n_fresh_errors + [1] * n_rotten_errors + [0] * (n_right // 2) + [1] * (n_right - n_right // 2)
    return classification_result(y_true, y_pred, labels, dataset="rotten_tomatoes")


def test_error_bias_binary():
    out = [s for s in class_statements(_binary(62, 38, 400)) if s["kind"] == "error bias"]
    assert len(out) == 1 and "62% of its errors (62 of 100) predict 'fresh'" in out[0]["text"]
    assert out[0]["evidence"]["interval"][0] > 0.5
    too_few = [s for s in class_statements(_binary(13, 7, 180)) if s["kind"] == "error bias"]
    assert too_few == []  # 20 errors, 65% 'fresh', but the interval still reaches below one half


def test_never_predicted():
    y_true = [0] * 40 + [1] * 40 + [2] * 30
    y_pred = [0] * 40 + [1] * 40 + [0] * 30
    result = classification_result(y_true, y_pred, ["x", "y", "z", "unused"])
    never = [s for s in class_statements(result) if s["kind"] == "never predicted"]
    assert len(never) == 1
    assert never[0]["evidence"] == {"classes": ["z"], "support": {"z": 30}}
    assert "never predicts class 'z'" in never[0]["text"] and "30 samples" in never[0]["text"]


def test_small_result_gets_no_class_statements():
    y_true = [0] * 10 + [1] * 10
    y_pred = [0] * 20
    assert class_statements(classification_result(y_true, y_pred, ["a", "b"])) == []


def test_detection_results_get_no_statements():
    from tests.claims_factory import detection_result
    assert model_statements([detection_result(), detection_result(variant="rotated90")]) == []


def test_model_statements_combines_and_uses_descriptions():
    original, rotated = _pair(360, 356, 25)
    out = model_statements([original, rotated], descriptions={"rotated90": "images turned a quarter"})
    assert out[0]["kind"] == "drop" and "on images turned a quarter" in out[0]["text"]
    assert all(s["variant"] in ("original", "rotated90") for s in out)
    assert variant_phrase("mystery") == "the 'mystery' variant"


def test_weakest_class_says_which_classes_were_compared():
    y_true, y_pred = [], []
    for k in range(3):
        y_true += [k] * 100
        y_pred += [k] * 95 + [k + 1] * 5
    y_true += [3] * 100 + [4] * 5  # class e: 5 samples, 1 right
    y_pred += [3] * 50 + [0] * 50 + [4] + [1] * 4
    result = classification_result(y_true, y_pred, ["a", "b", "c", "d", "e"], dataset="shapes")
    assert result["per_class"]["e"]["f1"] < result["per_class"]["d"]["f1"]
    weakest = [s for s in class_statements(result) if s["kind"] == "weakest class"]
    assert [s["evidence"]["class"] for s in weakest] == ["d"]  # 'e' is weaker but has only 5 samples
    assert "(of the classes with at least 20 samples)" in weakest[0]["text"]
