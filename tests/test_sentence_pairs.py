"""Sentence-pair tasks end to end, added as new files only (tasks/sentence_pairs.py, modules/cross_encoder.py,
modules/sentence_embedding.py, processors/regression.py, processors/mcc.py, core/glue.py, demo/pair_*.py):
graded similarity (STS-B-style regression, Pearson / Spearman) and pair classification, on small honest sets
built from real Rotten Tomatoes snippets (demo/pair_sets.py), with two cross-encoders fine-tuned here from the
MiniLM body of a wheel, the real MiniLM sentence embedder scored by cosine, and a folder in the real GLUE STS-B
TSV layout. Stored predictions equal the models run directly; metrics equal scipy / scikit-learn; a processor
added later (mcc) costs no forward pass.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, matthews_corrcoef

from core.data import LocalDataset, write_dataset
from core.store import Store
from demo.pair_models import (
    build_pair_classifier,
    build_pair_regressor,
    cosine_scores,
    load_repo,
    minilm_embedder,
    predict_logits,
)
from demo.pair_sets import build_edit_overlap, build_edit_similarity, read_rotten_tomatoes
from demo.sources import minilm_dir
from tasks.sentence_pairs import SENTENCE_SIMILARITY
from tests.cli_child import run_zooeval

SIZES = {"train": 192, "test": 64}
EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
REGRESSOR, CLASSIFIER = "demo/minilm-rt-edit-similarity", "demo/minilm-rt-edit-overlap"
GLUE = "stsb-layout-fixture"


def zooeval(*args: str, env: dict[str, str]) -> str:
    out = run_zooeval(args, env=env, timeout=900)
    assert out.returncode == 0, f"zooeval {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def write_stsb_tsv(folder, rows) -> None:
    """A dev.tsv in the GLUE STS-B layout (its header and columns), holding rows of our own edit set."""
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]
    lines = ["\t".join(header)]
    for i, r in enumerate(rows):
        lines.append("\t".join([str(i), "rt", "rt-edit", "2004", str(i), "rt", "rt", r["text"], r["text_pair"],
                                f"{r['label']:.3f}"]))
    folder.mkdir(parents=True)
    (folder / "dev.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = {"name": GLUE, "task": "sentence-similarity", "format": "glue", "glue_task": "stsb", "splits": ["validation"],
            "description": "Rows of rt-edit-similarity written in the GLUE STS-B TSV layout (not STS-B data)."}
    (folder / "dataset.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def pair_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair-zoo")
    home, zoo = root / "home", root / "zoo"
    snippets = read_rotten_tomatoes()
    similarity, sim_meta = build_edit_similarity(snippets, SIZES)
    overlap, ovl_meta = build_edit_overlap(snippets, SIZES)
    write_dataset(home / "datasets" / sim_meta["name"], {**sim_meta, "classes": []}, similarity)
    write_dataset(home / "datasets" / ovl_meta["name"], ovl_meta, overlap)
    write_stsb_tsv(home / "datasets" / GLUE, similarity["test"][:24])
    quiet = dict(train_layers=1, epochs=1, log=lambda _: None)
    build_pair_regressor(similarity, sim_meta, zoo / REGRESSOR, **quiet)
    build_pair_classifier(overlap, ovl_meta, zoo / CLASSIFIER, **quiet)
    shutil.copytree(minilm_dir(), zoo / EMBEDDER)
    return {"home": home, "zoo": zoo, "similarity": similarity, "overlap": overlap}


def stored(store: Store, result: dict) -> dict:
    """A result's stored predictions, decoded by its task kind."""
    chunks = list(store.iter_predictions(result["inference_id"]))
    if result["task"] == SENTENCE_SIMILARITY.name:
        p = SENTENCE_SIMILARITY.decode(chunks)
        return {"ids": p.sample_ids, "y_true": p.y_true, "y_pred": p.y_pred}
    return {"ids": [i for c in chunks for i in c["sample_ids"]], "y_true": np.array([y for c in chunks for y in c["y_true"]]),
            "y_pred": np.array([row[0] for c in chunks for row in c["topk_labels"]])}


@pytest.mark.slow
def test_sentence_pair_tasks_end_to_end(pair_zoo, mongo_uri, db_name):
    env = {**os.environ, "ZOOEVAL_HOME": str(pair_zoo["home"]), "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    zooeval("scrape", "--source", "local", "--path", str(pair_zoo["zoo"]), env=env)
    # offline throughput only: the single-stream scenario's 32 batch-1 passes per task were two thirds of this run's
    # inference (the scenarios are tested in tests/test_runtime_scenarios.py); batches of 21 leave a last batch of
    # a single pair in each 64-pair task (64 = 3 x 21 + 1), the batch-1 input that scenario would have passed
    first = zooeval("run", "--no-progress", "--batch-size", "21", "--scenarios", "offline", env=env)
    rescore = zooeval("run", "--no-progress", "--processor", "mcc", env=env)
    shown = zooeval("results", REGRESSOR, env=env)
    store = Store(mongo_uri, db_name)
    try:
        assert store.count("failures") == 0, list(store.failures())
        results = {(r["model_name"], r["dataset"], r["variant"], r["processor"]): r for r in store.latest_results()}
        test_rows = pair_zoo["similarity"]["test"]
        truth = np.array([r["label"] for r in test_rows])

        # the regression cross-encoder: stored scores = the model run directly; metrics = scipy / sklearn
        r = results[(REGRESSOR, "rt-edit-similarity", "original", "regression")]
        p = stored(store, r)
        model, tokenizer = load_repo(pair_zoo["zoo"] / REGRESSOR)
        direct = predict_logits(model, tokenizer, test_rows)[:, 0]
        assert p["ids"] == [row["id"] for row in test_rows] and np.array_equal(p["y_true"], truth)
        np.testing.assert_allclose(p["y_pred"], direct, atol=1e-5)
        assert r["overall"]["pearson"] == pytest.approx(stats.pearsonr(truth, p["y_pred"]).statistic, abs=1e-12)
        assert r["overall"]["spearman"] == pytest.approx(stats.spearmanr(truth, p["y_pred"]).statistic, abs=1e-12)
        assert r["overall"]["mse"] == pytest.approx(np.mean((truth - p["y_pred"]) ** 2), abs=1e-12)
        assert r["label_mapping"] == {"method": "none", "why": "a similarity score has no labels to map"}

        # the MiniLM embedder by cosine, on our set and on the GLUE-layout folder: equal to sentence-transformers
        embedder = minilm_embedder()
        e = stored(store, results[(EMBEDDER, "rt-edit-similarity", "original", "regression")])
        np.testing.assert_allclose(e["y_pred"], cosine_scores(embedder, test_rows), atol=1e-5)
        g = results[(EMBEDDER, GLUE, "original", "regression")]
        glue_rows = test_rows[:24]
        np.testing.assert_allclose(stored(store, g)["y_pred"], cosine_scores(embedder, glue_rows), atol=1e-5)
        assert g["overall"]["n"] == 24 and stored(store, g)["ids"] == [str(i) for i in range(24)]
        # the embedder is general-purpose: evaluated on every similarity set; the cross-encoder only on its own
        assert {k[1] for k in results if k[0] == EMBEDDER} == {"rt-edit-similarity", GLUE}
        assert {k[1] for k in results if k[0] == REGRESSOR} == {"rt-edit-similarity"}

        # a text perturbation changes both texts of a pair
        typos = results[(REGRESSOR, "rt-edit-similarity", "typos", "regression")]
        variant_dir = next((pair_zoo["home"] / "variants" / "rt-edit-similarity").glob("typos-*"))
        perturbed = LocalDataset.open(variant_dir).rows("test")
        assert any(a["text"] != b["text"] for a, b in zip(perturbed, test_rows))
        assert any(a["text_pair"] != b["text_pair"] for a, b in zip(perturbed, test_rows))
        assert typos["overall"]["n"] == len(test_rows)

        # pair classification: accuracy of the stored top-1 = the model's argmax; mcc = scikit-learn's
        ovl_rows = pair_zoo["overlap"]["test"]
        c = results[(CLASSIFIER, "rt-edit-overlap", "original", "classification")]
        cp = stored(store, c)
        model, tokenizer = load_repo(pair_zoo["zoo"] / CLASSIFIER)
        assert list(cp["y_pred"]) == list(predict_logits(model, tokenizer, ovl_rows).argmax(axis=1))
        assert c["overall"]["accuracy"] == pytest.approx(accuracy_score(cp["y_true"], cp["y_pred"]), abs=1e-12)
        mcc = results[(CLASSIFIER, "rt-edit-overlap", "original", "mcc")]
        assert mcc["overall"]["mcc"] == pytest.approx(matthews_corrcoef(cp["y_true"], cp["y_pred"]), abs=1e-12)
        # ... added by the second run from the stored predictions: no model loaded, no forward pass
        assert "0 inference tasks" in rescore and "0 models loaded" in rescore, rescore
        assert "re-scored" in rescore and "nothing to do" not in rescore

        # zooeval results shows the task kind's columns
        assert "sentence-similarity:" in shown and "pearson" in shown and "spearman" in shown, shown
        assert f"{r['overall']['pearson']:.4f}" in shown
        assert "plan:" in first
    finally:
        store.close()
