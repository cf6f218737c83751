"""Claims in the store: read from odd cards at scrape time without ever failing the scrape, matched to results
by zooeval's dataset-name rules, stored as one verdict per model revision and claim, updated after a run."""
from __future__ import annotations

import datetime as dt

import pytest
import yaml

from core.store import Store
from scraper.local import scrape_local
from scraper.repo_metadata import card_claims
from service.claims import stale_models, update_after_run, update_verdicts
from tests.claims_factory import classification_result, labels_with_accuracy


@pytest.fixture
def store(mongo_uri, db_name):
    s = Store(mongo_uri, db_name)
    yield s
    s.close()


def write_repo(root, name: str, front_matter: str) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    (folder / "README.md").write_text(f"---\n{front_matter}\n---\n\n# {name}\n")


ODD_CARD = """pipeline_tag: text-classification
model-index:
- name: odd
  results:
  - task: {type: text-classification}
    dataset: {type: imdb, name: IMDB, split: test, revision: 2021-03-04, args: {1: one, when: 2020-01-01}}
    metrics:
    - {type: accuracy, value: 95%, verified: true, verifyToken: jwt}
    - {type: accuracy, value: 123456789012345678901234567890}
    - {type: f1, value: 0.9, args: {average: macro, seen: !!set {a, b}}}
  - task: {type: text-classification}
    dataset: {type: imdb, split: train}
    metrics: {type: accuracy, value: 0.99}
  - 42"""


def test_a_scrape_keeps_every_claim_of_odd_cards(store, tmp_path):
    write_repo(tmp_path, "odd", ODD_CARD)
    write_repo(tmp_path, "broken-yaml", "pipeline_tag: text-classification\nmodel-index: [unclosed")
    write_repo(tmp_path, "plain", "pipeline_tag: text-classification\ndatasets: [imdb]")
    counts = scrape_local(store, tmp_path, log=lambda s: None)
    assert counts["new"] == 3
    models = {m["name"]: m for m in store.find_models({})}
    odd = models["odd"]
    assert odd["n_claims"] == 5 and odd["claims_revision"] == odd["revision"]
    assert odd["claims_error"]  # huggingface_hub's own parser fails on the last block
    claims = {c["position"]: c for c in odd["claims"]}
    first = claims["model-index[0].results[0].metrics[0]"]
    assert first["value"] == 0.95 and first["verified"] is True and "percentage" in first["note"]
    assert first["revision"] == "2021-03-04" and first["dataset_args"] == {"1": "one", "when": "2020-01-01"}
    huge = claims["model-index[0].results[0].metrics[1]"]
    assert huge["value_raw"] == "123456789012345678901234567890" and huge["value"] == pytest.approx(1.2345678901e29)
    assert claims["model-index[0].results[0].metrics[2]"]["metric_args"] == {"average": "macro", "seen": ["a", "b"]}
    assert "a mapping, not a list" in claims["model-index[0].results[1].metrics[0]"]["note"]
    assert "is a int, not a mapping" in claims["model-index[0].results[2]"]["note"]
    assert "value" not in claims["model-index[0].results[2]"]  # fields that are None are not stored
    broken = models["broken-yaml"]
    assert broken["n_claims"] == 0 and any("not valid YAML" in n for n in broken["notes"])
    assert models["plain"]["n_claims"] == 0 and models["plain"]["claims_error"] is None


def dataset_doc(name: str, compatible_with: list[str] = ()) -> dict:
    return {"name": name, "datatype": "text", "task": "text-classification", "revision": "rev-" + name,
            "classes": [{"id": 0, "label": "neg"}, {"id": 1, "label": "pos"}], "compatible_with": list(compatible_with),
            "splits": [{"name": "test", "total": 400, "class_counts": {"neg": 200, "pos": 200}}]}


def store_result(store: Store, result: dict, model_key: str, run_id: str) -> dict:
    doc = {**result, "model_key": model_key, "inference_id": f"{model_key}:{result['dataset']}:{result['model_revision']}",
           "module": "hf-text-classification/" + result["dataset"], "created_at": dt.datetime.now(dt.timezone.utc),
           "run_id": run_id, "task": "text-classification"}
    assert store.insert_result(f"{doc['inference_id']}:{result['processor']}", doc)
    return doc


def model_with_card(store: Store, name: str, revision: str, metrics_by_dataset: list[tuple[dict, list[dict]]]) -> str:
    meta = {"model-index": [{"name": name, "results": [
        {"task": {"type": "text-classification"}, "dataset": dataset, "metrics": metrics}
        for dataset, metrics in metrics_by_dataset]}]}
    meta = yaml.safe_load(yaml.safe_dump(meta))
    store.upsert_models([{"_id": f"local/{name}", "name": name, "source": "local", "task": "text-classification",
                          "revision": revision, **card_claims(meta, revision)}])
    return f"local/{name}"


def test_claims_find_their_dataset_by_zooevals_name_rules(store):
    store.upsert_dataset(dataset_doc("rotten_tomatoes", compatible_with=["imdb"]))
    store.upsert_dataset(dataset_doc("mrpc"))
    key = model_with_card(store, "m", "r1", [
        ({"type": "cornell-movie-review-data/rotten_tomatoes", "split": "test"}, [{"type": "accuracy", "value": 0.9}]),
        ({"type": "imdb", "split": "test"}, [{"type": "accuracy", "value": 0.9}]),
        ({"type": "glue", "name": "GLUE MRPC", "config": "mrpc", "split": "test"}, [{"type": "accuracy", "value": 0.5}]),
        ({"type": "squad", "split": "validation"}, [{"type": "accuracy", "value": 0.8}]),
        ({"name": "Rotten Tomatoes", "split": "test"}, [{"type": "accuracy", "value": 0.2}]),
    ])
    y_true, y_pred = labels_with_accuracy(400, 360, 2, seed=0)
    store_result(store, classification_result(y_true, y_pred, ["neg", "pos"], dataset="rotten_tomatoes",
                                              model_revision="r1"), key, "run-1")
    store_result(store, classification_result(y_true, y_true, ["neg", "pos"], dataset="rotten_tomatoes",
                                              model_revision="r0"), key, "run-0")  # an older revision: not used
    y_true, y_pred = labels_with_accuracy(400, 200, 2, seed=1)
    store_result(store, classification_result(y_true, y_pred, ["neg", "pos"], dataset="mrpc", model_revision="r1"),
                 key, "run-1")
    counts = update_verdicts(store, log=pytest.fail)
    assert counts["models"] == 1 and counts["claims"] == 5 and "errors" not in counts
    verdicts = {v["order"]: v for v in store.verdicts({"model_key": key})}
    assert verdicts[0]["verdict"] == "confirmed" and verdicts[0]["measured"] == 0.9  # the Hub namespace is ignored
    assert verdicts[0]["result"]["model_revision"] == "r1"
    assert verdicts[1]["verdict"] == "not comparable"  # IMDB is compatible with rotten_tomatoes: other data
    assert "registered as compatible with 'imdb'" in verdicts[1]["reason"] and "rotten_tomatoes" in verdicts[1]["reason"]
    assert verdicts[2]["verdict"] == "confirmed" and verdicts[2]["result"]["dataset"] == "mrpc"  # GLUE's config
    assert verdicts[3]["verdict"] == "not yet measured"
    assert verdicts[3]["reason"] == "zooeval has no dataset registered as 'squad'"
    assert verdicts[4]["verdict"] == "contradicted"  # the pretty name, with no type, names the dataset too


def test_verdicts_are_upserted_per_revision_and_position(store):
    store.upsert_dataset(dataset_doc("imdb"))
    claims = [({"type": "imdb", "split": "test"}, [{"type": "accuracy", "value": 0.9}, {"type": "accuracy", "value": 0.95}])]
    key = model_with_card(store, "m", "r1", claims)
    assert stale_models(store) == {key}
    first = update_verdicts(store)
    assert first["not yet measured"] == 2 and stale_models(store) == set()
    ids = sorted(v["_id"] for v in store.verdicts())
    assert ids == [f"{key}@r1#model-index[0].results[0].metrics[{i}]" for i in (0, 1)]
    update_verdicts(store)
    assert sorted(v["_id"] for v in store.verdicts()) == ids  # idempotent: replaced, never duplicated

    # a run writes the model's first result: its verdicts are updated, and only its
    y_true, y_pred = labels_with_accuracy(400, 360, 2, seed=0)
    store_result(store, classification_result(y_true, y_pred, ["neg", "pos"], dataset="imdb", model_revision="r1"),
                 key, "run-2")
    other = model_with_card(store, "other", "x1", claims)
    update_verdicts(store, [other])
    lines: list[str] = []
    counts = update_after_run(store, "run-2", log=lines.append)
    assert counts["models"] == 1 and counts["confirmed"] == 1 and counts["contradicted"] == 1
    assert lines and lines[0].startswith("claims: 2 verdicts on the cards of 1 models updated")
    assert update_after_run(store, "run-3", log=lines.append).get("models", 0) == 0  # nothing new: nothing judged

    # a new revision whose card claims one value: its verdict is stored beside the old revision's
    model_with_card(store, "m", "r2", [({"type": "imdb", "split": "test"}, [{"type": "accuracy", "value": 0.9}])])
    assert stale_models(store) == {key}
    update_verdicts(store, [key])
    assert store.count("claims", {"model_key": key, "model_revision": "r2"}) == 1
    assert store.count("claims", {"model_key": key, "model_revision": "r1"}) == 2
    store.save_verdicts(key, "r1", [])  # a revision's claims gone: its verdicts go too
    assert store.count("claims", {"model_key": key, "model_revision": "r1"}) == 0


def test_a_titled_claims_table_says_nothing_without_claims(store, capsys):
    from service.commands.cards import claims_table

    store.upsert_models([{"_id": "local/silent", "name": "silent", "source": "local", "revision": "r1",
                          **card_claims({"license": "mit"}, "r1")}])  # a card with no model-index
    claims_table(store, title="claimed vs measured:")
    assert capsys.readouterr().out == ""


def test_the_claims_validator_refuses_an_unknown_verdict(store):
    from pymongo.errors import BulkWriteError

    with pytest.raises(BulkWriteError, match="failed validation"):
        store.save_verdicts("local/m", "r1", [{"position": "p", "claim": {}, "verdict": "probably", "reason": "?"}])


def test_the_verdict_names_agree_everywhere():
    """The store's validator and the CLI's choice spell out cards.verdicts.VERDICTS (neither imports it)."""
    from cards.verdicts import VERDICTS
    from core.store import VALIDATORS
    from service.commands.cards import VERDICT_CHOICES

    assert VERDICT_CHOICES == list(VERDICTS) == VALIDATORS["claims"]["properties"]["verdict"]["enum"]
