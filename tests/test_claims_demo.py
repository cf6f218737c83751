"""A demo model's card: its deliberately wrong accuracy claim is contradicted by zooeval's measurement, and the
enriched card `zooeval card` writes for it reads back through huggingface_hub's ModelCard and metadata_load,
its own claims then confirmed by the measurements they came from."""
from __future__ import annotations

import shutil

import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import ModelCard, metadata_load

from cards.model_index import parse_claims
from cards.verdicts import judge_against_results
from core.store import Store
from scraper.repo_metadata import parse_card
from service.claims import DatasetMatcher
from service.cli import main

MODEL = "demo/minilm-rt-sentiment"
WRONG = [{"name": MODEL, "results": [{
    "task": {"type": "text-classification", "name": "Text Classification"},
    "dataset": {"type": "cornell-movie-review-data/rotten_tomatoes", "name": "Rotten Tomatoes", "split": "test"},
    "metrics": [{"type": "accuracy", "name": "Accuracy", "value": 0.95}]}]}]


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_a_demo_models_wrong_claim_and_its_enriched_card(env, tmp_path):
    zoo = tmp_path / "zoo"
    repo = zoo / MODEL
    shutil.copytree(env["home"] / "zoo" / MODEL, repo)  # a copy: the session's demo zoo stays as built
    meta, body, notes = parse_card((repo / "README.md").read_text())
    assert not notes
    meta["model-index"] = WRONG
    (repo / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + body)
    cli("scrape", "--source", "local", "--path", str(zoo))
    out = cli("run", "--no-progress", "--model", MODEL, "--variant", "original")
    assert "claims: 1 verdicts on the cards of 1 models updated" in out, out

    store = Store(env["uri"], env["db"])
    result = store.latest_results({"model_name": MODEL, "processor": "classification"})[0]
    assert result["dataset"] == "rotten_tomatoes" and result["variant"] == "original"
    [verdict] = store.verdicts({"model_name": MODEL})
    assert verdict["verdict"] == "contradicted" and verdict["measured"] == result["overall"]["accuracy"]
    assert verdict["interval"][1] < 0.95 and verdict["gap"] == pytest.approx(0.95 - result["overall"]["accuracy"])
    assert "contradicted" in cli("claims", "--model", "demo/*")

    card_path = tmp_path / "README.md"
    cli("card", MODEL, "-o", str(card_path))
    card = ModelCard.load(card_path)
    front = metadata_load(card_path)
    assert front == card.data.to_dict() and front["model-index"][0]["name"] == MODEL
    accuracy = next(e for e in card.data.eval_results if e.metric_type == "accuracy")
    assert accuracy.metric_value == result["overall"]["accuracy"] and accuracy.dataset_split == "test"
    assert accuracy.metric_args == {"variant": "original", "measured_by": "zooeval",
                                    "model_revision": result["model_revision"],
                                    "dataset_revision": result["dataset_revision"], "n": result["overall"]["n"]}
    assert "| accuracy | cornell-movie-review-data/rotten_tomatoes | test | 0.95 |" in card.text
    # zooeval's own card, read back as claims, is confirmed by the measurements it was made from
    claims = parse_claims(front)
    matcher = DatasetMatcher(store.datasets())
    results = store.latest_results({"model_name": MODEL})
    assert len(claims) == 5 and all(c.get("note") is None for c in claims)
    assert [judge_against_results(c, results, matcher.same)["verdict"] for c in claims] == ["confirmed"] * 5
    store.close()
