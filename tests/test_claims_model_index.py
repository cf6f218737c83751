import math

import pytest
import yaml
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from cards.model_index import flag_self_contradictions, hub_parse_error, parse_claims, parse_value

TRAINER_CARD = """---
license: apache-2.0
tags:
- generated_from_trainer
datasets:
- emotion
metrics:
- accuracy
- f1
model-index:
- name: distilbert-base-uncased-finetuned-emotion
  results:
  - task:
      name: Text Classification
      type: text-classification
    dataset:
      name: emotion
      type: emotion
      config: default
      split: validation
      args: default
    metrics:
    - name: Accuracy
      type: accuracy
      value: 0.9255
    - name: F1
      type: f1
      value: 0.9254
  - task:
      type: text-classification
      name: Text Classification
    dataset:
      name: emotion
      type: emotion
      config: default
      split: test
    metrics:
    - type: accuracy
      value: 0.919
      name: Accuracy
      verified: true
      verifyToken: eyJhbGciOiJFZERTQSJ9.payload.signature
    - type: f1
      value: 0.8725
      name: F1 Macro
      args:
        average: macro
      verified: true
      verifyToken: eyJhbGciOiJFZERTQSJ9.payload.other
    source:
      name: Model evaluator
      url: https://huggingface.co/spaces/autoevaluate/model-evaluator
---

# A model
"""


def _metadata(text):
    return yaml.safe_load(text.split("---")[1])


def test_trainer_card_claims_match_huggingface_hub(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(TRAINER_CARD)
    for metadata in (metadata_load(readme), ModelCard(TRAINER_CARD).data.to_dict()):
        claims = parse_claims(metadata)
        assert len(claims) == 4
        _, evals = model_index_to_eval_results(metadata["model-index"])
        for claim, ev in zip(claims, evals):
            assert claim["model_name"] == "distilbert-base-uncased-finetuned-emotion"
            assert claim["task"] == ev.task_type
            assert claim["dataset_type"] == ev.dataset_type
            assert claim["dataset_name"] == ev.dataset_name
            assert claim["config"] == ev.dataset_config
            assert claim["split"] == ev.dataset_split
            assert claim["metric_type"] == ev.metric_type
            assert claim["metric_name"] == ev.metric_name
            assert claim["metric_args"] == ev.metric_args
            assert claim["value"] == ev.metric_value
            assert claim["verified"] == bool(ev.verified)
            assert claim["note"] is None
            assert claim["contradiction_group"] is None
        assert [c["position"] for c in claims] == [
            "model-index[0].results[0].metrics[0]", "model-index[0].results[0].metrics[1]",
            "model-index[0].results[1].metrics[0]", "model-index[0].results[1].metrics[1]"]
        assert claims[2]["source"] == {"name": "Model evaluator",
                                       "url": "https://huggingface.co/spaces/autoevaluate/model-evaluator"}
        assert claims[3]["metric_args"] == {"average": "macro"}
        assert claims[2]["has_verify_token"] and "verifyToken" not in claims[2]
        assert hub_parse_error(metadata) is None


@pytest.mark.parametrize("raw,value,uncertainty,note", [
    (0.93, 0.93, None, None),
    (1, 1.0, None, None),
    ("0.93", 0.93, None, "is a string"),
    ("95%", 0.95, None, "percentage"),
    ("95.1 %", 0.951, None, "percentage"),
    ("20.0 ± 1.2", 20.0, 1.2, "uncertainty"),
    ("20.0 +/- 1.2", 20.0, 1.2, "uncertainty"),
    ("81.5 ± 0.5%", 0.815, 0.005, "uncertainty"),
    ("n/a", None, None, "not a number"),
    ("-", None, None, "not a number"),
    ("0,95", None, None, "not a number"),
    (True, None, None, "boolean"),
    (None, None, None, "no value"),
    (float("nan"), None, None, "finite"),
    ([0.9], None, None, "list"),
])
def test_parse_value(raw, value, uncertainty, note):
    got_value, got_uncertainty, got_note = parse_value(raw)
    assert got_value == (pytest.approx(value) if value is not None else None)
    assert got_uncertainty == (pytest.approx(uncertainty) if uncertainty is not None else None)
    if note is None:
        assert got_note is None
    else:
        assert note in got_note


MALFORMED = {
    "model-index": [
        {"name": "m", "results": {"task": {"type": "text-classification"},  # a mapping, not a list
                                  "dataset": {"type": "imdb", "name": "IMDB", "split": "test"},
                                  "metrics": [{"type": "accuracy", "value": "n/a"},
                                              {"value": 0.8},  # no type
                                              {"type": "accuracy", "value": "93%"},
                                              "accuracy: 0.9",  # not a mapping
                                              {"type": "f1", "value": 0.9, "verified": True}]}},
        {"name": "m2", "results": [{"task": {"type": "text-classification"}, "dataset": {"type": "imdb"}}]},
        "just a string",
        {"results": 42},
    ]
}


def test_malformed_entries_are_kept_with_a_note():
    claims = parse_claims(MALFORMED)
    by_position = {c["position"]: c for c in claims}
    assert len(claims) == 8  # 5 metrics, a result with none, a string entry, an entry with bad results
    first = by_position["model-index[0].results[0].metrics[0]"]
    assert first["value"] is None and "'n/a' is not a number" in first["note"]
    assert "results is a mapping" in first["note"]
    no_type = by_position["model-index[0].results[0].metrics[1]"]
    assert no_type["metric_type"] is None and "no metric type" in no_type["note"] and no_type["value"] == 0.8
    percent = by_position["model-index[0].results[0].metrics[2]"]
    assert percent["value"] == pytest.approx(0.93) and "percentage" in percent["note"]
    string = by_position["model-index[0].results[0].metrics[3]"]
    assert string["value"] is None and string["value_raw"] == "accuracy: 0.9" and "not a mapping" in string["note"]
    hand_verified = by_position["model-index[0].results[0].metrics[4]"]
    assert hand_verified["verified"] is False and "without a verifyToken" in hand_verified["note"]
    no_metrics = by_position["model-index[1].results[0]"]
    assert no_metrics["dataset_type"] == "imdb" and "metrics is missing" in no_metrics["note"]
    assert "is a str, not a mapping" in by_position["model-index[2]"]["note"]
    bad_results = by_position["model-index[3]"]
    assert "no name" in bad_results["note"] and "results is a int" in bad_results["note"]
    # the Hub's own parser rejects this card, which is exactly why ours must not raise
    assert hub_parse_error(MALFORMED) is not None


def test_top_level_shapes_never_raise():
    assert parse_claims(None) == []
    assert parse_claims({}) == []
    assert parse_claims({"model-index": []}) == []
    assert parse_claims("not a dict") == []
    one = parse_claims({"model-index": "accuracy 0.9"})
    assert len(one) == 1 and "model-index is a str" in one[0]["note"]
    wrapped = parse_claims({"model-index": {"name": "m", "results": [
        {"task": {"type": "t"}, "dataset": {"type": "d", "name": "D", "split": "test"},
         "metrics": [{"type": "accuracy", "value": 0.5}]}]}})
    assert len(wrapped) == 1 and wrapped[0]["value"] == 0.5 and "read as a list of one" in wrapped[0]["note"]


def test_modelcard_load_raises_where_parse_claims_does_not():
    content = "---\n" + yaml.safe_dump(MALFORMED) + "---\ntext\n"
    with pytest.raises(ValueError, match="model_index"):
        ModelCard(content)
    # ignore_metadata_errors drops every eval result; parse_claims keeps them all
    card = ModelCard(content, ignore_metadata_errors=True)
    assert card.data.eval_results is None
    assert len(parse_claims(_metadata(content))) == 8


def _claim_entry(split, metric_type, value, args=None):
    metric = {"type": metric_type, "value": value}
    if args:
        metric["args"] = args
    return {"task": {"type": "text-classification"},
            "dataset": {"type": "emotion", "name": "emotion", "config": "default", "split": split},
            "metrics": [metric]}


def test_self_contradiction_is_flagged_on_both():
    """As the thesis found on morenolq/distilbert-base-cased-emotion: the same metric twice, two values."""
    metadata = {"model-index": [{"name": "m", "results": [
        _claim_entry("test", "accuracy", 0.93),
        _claim_entry("test", "Accuracy", 0.91),  # metric types compare case-insensitively
        _claim_entry("validation", "accuracy", 0.95),  # another split: no contradiction
        _claim_entry("test", "f1", 0.90, {"average": "macro"}),
        _claim_entry("test", "f1", 0.92, {"average": "weighted"}),  # another averaging: no contradiction
        _claim_entry("test", "precision", 0.88),
        _claim_entry("test", "precision", 0.88),  # same value: a duplicate
    ]}]}
    claims = parse_claims(metadata)
    acc_test = [claims[0], claims[1]]
    assert {c["contradiction_group"] for c in acc_test} == {"c1"}
    assert claims[0]["contradiction_of"] == [claims[1]["position"]]
    assert claims[1]["contradiction_of"] == [claims[0]["position"]]
    assert all(c["contradiction_group"] is None for c in claims[2:])
    assert claims[5]["duplicate_group"] == claims[6]["duplicate_group"] == "d1"
    assert claims[0]["duplicate_group"] is None


def test_flag_self_contradictions_ignores_claims_without_values():
    claims = [{"dataset_type": "d", "metric_type": "accuracy", "value": None, "position": "a"},
              {"dataset_type": "d", "metric_type": "accuracy", "value": 0.5, "position": "b"}]
    flag_self_contradictions(claims)
    assert "contradiction_group" not in claims[0] and "contradiction_group" not in claims[1]


def test_numeric_names_and_splits_become_strings():
    claims = parse_claims({"model-index": [{"name": 123, "results": [
        {"task": {"type": "t"}, "dataset": {"type": "d", "name": 2021, "split": 1},
         "metrics": [{"type": "accuracy", "value": math.pi}]}]}]})
    assert claims[0]["model_name"] == "123" and claims[0]["split"] == "1" and claims[0]["dataset_name"] == "2021"
