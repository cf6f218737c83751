import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from cards.model_index import parse_claims
from cards.render import measured_model_index, metadata_yaml, render_card, render_section
from cards.statements import model_statements
from cards.verdicts import CONFIRMED, judge_against_results
from tests.claims_factory import (
    classification_result,
    detection_result,
    labels_with_accuracy,
    mcc_result,
    regression_result,
)

URL = "https://zooeval.example.org/models/org-model"
LABELS = ["cat", "dog", "bird|fish"]  # a pipe in a class name must not break the markdown table


@pytest.fixture(scope="module")
def results():
    y_true, y_pred = labels_with_accuracy(360, 356, 3, seed=1)
    original = classification_result(y_true, y_pred, LABELS)
    y_true, y_pred = labels_with_accuracy(360, 25, 3, seed=2)
    rotated = classification_result(y_true, y_pred, LABELS, variant="rotated90")
    return [original, rotated, detection_result()]


TASKS = {"digits": "image-classification"}


def test_yaml_round_trips_through_huggingface_hub(results, tmp_path):
    model_index = measured_model_index("org/model", results, source_url=URL, task_types=TASKS,
                                       dataset_ids={"digits": "ylecun/digits"})
    text = metadata_yaml(model_index)
    assert yaml.safe_load(text) == {"model-index": model_index}
    name, evals = model_index_to_eval_results(model_index)
    assert name == "org/model"
    assert len(evals) == 2 * 5 + 4  # two classification results x 5 metrics, detection x 4
    original = results[0]
    accuracy = next(e for e in evals if e.metric_type == "accuracy" and e.metric_args["variant"] == "original")
    assert accuracy.metric_value == original["overall"]["accuracy"]
    assert accuracy.dataset_type == "ylecun/digits" and accuracy.dataset_split == "test"
    assert accuracy.task_type == "image-classification"
    assert accuracy.source_name == "zooeval" and accuracy.source_url == URL
    assert accuracy.metric_args == {"variant": "original", "measured_by": "zooeval", "model_revision": "a" * 40,
                                    "dataset_revision": "rev-digits", "n": 360}
    assert accuracy.verified is None  # only the Hub sets it
    rotated_f1 = next(e for e in evals if e.metric_type == "f1" and e.metric_args.get("variant") == "rotated90"
                      and e.metric_args["average"] == "macro")
    assert rotated_f1.metric_value == results[1]["overall"]["macro_f1"]
    assert rotated_f1.metric_name == "Macro F1 (rotated90)"
    ap = next(e for e in evals if e.metric_type == "mAP")
    assert ap.metric_value == 0.412 and ap.task_type == "object-detection" and ap.metric_args["n"] == 200

    card_text = render_card("org/model", results, source_url=URL, task_types=TASKS,
                            dataset_ids={"digits": "ylecun/digits"})
    card = ModelCard(card_text)
    assert card.data.model_name == "org/model"
    assert [(e.metric_type, e.metric_value) for e in card.data.eval_results] == [
        (e.metric_type, e.metric_value) for e in evals]
    path = tmp_path / "README.md"
    path.write_text(card_text)
    assert metadata_load(path) == {"model-index": model_index}
    assert "## Evaluation by zooeval: org/model" in card.text


def test_our_card_confirms_itself(results):
    """Claims read back from zooeval's own card, judged against the same results: every classification
    claim is confirmed; the detection ones too, by the documented tolerance (no stored statistic gives AP an
    interval)."""
    metadata = yaml.safe_load(metadata_yaml(measured_model_index("org/model", results, source_url=URL,
                                                                 task_types=TASKS)))
    claims = parse_claims(metadata)
    assert len(claims) == 14 and all(c["note"] is None for c in claims)
    assert not any(c["contradiction_group"] for c in claims)
    verdicts = [judge_against_results(c, results, lambda c, r: c["dataset_type"] == r["dataset"]) for c in claims]
    classification = [v for v, c in zip(verdicts, claims) if c["task"] == "image-classification"]
    assert len(classification) == 10 and all(v["verdict"] == CONFIRMED for v in classification)
    detection = [v for v, c in zip(verdicts, claims) if c["task"] == "object-detection"]
    assert detection and all(v["verdict"] == CONFIRMED and v["method"] == "tolerance" for v in detection)


def test_markdown_has_the_disaggregated_tables(results):
    claims = parse_claims({"model-index": [{"name": "org/model", "results": [
        {"task": {"type": "image-classification"}, "dataset": {"type": "digits", "name": "Digits", "split": "test"},
         "metrics": [{"type": "accuracy", "value": 0.5}, {"type": "bleu", "value": 30},
                     {"type": "f1", "value": 0.98}]}]}]})
    verdicts = [judge_against_results(c, results, lambda c, r: c["dataset_type"] == r["dataset"]) for c in claims]
    statements = model_statements(results)
    text = render_section("org/model", results, source_url=URL, verdicts=verdicts, statements=statements,
                          groups={"digits": {"pets": ["cat", "dog"], "other": ["bird|fish"]}})
    lines = text.splitlines()
    assert "### Classification" in lines and "### Object detection" in lines and "### Runtime" in lines
    assert "#### Per class: digits (test)" in lines and "#### Per group: digits (test)" in lines
    assert "#### Per supercategory: faces (val)" in lines
    row = next(line for line in lines if line.startswith("| bird\\|fish |"))
    assert row.count(" | ") == 4  # class, support, precision, recall, F1: the pipe is escaped
    pets = next(line for line in lines if line.startswith("| pets |"))
    assert pets.startswith("| pets | 2 | 240 |")
    rotated = next(line for line in lines if line.startswith("| digits | test | rotated90 |"))
    change = (25 - 356) / 360
    assert f"{change:+.4f}" in rotated
    assert "### Claimed vs measured" in lines
    assert any("| accuracy | digits | test | 0.5 |" in line and "contradicted" in line for line in lines)
    assert any("| bleu |" in line and "not comparable" in line for line in lines)
    macro = results[0]["overall"]["macro_f1"]
    f1_row = next(line for line in lines if line.startswith("| f1 |"))
    assert "not stated" in f1_row and f"macro {macro:.4f}" in f1_row
    assert "| digits | test | original | 120.5 | 0.008299 | 1.25 |" in lines
    assert "### Observations" in lines
    assert any("accuracy falls from 0.99 to 0.07 on images rotated by 90 degrees" in line for line in lines)


def test_per_class_rows_are_capped(results):
    text = render_section("org/model", results[:1], source_url=URL, max_class_rows=2)
    assert "1 more classes are in zooeval's export." in text


def test_task_type_is_required_for_classification(results):
    with pytest.raises(ValueError, match="no task type for dataset 'digits'"):
        measured_model_index("org/model", results, source_url=URL)


def test_without_a_url_the_metrics_still_say_zooeval(results, tmp_path):
    """The Hub's format needs a url beside a source name: with none, each metric's args name zooeval."""
    model_index = measured_model_index("org/model", results, task_types=TASKS)
    assert all("source" not in entry for entry in model_index[0]["results"])
    _, evals = model_index_to_eval_results(model_index)
    assert evals and all(e.source_name is None and e.metric_args["measured_by"] == "zooeval" for e in evals)
    path = tmp_path / "README.md"
    path.write_text(render_card("org/model", results, task_types=TASKS))
    assert metadata_load(path) == {"model-index": model_index}
    assert "Measured by zooeval on" in path.read_text()


def test_mcc_and_correlations_go_in_the_model_index(tmp_path):
    y_true, y_pred = labels_with_accuracy(200, 150, 2, seed=3)
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 5, size=300)
    results = [mcc_result(y_true, y_pred, ["neg", "pos"], dataset="sst2", task="text-classification"),
               regression_result(scores, scores + rng.normal(0, 1, size=300), dataset="stsb")]
    model_index = measured_model_index("org/model", results, source_url=URL)
    path = tmp_path / "README.md"
    path.write_text(render_card("org/model", results, source_url=URL))
    assert metadata_load(path) == {"model-index": model_index}
    _, evals = model_index_to_eval_results(model_index)
    values = {(e.dataset_type, e.metric_type): e.metric_value for e in evals}
    assert values == {("sst2", "matthews_correlation"): results[0]["overall"]["mcc"],
                      ("stsb", "pearsonr"): results[1]["overall"]["pearson"],
                      ("stsb", "spearmanr"): results[1]["overall"]["spearman"]}
    # read back as claims, zooeval's own card confirms itself
    claims = parse_claims(metadata_load(path))
    verdicts = [judge_against_results(c, results, lambda c, r: c["dataset_type"] == r["dataset"]) for c in claims]
    assert [v["verdict"] for v in verdicts] == [CONFIRMED] * 3
    text = path.read_text()
    assert "### Other metrics" in text and "| stsb | validation | original | regression | Pearson r |" in text


def test_no_results_gives_an_empty_card():
    text = render_card("org/nothing", [], source_url=URL)
    assert ModelCard(text).data.eval_results is None
    assert "zooeval has no results for this model yet." in text


def test_undefined_detection_stat_is_left_out():
    result = detection_result()
    result["overall"]["AP75"] = -1.0
    model_index = measured_model_index("org/detector", [result], source_url=URL)
    types = [m["type"] for m in model_index[0]["results"][0]["metrics"]]
    assert types == ["mAP", "AP50", "AR100"]
