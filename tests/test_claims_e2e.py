"""Claimed vs measured, end to end: a model card's model-index read at scrape time (from the Hub stand-in and
from a local folder), judged after `zooeval run` against zooeval's own measurement, shown by `zooeval claims`,
`model`, `results` and `export`, and the enriched card written by `zooeval card` read back by huggingface_hub.

The model is the fault tests' tiny real text classifier; its test accuracy and predictions were computed with
plain transformers when it was built (tests/fault_repos.py), so the card's true claims are known honestly:
its accuracy and its Matthews correlation (scikit-learn on those predictions). The card also claims a false
accuracy (which with the true one is a self-contradiction), an accuracy on another split, an unknown metric, a
value that is no number and a results block that is not a mapping. The Matthews correlation is measured by the
``mcc`` processor, which a cycle does not run by default: it stays "not yet measured" until
`zooeval run --processor mcc` scores the stored predictions, with no inference.
"""
from __future__ import annotations

import csv
import io
import os
import shutil

import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from sklearn.metrics import matthews_corrcoef
from statsmodels.stats.proportion import proportion_confint

from core.store import Store
from service.commands.cards import claims_table
from tests.cli_child import run_zooeval
from tests.fault_repos import DATASET, _rows, session_fault_zoo
from tests.hubserver import HubServer

HUB_MODEL, LOCAL_MODEL = "org/tinysent-bert", "claims/tinysent-bert"
TRUE_ACC, FALSE_ACC, MCC, TRAIN_ACC, BLEU, F1, BLOCK = (f"model-index[0].results[{r}].metrics[{m}]" if m is not None
                                                        else f"model-index[0].results[{r}]"
                                                        for r, m in ((0, 0), (0, 1), (0, 2), (1, 0), (0, 3), (0, 4),
                                                                     (2, None)))


@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


def card_claims(fault_zoo) -> dict[str, float]:
    """The values the test card claims: the model's true accuracy and Matthews correlation (from the predictions
    plain transformers made), and a false accuracy outside the accuracy's 95% Wilson interval."""
    truth = [r["label"] for r in _rows(fault_zoo["dataset_dir"], "test")]
    n, correct = len(truth), sum(int(p == t) for p, t in zip(fault_zoo["predictions"], truth))
    assert correct / n == pytest.approx(fault_zoo["accuracy"], abs=1e-12)
    low, high = proportion_confint(correct, n, alpha=0.05, method="wilson")
    false = 0.99 if high < 0.985 else round(low - 0.1, 2)
    assert not low - 0.005 <= false <= high + 0.005  # outside the interval, even allowing for the rounding
    mcc = matthews_corrcoef(truth, fault_zoo["predictions"])
    return {"accuracy": round(correct / n, 4), "false": false, "mcc": round(mcc, 4), "n": n, "correct": correct}


def write_card(repo, name: str, values: dict[str, float]) -> None:
    dataset = {"type": DATASET, "name": DATASET, "split": "test"}
    front = {
        "pipeline_tag": "text-classification", "library_name": "transformers", "license": "apache-2.0",
        "datasets": [DATASET],
        "model-index": [{"name": name, "results": [
            {"task": {"type": "text-classification", "name": "Text Classification"}, "dataset": dataset, "metrics": [
                {"type": "accuracy", "name": "Accuracy", "value": values["accuracy"]},  # true
                {"type": "accuracy", "name": "Accuracy", "value": values["false"]},  # false, and contradicts the first
                {"type": "matthews_correlation", "value": values["mcc"]},  # true, measured by the mcc processor
                {"type": "bleu", "value": 31.4},  # a metric zooeval does not compute
                {"type": "f1", "value": "n/a"},  # no number
            ]},
            {"task": {"type": "text-classification"}, "dataset": {**dataset, "split": "train"},
             "metrics": [{"type": "accuracy", "value": 0.99}]},  # another split than zooeval measures
            "accuracy: 0.99 on everything",  # a results block that is not a mapping
        ]}],
    }
    text = "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n# " + name + "\n\nA tiny BERT with claims.\n"
    (repo / "README.md").write_text(text)


def zooeval_child(*args: str, env: dict[str, str]) -> str:
    out = run_zooeval(args, env=env, timeout=600)
    assert out.returncode == 0, f"zooeval {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def zooeval(*args: str, env: dict[str, str]) -> str:
    """A command that only reads the store, in this process."""
    result = CliRunner().invoke(__import__("service.cli", fromlist=["main"]).main, list(args), env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def verdicts_of(store: Store, model_name: str) -> dict[str, dict]:
    return {v["position"]: v for v in store.verdicts({"model_name": model_name})}


@pytest.mark.slow
def test_claims_judged_after_scrape_and_run(fault_zoo, mongo_uri, db_name, tmp_path, capsys):
    values = card_claims(fault_zoo)
    hub_root, zoo = tmp_path / "hub", tmp_path / "zoo"
    shutil.copytree(fault_zoo["repos"]["good"], hub_root / HUB_MODEL)
    shutil.copytree(fault_zoo["repos"]["good"], zoo / LOCAL_MODEL)
    write_card(hub_root / HUB_MODEL, HUB_MODEL, values)
    write_card(zoo / LOCAL_MODEL, LOCAL_MODEL, values)
    home = tmp_path / "home"
    shutil.copytree(fault_zoo["dataset_dir"], home / "datasets" / DATASET)
    with HubServer(hub_root) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "ZOOEVAL_HOME": str(home),
               "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name, "HF_HUB_DISABLE_TELEMETRY": "1"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            env.pop(var, None)
        zooeval_child("scrape", "--source", "huggingface", "--no-progress", env=env)
        zooeval("scrape", "--source", "local", "--path", str(zoo), env=env)
        store = Store(mongo_uri, db_name)
        # claims are read at scrape time; with nothing measured yet they are judged on the fly, not stored
        models = {m["name"]: m for m in store.find_models({"n_claims": {"$gt": 0}})}
        assert set(models) == {HUB_MODEL, LOCAL_MODEL}
        for model in models.values():
            assert model["n_claims"] == 7 and model["claims_revision"] == model["revision"]
            assert model["claims_error"].startswith("TypeError: ")  # huggingface_hub's parser fails on the string
            claims = {c["position"]: c for c in model["claims"]}
            assert claims[TRUE_ACC]["contradiction_group"] == claims[FALSE_ACC]["contradiction_group"] == "c1"
            assert "not a number" in claims[F1]["note"] and "not a mapping" in claims[BLOCK]["note"]
        assert store.count("claims") == 0
        before = zooeval("claims", "--verdict", "not yet measured", env=env)
        assert before.count("not yet measured") == 2 * 4, before  # the three on test and the one on train, per model

        run = zooeval_child("run", "--no-progress", "--variant", "original", "--batch-size", "16", env=env)
        assert "claims: 14 verdicts on the cards of 2 models updated" in run, run
        for name in (HUB_MODEL, LOCAL_MODEL):
            result = store.latest_results({"model_name": name, "processor": "classification"})[0]
            assert result["overall"]["accuracy"] == pytest.approx(fault_zoo["accuracy"], abs=1e-12)
            verdicts = verdicts_of(store, name)
            assert {p: v["verdict"] for p, v in verdicts.items()} == {
                TRUE_ACC: "confirmed", FALSE_ACC: "contradicted", MCC: "not yet measured", BLEU: "not comparable",
                F1: "not comparable", TRAIN_ACC: "not comparable", BLOCK: "not comparable"}
            true, false = verdicts[TRUE_ACC], verdicts[FALSE_ACC]
            low, high = proportion_confint(values["correct"], values["n"], alpha=0.05, method="wilson")
            assert true["interval"] == pytest.approx([low, high], abs=1e-12) and true["method"] == "wilson"
            assert true["level"] == 0.95 and true["n"] == values["n"] and true["result_id"] == result["_id"]
            assert false["gap"] == pytest.approx(values["false"] - fault_zoo["accuracy"])
            assert false["interval"] == true["interval"] and false["measured"] == true["measured"]
            assert "--processor mcc" in verdicts[MCC]["reason"]
            assert "unknown metric 'bleu'" in verdicts[BLEU]["reason"]
            assert "no numeric value" in verdicts[F1]["reason"] and "no numeric value" in verdicts[BLOCK]["reason"]
            assert "split 'train'" in verdicts[TRAIN_ACC]["reason"] and "measured this dataset on: test" in \
                verdicts[TRAIN_ACC]["reason"]
            assert true["model_revision"] == result["model_revision"] == models[name]["revision"]
        assert store.db.models.find_one({"name": HUB_MODEL})["revision"] == hub.folders.get(HUB_MODEL).sha

        # a new metric from the stored predictions: the mcc verdicts change, with no inference
        stored = {v["_id"]: v["judged_at"] for v in store.verdicts()}
        rescore = zooeval_child("run", "--no-progress", "--variant", "original", "--processor", "mcc", env=env)
        assert "0 inference tasks, 2 re-scored from stored predictions" in rescore and "0 models loaded" in rescore
        for name in (HUB_MODEL, LOCAL_MODEL):
            mcc = verdicts_of(store, name)[MCC]
            assert mcc["verdict"] == "confirmed" and mcc["method"] == "bootstrap-confusion", mcc
            assert mcc["measured"] == pytest.approx(matthews_corrcoef(
                [r["label"] for r in _rows(fault_zoo["dataset_dir"], "test")], fault_zoo["predictions"]), abs=1e-12)
        assert store.count("claims") == 14 and set(stored) == {v["_id"] for v in store.verdicts()}  # upserted in place

        # what the commands show
        listing = zooeval("claims", env=env)
        assert listing.count("contradicted (self-contradiction)") == 2 and listing.count("confirmed") == 4, listing
        only = zooeval("claims", "--verdict", "contradicted", "--model", "org/*", env=env)
        assert HUB_MODEL in only and LOCAL_MODEL not in only and "not comparable" not in only
        summary = zooeval("claims", "--summary", env=env)
        assert "with a value: 2 (100.0%)" in summary and "values: 10; per card with values: mean 5.00" in summary
        assert "self-reported: 10 (100.0%)" in summary and "verified: 0 (0.0%)" in summary
        assert "self-contradictory: 2 cards (4 claims" in summary and "malformed: 4 claims" in summary
        assert "contradicted: 2 of 6 values zooeval could judge (33.3%); 20.0% of all values" in summary, summary
        capsys.readouterr()
        claims_table(store, verdict="contradicted", title="claimed vs measured:")  # as a summary shows them
        shown = capsys.readouterr().out
        assert shown.startswith("\nclaimed vs measured:\nmodel ") and shown.count("contradicted") == 2, shown
        page = zooeval("model", HUB_MODEL, env=env)
        assert "claims of the model card" in page and "4 not comparable" in page
        assert "huggingface_hub's own parser rejects this model-index: TypeError" in page
        assert "contradicted (self-contradiction)" in page
        assert "contradicted (self-contradiction)" in zooeval("results", LOCAL_MODEL, env=env)
        export = list(csv.DictReader(io.StringIO(zooeval("export", env=env))))
        assert list(export[0]) == ["model", "source", "revision", "dataset", "split", "variant", "processor", "class",
                                   "metric", "value"]
        claim_rows = {(r["model"], r["class"], r["metric"]): r for r in export if r["class"].startswith("claim:")}
        false_row = claim_rows[(HUB_MODEL, f"claim:{FALSE_ACC}", "verdict")]
        assert false_row["value"] == "contradicted" and false_row["processor"] == "classification"
        assert false_row["dataset"] == DATASET and false_row["split"] == "test" and false_row["variant"] == "original"
        assert float(claim_rows[(LOCAL_MODEL, f"claim:{TRUE_ACC}", "claimed")]["value"]) == values["accuracy"]

        # the enriched card, read back by huggingface_hub
        yaml_path, card_path = tmp_path / "model-index.yaml", tmp_path / "README.md"
        zooeval("card", HUB_MODEL, "--format", "yaml", "-o", str(yaml_path), env=env)
        zooeval("card", HUB_MODEL, "-o", str(card_path), "--source-url", "https://zooeval.example.org/runs/1", env=env)
    model_index = yaml.safe_load(yaml_path.read_text())["model-index"]
    card = ModelCard.load(card_path)
    name, evals = model_index_to_eval_results(model_index)
    assert name == HUB_MODEL == card.data.model_name
    measured = {r["processor"]: r for r in store.latest_results({"model_name": HUB_MODEL})}
    assert {(e.metric_type, (e.metric_args or {}).get("average")): e.metric_value for e in evals} == {
        ("accuracy", None): measured["classification"]["overall"]["accuracy"],
        ("f1", "macro"): measured["classification"]["overall"]["macro_f1"],
        ("precision", "macro"): measured["classification"]["overall"]["macro_precision"],
        ("recall", "macro"): measured["classification"]["overall"]["macro_recall"],
        ("f1", "weighted"): measured["classification"]["overall"]["weighted_f1"],
        ("matthews_correlation", None): measured["mcc"]["overall"]["mcc"]}
    assert all(e.dataset_type == DATASET and e.dataset_split == "test" and e.metric_args["measured_by"] == "zooeval"
               and e.metric_args["model_revision"] == measured["mcc"]["model_revision"] for e in evals)
    assert [(e.metric_type, e.metric_value) for e in card.data.eval_results] == [(e.metric_type, e.metric_value)
                                                                                 for e in evals]
    assert {e.source_url for e in card.data.eval_results} == {"https://zooeval.example.org/runs/1"}
    front = metadata_load(card_path)
    assert [m["type"] for m in front["model-index"][0]["results"][0]["metrics"]] == [m["type"] for m in
                                                                                     model_index[0]["results"][0]["metrics"]]
    assert "### Claimed vs measured" in card.text and "| accuracy | tinysent | test | 0.99 |" in card.text
    assert "| f1 | tinysent | test | n/a |" in card.text  # a claimed value shown as the card wrote it
    store.close()
