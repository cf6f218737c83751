"""Browsing the store from the command line: models (filters, inferred training data), dataset NAME."""
from __future__ import annotations

from click.testing import CliRunner

from core.store import Store
from service.cli import main


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def rows(out: str) -> dict[str, str]:
    """model name -> its table row"""
    return {line.split()[0]: line for line in out.splitlines()[2:] if line and not line.startswith("...")}


def test_models_filters_and_dataset_view(env):
    out = cli("scrape", "--source", "local")
    assert "training data inferred from labels" in out
    store = Store(env["uri"], env["db"])
    # every demo model's card declares its dataset; drop one declaration so it must be inferred from labels
    store.db.models.update_one({"_id": "local/demo/minilm-rt-cased"}, {"$set": {"datasets": []}})
    from scraper.training_data import infer_missing_training_datasets

    assert infer_missing_training_datasets(store, log=lambda s: None)["inferred"] == 1
    cli("run", "--no-progress", "--model", "demo/resnet-digits", "--variant", "original")

    all_models = rows(cli("models"))
    assert {"demo/resnet-digits", "demo/minilm-rt-cased", "broken/unmappable-labels"} <= set(all_models)
    assert "rotten_tomatoes (inferred)" in all_models["demo/minilm-rt-cased"]
    # a card that declares many training datasets: the first three, then how many more (`zooeval model` lists all)
    minilm = store.get_model("sentence-transformers/all-MiniLM-L6-v2")
    declared = minilm["datasets"]
    assert len(declared) > 3
    shown = f"{','.join(declared[:3])} (+{len(declared) - 3} more)"
    assert shown in all_models["sentence-transformers/all-MiniLM-L6-v2"] and declared[3] not in all_models[minilm["name"]]
    assert f"declared datasets: {', '.join(declared)}" in cli("model", minilm["name"])
    digits = rows(cli("models", "--trained-on", "digits"))
    assert set(digits) >= {"demo/resnet-digits", "demo/resnet-digits-words"} and "demo/minilm-rt-cased" not in digits
    assert "demo/minilm-rt-cased" in rows(cli("models", "--trained-on", "rotten_tomatoes"))
    assert set(rows(cli("models", "--evaluated-on", "digits"))) == {"demo/resnet-digits"}
    assert set(rows(cli("models", "--has-metrics"))) == {"demo/resnet-digits"}
    assert rows(cli("models", "--evaluated-on", "rotten_tomatoes")) == {}
    ranked = list(rows(cli("models", "--sort", "results")))
    assert ranked[0] == "demo/resnet-digits"
    assert set(rows(cli("models", "--task", "image-classification", "--name-contains", "WORDS"))) == {"demo/resnet-digits-words"}
    limited = cli("models", "--limit", "2")
    assert len(rows(limited)) == 2 and "more (use --limit 0 for all)" in limited

    out = cli("dataset", "digits")
    assert "datatype: image" in out and "supported variants" in out
    ds = store.datasets()["digits"]
    test_counts = next(s for s in ds["splits"] if s["name"] == "test")["class_counts"]
    line = next(row for row in out.splitlines() if row.startswith("3 ") or row.startswith("3  "))
    assert str(test_counts["3"]) in line.split()
    result = CliRunner().invoke(main, ["dataset", "nope"])
    assert result.exit_code != 0 and "no dataset 'nope'" in result.output

    # one model's page: inferred training data with its evidence, results, and the card read from its folder
    page = cli("model", "demo/minilm-rt-cased", "--card")
    assert "inferred datasets: rotten_tomatoes" in page and "evidence: label_set: 2 model labels" in page
    assert "rotten_tomatoes 100% of its classes" in page
    card = (env["home"] / "zoo" / "demo" / "minilm-rt-cased" / "README.md").read_text()
    assert card.strip().splitlines()[-1] in page
    assert "results: 1" in cli("model", "demo/resnet-digits")
    assert "card" not in store.db.models.find_one({"_id": "local/demo/minilm-rt-cased"})
    missing = CliRunner().invoke(main, ["model", "nope"])
    assert missing.exit_code != 0 and "no model 'nope'" in missing.output

    listed = rows(cli("datasets"))
    assert listed["digits"].split()[1] == "image-classification"
    assert listed["rotten_tomatoes"].split()[1] == "text-classification"
    assert listed["faces"].split()[1] == "object-detection"
