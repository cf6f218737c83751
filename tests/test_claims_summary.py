import pytest

from cards.model_index import parse_claims
from cards.summary import summarise
from cards.verdicts import judge_claim


def _card(*metrics, split="test"):
    return {"model-index": [{"name": "m", "results": [
        {"task": {"type": "text-classification"}, "dataset": {"type": "imdb", "name": "IMDB", "split": split},
         "metrics": list(metrics)}]}]}


TOKEN = {"verified": True, "verifyToken": "jwt"}


def test_chapter5_figures():
    models = [
        # no model-index, performance in the text
        {"model_name": "a", "claims": parse_claims({"license": "mit"}), "results_in_text": True},
        # one self-reported value, nothing in the text
        {"model_name": "b", "claims": parse_claims(_card({"type": "accuracy", "value": 0.9})), "results_in_text": False},
        # three values, two verified, and the text too
        {"model_name": "c", "claims": parse_claims(_card({"type": "accuracy", "value": 0.91, **TOKEN},
                                                         {"type": "f1", "value": 0.9, **TOKEN},
                                                         {"type": "recall", "value": 0.8})),
         "results_in_text": True},
        # a self-contradiction (two accuracies) and a malformed value; text unknown
        {"model_name": "d", "claims": parse_claims(_card({"type": "accuracy", "value": 0.93},
                                                         {"type": "accuracy", "value": 0.95},
                                                         {"type": "accuracy", "value": "n/a"}))},
        # nothing at all
        {"model_name": "e", "claims": [], "results_in_text": False},
    ]
    out = summarise(models)
    assert out["models"] == 5
    assert out["models_with_model_index"] == 3
    assert out["models_with_values"] == 3 and out["models_with_values_share"] == pytest.approx(3 / 5)
    assert out["reporting"] == {"none": 1, "text only": 1, "model-index only": 1, "text and model-index": 1}
    assert out["values"] == 6
    assert out["values_per_card"] == {"mean": 2.0, "median": 2, "max": 3, "histogram": {1: 1, 2: 1, 3: 1}}
    assert out["verified"] == 2 and out["self_reported"] == 4
    assert out["verified_share"] == pytest.approx(2 / 6) and out["self_reported_share"] == pytest.approx(4 / 6)
    assert out["malformed_claims"] == 1
    assert out["self_contradictions"] == {"models": 1, "claims": 2}
    assert out["contradicted_share"] is None  # no verdicts given


def test_contradicted_share_from_verdicts():
    result = {"dataset": "imdb", "split": "test", "variant": "original", "processor": "classification",
              "overall": {"n": 1000, "correct": 900, "accuracy": 0.9}}
    claims = parse_claims(_card({"type": "accuracy", "value": 0.9}, {"type": "accuracy", "value": 0.99},
                                {"type": "bleu", "value": 20}))
    verdicts = [judge_claim(c, result, dataset_matches=True) for c in claims]
    assert [v["verdict"] for v in verdicts] == ["confirmed", "contradicted", "not comparable"]
    out = summarise([{"model_name": "m", "claims": claims, "verdicts": verdicts}])
    assert out["verdicts"] == {"confirmed": 1, "contradicted": 1, "not comparable": 1, "not yet measured": 0}
    assert out["contradicted_share"] == pytest.approx(0.5)
    assert out["contradicted_share_of_values"] == pytest.approx(1 / 3)


def test_empty_input():
    out = summarise([])
    assert out["models"] == 0 and out["models_with_values_share"] is None
    assert out["values_per_card"]["mean"] is None and out["verified_share"] is None
