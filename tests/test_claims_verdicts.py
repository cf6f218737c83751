import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef, precision_score

from cards.intervals import bootstrap_confusion_interval, wilson_interval
from cards.verdicts import (
    CONFIRMED,
    CONTRADICTED,
    NOT_COMPARABLE,
    NOT_YET_MEASURED,
    judge_against_results,
    judge_claim,
    reported_half_width,
    resolve_metric,
)
from tests.claims_factory import (
    classification_result,
    detection_result,
    labels_with_accuracy,
    mcc_result,
    regression_result,
)

LABELS = ["cat", "dog", "bird", "fish"]


@pytest.fixture(scope="module")
def result():
    y_true, y_pred = labels_with_accuracy(360, 324, 4, seed=1)
    return classification_result(y_true, y_pred, LABELS)


def claim(metric_type="accuracy", value=0.9, split="test", **fields):
    base = {"position": "model-index[0].results[0].metrics[0]", "model_name": "org/model", "task": "image-classification",
            "dataset_type": "digits", "dataset_name": "Digits", "split": split, "metric_type": metric_type,
            "metric_name": None, "metric_config": None, "metric_args": None, "value": value, "value_raw": value,
            "verified": False, "note": None}
    base.update(fields)
    return base


def test_true_claim_is_confirmed(result):
    assert result["overall"]["accuracy"] == 0.9
    verdict = judge_claim(claim(value=0.9), result, dataset_matches=True)
    assert verdict["verdict"] == CONFIRMED
    assert verdict["interval"] == pytest.approx(list(wilson_interval(324, 360)))
    assert verdict["method"] == "wilson" and verdict["level"] == 0.95 and verdict["n"] == 360
    assert verdict["metric_key"] == "overall.accuracy" and verdict["measured"] == 0.9
    assert verdict["gap"] == pytest.approx(0.0)


def test_false_claim_is_contradicted_with_the_gap(result):
    verdict = judge_claim(claim(value=0.97), result, dataset_matches=True)
    lo, hi = wilson_interval(324, 360)
    assert verdict["verdict"] == CONTRADICTED
    assert verdict["gap"] == pytest.approx(0.97 - 0.9)
    assert verdict["gap_beyond_interval"] == pytest.approx(0.97 - hi)
    assert "0.0700 higher" in verdict["reason"]
    low = judge_claim(claim(value=0.80), result, dataset_matches=True)
    assert low["verdict"] == CONTRADICTED and low["gap"] == pytest.approx(-0.1)
    assert low["gap_beyond_interval"] == pytest.approx(0.80 - lo)


def test_written_precision_decides_a_claim_at_the_edge(result):
    lo, _ = wilson_interval(324, 360)
    assert 0.86 < lo < 0.865  # 0.86 written with two decimals stands for [0.855, 0.865]
    two_decimals = judge_claim(claim(value=0.86, value_raw=0.86), result, dataset_matches=True)
    assert two_decimals["verdict"] == CONFIRMED and two_decimals["claim_half_width"] == pytest.approx(0.005)
    four_decimals = judge_claim(claim(value=0.86, value_raw="0.8600"), result, dataset_matches=True)
    assert four_decimals["verdict"] == CONTRADICTED
    assert four_decimals["gap_beyond_interval"] == pytest.approx(0.86 - lo)


def test_percentage_claim_is_rescaled_and_says_so(result):
    verdict = judge_claim(claim(value=90.0, value_raw=90.0), result, dataset_matches=True)
    assert verdict["verdict"] == CONFIRMED
    assert verdict["claimed_on_metric_scale"] == pytest.approx(0.9)
    assert "read as a percentage" in verdict["scale_note"]
    out_of_range = judge_claim(claim(value=250.0), result, dataset_matches=True)
    assert out_of_range["verdict"] == NOT_COMPARABLE and "outside" in out_of_range["reason"]


def test_claim_on_another_split_is_not_comparable(result):
    verdict = judge_claim(claim(split="validation"), result, dataset_matches=True)
    assert verdict["verdict"] == NOT_COMPARABLE and "split 'validation'" in verdict["reason"]
    assert judge_claim(claim(split="TEST"), result, dataset_matches=True)["verdict"] == CONFIRMED
    no_split = judge_claim(claim(split=None), result, dataset_matches=True)
    assert no_split["verdict"] == NOT_COMPARABLE and "names no split" in no_split["reason"]


def test_unknown_metric_is_not_comparable(result):
    verdict = judge_claim(claim(metric_type="bleu", value=31.2), result, dataset_matches=True)
    assert verdict["verdict"] == NOT_COMPARABLE and "unknown metric 'bleu'" in verdict["reason"]
    assert judge_claim(claim(metric_type="bleu"), None, dataset_matches=False)["verdict"] == NOT_COMPARABLE


def test_malformed_claim_is_not_comparable(result):
    verdict = judge_claim(claim(value=None, note="the value 'n/a' is not a number"), result, dataset_matches=True)
    assert verdict["verdict"] == NOT_COMPARABLE and "'n/a' is not a number" in verdict["reason"]


def test_not_yet_measured():
    verdict = judge_claim(claim(), None, dataset_matches=False)
    assert verdict["verdict"] == NOT_YET_MEASURED and verdict["result"] is None


def test_other_dataset_processor_and_variant(result):
    assert judge_claim(claim(), result, dataset_matches=False)["verdict"] == NOT_COMPARABLE
    rotated = dict(result, variant="rotated90")
    verdict = judge_claim(claim(), rotated, dataset_matches=True)
    assert verdict["verdict"] == NOT_COMPARABLE and "rotated90" in verdict["reason"]
    on_variant = claim(metric_args={"variant": "rotated90"})
    assert judge_claim(on_variant, rotated, dataset_matches=True)["verdict"] == CONFIRMED
    detection = judge_claim(claim(), detection_result(split="test"), dataset_matches=True)
    assert detection["verdict"] == NOT_COMPARABLE and "'detection' processor" in detection["reason"]


def test_f1_without_averaging_is_not_comparable_and_lists_candidates(result):
    verdict = judge_claim(claim(metric_type="f1", value=0.9, metric_name="F1"), result, dataset_matches=True)
    assert verdict["verdict"] == NOT_COMPARABLE and "averaging of F1 is not stated" in verdict["reason"]
    assert verdict["candidates"] == {"macro": result["overall"]["macro_f1"], "micro": result["overall"]["micro_f1"],
                                     "weighted": result["overall"]["weighted_f1"]}


def test_inconsistent_averaging_is_not_comparable(result):
    verdict = judge_claim(claim(metric_type="f1", metric_args={"average": "macro"}, metric_name="Weighted F1"),
                          result, dataset_matches=True)
    assert verdict["verdict"] == NOT_COMPARABLE and "inconsistently" in verdict["reason"]


@pytest.mark.parametrize("fields", [
    {"metric_type": "f1", "metric_args": {"average": "macro"}},
    {"metric_type": "f1", "metric_config": "macro"},
    {"metric_type": "f1_macro"},
    {"metric_type": "macro-f1"},
    {"metric_type": "f1", "metric_name": "F1 (macro)"},
])
def test_macro_f1_claims_use_the_matrix_bootstrap(result, fields):
    measured = result["overall"]["macro_f1"]
    verdict = judge_claim(claim(value=round(measured, 4), **fields), result, dataset_matches=True)
    assert verdict["verdict"] == CONFIRMED
    assert verdict["method"] == "bootstrap-confusion" and verdict["metric_key"] == "overall.macro_f1"
    assert verdict["interval"] == pytest.approx(list(bootstrap_confusion_interval(result["confusion_matrix"], "macro_f1")))
    lo, hi = verdict["interval"]
    assert lo < measured < hi
    wrong = judge_claim(claim(value=round(hi + 0.05, 3), **fields), result, dataset_matches=True)
    assert wrong["verdict"] == CONTRADICTED and wrong["gap"] > 0.05


def test_micro_and_weighted_recall_are_proportions(result):
    for fields, key in (({"metric_type": "f1", "metric_args": {"average": "micro"}}, "overall.micro_f1"),
                        ({"metric_type": "recall", "metric_args": {"average": "weighted"}}, "overall.weighted_recall")):
        verdict = judge_claim(claim(value=0.9, **fields), result, dataset_matches=True)
        assert verdict["verdict"] == CONFIRMED and verdict["method"] == "wilson" and verdict["metric_key"] == key
    weighted_precision = judge_claim(claim("precision", round(result["overall"]["weighted_precision"], 4),
                                           metric_args={"average": "weighted"}), result, dataset_matches=True)
    assert weighted_precision["verdict"] == CONFIRMED and weighted_precision["method"] == "bootstrap-confusion"


def test_top5_accuracy_is_not_comparable(result):
    for fields in ({"metric_type": "top5_accuracy"}, {"metric_type": "accuracy", "metric_name": "Top-5 Accuracy"},
                   {"metric_type": "accuracy", "metric_args": {"top_k": 5}}):
        verdict = judge_claim(claim(value=0.99, **fields), result, dataset_matches=True)
        assert verdict["verdict"] == NOT_COMPARABLE and "top-k" in verdict["reason"]
    top1 = judge_claim(claim(metric_name="Top-1 Accuracy"), result, dataset_matches=True)
    assert top1["verdict"] == CONFIRMED


def test_binary_f1_and_precision_against_sklearn():
    rng = np.random.default_rng(9)
    y_true = rng.integers(0, 2, size=400)
    y_pred = np.where(rng.random(400) < 0.8, y_true, 1 - y_true)
    labels = ["negative", "positive"]
    res = classification_result(y_true, y_pred, labels, dataset="imdb")
    f1 = f1_score(y_true, y_pred)  # sklearn's binary default: pos_label=1
    verdict = judge_claim(claim("f1", round(f1, 4), metric_args={"average": "binary"}), res, dataset_matches=True)
    assert verdict["verdict"] == CONFIRMED and verdict["measured"] == pytest.approx(f1)
    assert verdict["metric_key"] == "per_class.positive.f1" and "index 1" in verdict["notes"][0]
    by_name = judge_claim(claim("f1", 0.5, metric_args={"average": "binary", "pos_label": "negative"}), res,
                          dataset_matches=True)
    assert by_name["measured"] == pytest.approx(f1_score(y_true, y_pred, pos_label=0))
    assert by_name["verdict"] == CONTRADICTED
    precision = precision_score(y_true, y_pred)
    p = judge_claim(claim("precision", round(precision, 3), metric_config="binary"), res, dataset_matches=True)
    tp = int(((y_pred == 1) & (y_true == 1)).sum())
    assert p["verdict"] == CONFIRMED and p["method"] == "wilson"
    assert p["interval"] == pytest.approx(list(wilson_interval(tp, int((y_pred == 1).sum()))))


def test_binary_average_on_a_multiclass_dataset(result):
    verdict = judge_claim(claim("f1", 0.9, metric_args={"average": "binary"}), result, dataset_matches=True)
    assert verdict["verdict"] == NOT_COMPARABLE and "two-class" in verdict["reason"]


def test_matthews_correlation_is_the_mcc_processors():
    y_true, y_pred = labels_with_accuracy(300, 240, 3, seed=2)
    labels = ["a", "b", "c"]
    mcc = matthews_corrcoef(y_true, y_pred)
    res = mcc_result(y_true, y_pred, labels)
    assert res["overall"]["mcc"] == pytest.approx(mcc, abs=1e-12)
    verdict = judge_claim(claim("matthews_correlation", round(mcc, 4)), res, dataset_matches=True)
    assert verdict["verdict"] == CONFIRMED and verdict["measured"] == pytest.approx(mcc)
    assert verdict["method"] == "bootstrap-confusion" and verdict["metric_key"] == "overall.mcc"
    assert verdict["interval"] == pytest.approx(
        list(bootstrap_confusion_interval(res["confusion_matrix"], "matthews_correlation")))
    # the classification processor's result has no mcc: the mcc processor has yet to score the predictions
    classification = dict(classification_result(y_true, y_pred, labels), task="image-classification")
    later = judge_against_results(claim("mcc", round(mcc, 4)), [classification], lambda c, r: True)
    assert later["verdict"] == NOT_YET_MEASURED and "--processor mcc" in later["reason"]
    both = judge_against_results(claim("mcc", round(mcc, 4)), [classification, res], lambda c, r: True)
    assert both["verdict"] == CONFIRMED and both["result"]["processor"] == "mcc"
    # a detection result cannot hold it at all
    detection = dict(detection_result(split="test"), task="object-detection")
    never = judge_claim(claim("mcc", 0.5), detection, dataset_matches=True)
    assert never["verdict"] == NOT_COMPARABLE and "'detection' processor" in never["reason"]


def test_correlation_claims_use_fisher_z():
    rng = np.random.default_rng(4)
    y_true = rng.uniform(0, 5, size=1500)
    y_pred = y_true + rng.normal(0, 1.0, size=1500)
    res = regression_result(y_true, y_pred)
    pearson, spearman = stats.pearsonr(y_true, y_pred), stats.spearmanr(y_true, y_pred).statistic
    assert res["overall"]["pearson"] == pytest.approx(pearson.statistic, abs=1e-12)
    value = round(100 * pearson.statistic, 1)  # cards often give correlations in percent
    verdict = judge_claim(claim("pearsonr", value, split="validation", value_raw=value), res, dataset_matches=True)
    assert verdict["verdict"] == CONFIRMED and verdict["method"] == "fisher-z"
    assert verdict["metric_key"] == "overall.pearson" and "percentage" in verdict["scale_note"]
    ci = pearson.confidence_interval(0.95)  # scipy's is the Fisher z interval
    assert verdict["interval"] == pytest.approx([ci.low, ci.high], abs=1e-12)
    mteb = judge_claim(claim("cos_sim_spearman", round(spearman, 3), split="validation"), res, dataset_matches=True)
    assert mteb["verdict"] == CONFIRMED and mteb["metric_key"] == "overall.spearman"
    wrong = judge_claim(claim("spearmanr", round(spearman - 0.1, 2), split="validation"), res, dataset_matches=True)
    assert wrong["verdict"] == CONTRADICTED
    undefined = regression_result(y_true, np.full(1500, 2.5))  # a constant prediction: no correlation stored
    assert undefined["overall"]["pearson"] is None
    missing = judge_claim(claim("pearsonr", 0.8, split="validation"), undefined, dataset_matches=True)
    assert missing["verdict"] == NOT_YET_MEASURED and "no overall.pearson" in missing["reason"]


def test_detection_ap_by_tolerance_or_replicates():
    res = detection_result(split="val")
    verdict = judge_claim(claim("mAP", 41.2, split="validation", value_raw=41.2), res, dataset_matches=True)
    assert verdict["verdict"] == CONFIRMED and verdict["method"] == "tolerance" and verdict["level"] is None
    assert verdict["interval"] == pytest.approx([0.402, 0.422]) and "documented tolerance" in verdict["reason"]
    assert verdict["measured"] == 0.412 and verdict["claimed_on_metric_scale"] == pytest.approx(0.412)
    # one AP point plus the claim's rounding: 42.7 is outside [0.402, 0.422] even widened by 0.0005
    off = judge_claim(claim("mAP", 42.7, split="val", value_raw=42.7), res, dataset_matches=True)
    assert off["verdict"] == CONTRADICTED and off["method"] == "tolerance" and off["gap"] == pytest.approx(0.015)
    undefined = judge_claim(claim("AP_small", 0.1, split="val"), res, dataset_matches=True)
    assert undefined["verdict"] != CONFIRMED
    replicates = np.random.default_rng(0).normal(0.412, 0.01, size=2000)
    with_replicates = judge_claim(claim("mAP", 41.2, split="val", value_raw=41.2), res, dataset_matches=True,
                                  bootstrap_replicates=replicates)
    assert with_replicates["verdict"] == CONFIRMED and with_replicates["method"] == "bootstrap-replicates"
    too_high = judge_claim(claim("AP50", 0.75, split="val"), res, dataset_matches=True,
                           bootstrap_replicates=np.random.default_rng(0).normal(0.633, 0.01, size=2000))
    assert too_high["verdict"] == CONTRADICTED and too_high["metric_key"] == "overall.AP50"


def test_degenerate_bootstrap_does_not_contradict():
    y = np.arange(60) % 3
    perfect = classification_result(y, y, ["a", "b", "c"])
    high = judge_claim(claim("f1", 0.97, metric_args={"average": "macro"}), perfect, dataset_matches=True)
    assert high["verdict"] == NOT_COMPARABLE and "collapses" in high["reason"]
    exact = judge_claim(claim("f1", 1.0, metric_args={"average": "macro"}), perfect, dataset_matches=True)
    assert exact["verdict"] == CONFIRMED
    accuracy = judge_claim(claim("accuracy", 0.97), perfect, dataset_matches=True)
    assert accuracy["verdict"] == CONFIRMED  # Wilson: 60/60 has the interval [0.94, 1]


@pytest.mark.parametrize("raw,rescaled,half", [
    (0.95, False, 0.005), ("95.1%", False, 0.0005), (95, True, 0.005), (0.9254, False, 0.00005),
    (1.0, False, 0.005), ("0.93", False, 0.005), ("n/a", False, 0.0), (88.25, True, 0.00005),
])
def test_reported_half_width(raw, rescaled, half):
    assert reported_half_width({"value_raw": raw}, rescaled) == pytest.approx(half)


def test_resolve_metric_aliases():
    assert resolve_metric(claim("Accuracy"))[0] == "accuracy"
    assert resolve_metric(claim("acc@1"))[0] == "accuracy"
    assert resolve_metric(claim("balanced_accuracy"))[0] == "balanced_accuracy"
    assert resolve_metric(claim("mcc"))[0] == "matthews_correlation"
    assert resolve_metric(claim("mean_iou"))[0] == "mean_iou"
    assert resolve_metric(claim("map@0.5"))[0] == "AP50"
    assert resolve_metric(claim("f1", metric_args={"average": "weighted"}))[:2] == ("f1", "weighted")
    assert resolve_metric(claim(None))[3] == "the claim has no metric type"


def test_judge_against_results_picks_split_and_variant(result):
    validation = dict(result, split="validation", overall=dict(result["overall"], accuracy=0.5, correct=180))
    rotated = dict(result, variant="rotated90", overall=dict(result["overall"], accuracy=0.1, correct=36))
    results = [rotated, validation, result]

    def same_dataset(c, r):
        return r["dataset"] == "digits" and c["dataset_type"] == "digits"

    verdict = judge_against_results(claim(value=0.9), results, same_dataset)
    assert verdict["verdict"] == CONFIRMED and verdict["result"]["split"] == "test"
    assert verdict["result"]["variant"] == "original"
    val_claim = judge_against_results(claim(value=0.5, split="val"), results, same_dataset)
    assert val_claim["verdict"] == CONFIRMED and val_claim["result"]["split"] == "validation"
    train = judge_against_results(claim(value=0.99, split="train"), results, same_dataset)
    assert train["verdict"] == NOT_COMPARABLE and "measured this dataset on: test, validation" in train["reason"]
    other = judge_against_results(claim(dataset_type="imdb"), results, same_dataset)
    assert other["verdict"] == NOT_YET_MEASURED


def test_sparse_confusion_gives_the_same_verdict(result):
    y_true, y_pred = labels_with_accuracy(360, 324, 4, seed=1)
    sparse = classification_result(y_true, y_pred, LABELS, sparse=True)
    c = claim("f1", round(result["overall"]["macro_f1"], 3), metric_args={"average": "macro"})
    dense_verdict = judge_claim(c, result, dataset_matches=True)
    sparse_verdict = judge_claim(c, sparse, dataset_matches=True)
    assert dense_verdict["interval"] == sparse_verdict["interval"]
    assert dense_verdict["verdict"] == sparse_verdict["verdict"] == CONFIRMED


def test_trainer_card_end_to_end():
    """A Trainer-style card (accuracy and an F1 of unstated averaging on validation) against a measurement."""
    from cards.model_index import parse_claims
    from tests.test_claims_model_index import TRAINER_CARD, _metadata

    claims = parse_claims(_metadata(TRAINER_CARD))
    y_true, y_pred = labels_with_accuracy(2000, 1851, 6, seed=8)
    emotions = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    measured = [classification_result(y_true, y_pred, emotions, dataset="emotion", split="validation")]

    def same(c, r):
        return c["dataset_type"] == r["dataset"]

    verdicts = [judge_against_results(c, measured, same) for c in claims]
    assert [v["verdict"] for v in verdicts] == [CONFIRMED, NOT_COMPARABLE, NOT_COMPARABLE, NOT_COMPARABLE]
    assert verdicts[0]["measured"] == 1851 / 2000  # 0.9255, as claimed
    assert "not stated" in verdicts[1]["reason"]
    assert "split 'test'" in verdicts[2]["reason"] and "measured this dataset on: validation" in verdicts[2]["reason"]
