"""A plug-in package extends zooeval with no edit to zooeval: tests/plugin_example (its own pyproject.toml) is
built into a folder of its own, never into zooeval's environment, and registers through entry points a text
perturbation ("shout"), a default processor for text classification ("plugin_mcc", the Matthews correlation
coefficient) and a module kind ("plugin-text-classification", not default: it runs where a dataset names it).

zooeval runs as child processes (`scrape --source local`, `run`, `results`) on the fault tests' tinysent dataset
(its dataset.json naming the plug-in's variant and module) and tiny trained BERT; with PYTHONPATH pointing at the
plug-in's folder they see the plug-in, without it the same commands know nothing of it (the unknown variant and
module kind are reported, not a crash). The plug-in's numbers are checked against plain transformers and
scikit-learn run on the stored predictions.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, matthews_corrcoef

from core.store import Store
from tests.cli_child import run_zooeval
from tests.fault_repos import DATASET, predict, session_fault_zoo

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = Path(__file__).resolve().parent / "plugin_example"
VARIANT, PROCESSOR, MODULE_KIND = "shout", "plugin_mcc", "plugin-text-classification"
MODEL = "fault/good"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The plug-in installed into a folder of its own (offline: no index, no build isolation, no dependencies)."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(PLUGIN_SOURCE, tmp / "source")  # the build writes build/ and *.egg-info beside it
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "--target", str(tmp / "site"), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"building the plug-in failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert (tmp / "site" / "zooeval_plugin_example").is_dir()
    return tmp / "site"


def zooeval(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``python -m service.cli ARGS``; it must succeed. Returns the process (stdout and stderr)."""
    out = run_zooeval(args, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, f"zooeval {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def cycle(root: Path, fault_zoo: dict, mongo_uri: str, plugin_site: Path | None) -> dict:
    """A home with tinysent (naming the plug-in's variant and module kind) and a zoo with the good model; then
    scrape, run and results, with the plug-in on the children's path or not. Returns the outputs and the store."""
    home, zoo = root / "home", root / "zoo"
    dataset_dir = shutil.copytree(fault_zoo["dataset_dir"], home / "datasets" / DATASET)
    meta = json.loads((dataset_dir / "dataset.json").read_text())
    meta.update(supported_variants=[VARIANT], modules=[MODULE_KIND])
    (dataset_dir / "dataset.json").write_text(json.dumps(meta, indent=2))
    shutil.copytree(fault_zoo["repos"]["good"], zoo / MODEL)
    db = "zt_" + uuid.uuid4().hex[:10]
    env = {**os.environ, "ZOOEVAL_HOME": str(home), "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    if plugin_site is not None:
        env["PYTHONPATH"] = str(plugin_site)
    out = {"home": home, "dataset_dir": dataset_dir, "store": Store(mongo_uri, db)}
    for step, args in (("scrape", ("scrape", "--source", "local", "--path", str(zoo))),
                       ("run", ("run", "--no-progress", "--batch-size", "16")),
                       ("results", ("results", MODEL))):
        out[step] = zooeval(*args, env=env)
    return out


@pytest.fixture(scope="module")
def with_plugin(tmp_path_factory, fault_zoo, mongo_uri, plugin_site):
    out = cycle(tmp_path_factory.mktemp("with-plugin"), fault_zoo, mongo_uri, plugin_site)
    yield out
    out["store"].client.drop_database(out["store"].db_name)
    out["store"].close()


@pytest.fixture(scope="module")
def without_plugin(tmp_path_factory, fault_zoo, mongo_uri):
    out = cycle(tmp_path_factory.mktemp("without-plugin"), fault_zoo, mongo_uri, None)
    yield out
    out["store"].client.drop_database(out["store"].db_name)
    out["store"].close()


def stored_predictions(store: Store, inference_id: str) -> dict:
    """An inference's stored chunks read straight from the store (not through zooeval's decoder)."""
    chunks = list(store.iter_predictions(inference_id))
    assert chunks, f"no stored predictions for inference {inference_id}"
    return {"sample_ids": [i for c in chunks for i in c["sample_ids"]],
            "y_true": np.array([y for c in chunks for y in c["y_true"]]),
            "topk_labels": np.array([row for c in chunks for row in c["topk_labels"]]),
            "topk_scores": np.array([row for c in chunks for row in c["topk_scores"]])}


def test_plugin_variant_is_built_and_evaluated(with_plugin, fault_zoo):
    """The shout variant is built into the variant cache as the plug-in's transform says, and every text module
    evaluated on it predicts what plain transformers predicts for the shouted texts."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = [json.loads(line) for line in (with_plugin["dataset_dir"] / "test.jsonl").read_text().splitlines() if line]
    built = sorted((with_plugin["home"] / "variants" / DATASET).glob(f"{VARIANT}-*/test.jsonl"))
    assert len(built) == 1, built
    shouted = [json.loads(line) for line in built[0].read_text().splitlines() if line]
    assert [(r["id"], r["label"], r["text"]) for r in shouted] == [(r["id"], r["label"], r["text"].upper() + "!") for r in rows]

    good = fault_zoo["repos"]["good"]
    model = AutoModelForSequenceClassification.from_pretrained(good, use_safetensors=True).eval()
    expected = predict(model, AutoTokenizer.from_pretrained(good), [r["text"] for r in shouted])
    store = with_plugin["store"]
    results = list(store.iter_results({"variant": VARIANT, "processor": "classification"}))
    assert f"hf-text-classification/{DATASET}" in {r["module"] for r in results}
    for r in results:
        stored = stored_predictions(store, r["inference_id"])
        assert stored["sample_ids"] == [r["id"] for r in shouted]
        assert stored["topk_labels"][:, 0].tolist() == expected, r["module"]
        assert r["overall"]["accuracy"] == accuracy_score([r["label"] for r in shouted], expected)
        # the model is uncased, so only the "!" (an unknown token) changes its input: the same classes, and
        # probabilities that differ only in the last digits
        original = store.db.results.find_one({"module": r["module"], "variant": "original", "processor": "classification"})
        assert not np.array_equal(stored_predictions(store, original["inference_id"])["topk_scores"], stored["topk_scores"])


def test_plugin_processor_scores_every_text_task(with_plugin):
    """The plug-in's default processor stored a result for every task of the text modules (each module and
    variant), equal to scikit-learn's matthews_corrcoef on the stored top-1 predictions."""
    store = with_plugin["store"]
    tasks = {(r["module"], r["variant"]) for r in store.iter_results({"processor": "classification"})}
    assert {(f"hf-text-classification/{DATASET}", v) for v in ("original", VARIANT)} <= tasks
    mcc = list(store.iter_results({"processor": PROCESSOR}))
    assert {(r["module"], r["variant"]) for r in mcc} == tasks and len(mcc) == len(tasks)
    for r in mcc:
        stored = stored_predictions(store, r["inference_id"])
        expected = matthews_corrcoef(stored["y_true"], stored["topk_labels"][:, 0])
        assert 0 < expected < 1  # the model is good, not perfect (tinysent has annotator noise)
        assert r["overall"] == {"n": len(stored["y_true"]), "mcc": pytest.approx(expected, abs=1e-12)}


def test_plugin_module_runs_where_the_dataset_names_it(with_plugin, fault_zoo):
    """The plug-in's module kind (not default) runs on tinysent because its dataset.json names it; as it is
    zooeval's Transformers classifier under another kind, its stored predictions equal the built-in module's,
    and its original accuracy the model's own (plain transformers)."""
    store = with_plugin["store"]
    assert store.datasets()[DATASET].get("modules") == [MODULE_KIND]
    for variant in ("original", VARIANT):
        by_module = {r["module"]: r for r in store.iter_results({"variant": variant, "processor": "classification"})}
        ours, builtin = by_module[f"{MODULE_KIND}/{DATASET}"], by_module[f"hf-text-classification/{DATASET}"]
        assert ours["inference_id"] != builtin["inference_id"]
        a, b = stored_predictions(store, ours["inference_id"]), stored_predictions(store, builtin["inference_id"])
        assert a["sample_ids"] == b["sample_ids"] and np.array_equal(a["topk_labels"], b["topk_labels"])
        np.testing.assert_allclose(a["topk_scores"], b["topk_scores"], rtol=0, atol=1e-6)
        if variant == "original":
            assert ours["overall"]["accuracy"] == pytest.approx(fault_zoo["accuracy"], abs=1e-12)
            assert a["topk_labels"][:, 0].tolist() == fault_zoo["predictions"]
    assert not store.failures(), [(f["module"], f["reason"]) for f in store.failures()]


def test_results_command_shows_the_plugin(with_plugin):
    """`zooeval results` lists the shout variant's results and the mcc processor's number of each task."""
    out, store = with_plugin["results"].stdout, with_plugin["store"]
    assert f"{MODEL} (local" in out and f"{store.count('results')} results" in out, out
    shout_rows = [line for line in out.splitlines() if f" {VARIANT} " in line]
    assert len(shout_rows) == store.count("results", {"variant": VARIANT}) >= 2, out
    mcc = list(store.iter_results({"processor": PROCESSOR}))
    assert len([line for line in out.splitlines() if f" {PROCESSOR} " in line]) == len(mcc) >= 2, out
    for r in mcc:
        assert f"mcc={r['overall']['mcc']:.4f}" in out, out


def test_without_the_plugin_nothing_of_it_is_known(without_plugin):
    """The same commands without the plug-in on the path: the unknown variant is reported, no variant is built,
    no result of the plug-in is stored, and every command succeeds."""
    store = without_plugin["store"]
    run = without_plugin["run"]
    assert f"unknown perturbation '{VARIANT}'" in run.stdout, run.stdout
    assert not (without_plugin["home"] / "variants" / DATASET).exists() or not list(
        (without_plugin["home"] / "variants" / DATASET).glob(f"{VARIANT}-*"))
    assert store.count("results", {"variant": VARIANT}) == 0
    assert store.count("results", {"processor": PROCESSOR}) == 0
    assert store.count("results", {"module": {"$regex": f"^{MODULE_KIND}/"}}) == 0
    assert store.count("inferences", {"module": {"$regex": f"^{MODULE_KIND}/"}}) == 0
    assert store.get_model(MODEL) is not None and store.datasets()[DATASET]["supported_variants"] == [VARIANT]
    assert VARIANT not in without_plugin["results"].stdout and "mcc" not in without_plugin["results"].stdout


def test_without_the_plugin_its_module_kind_is_reported(without_plugin):
    """A dataset naming a module kind that is not installed gets a warning naming it (in the run's output and its
    log file), not a crash."""
    run = without_plugin["run"]
    assert f"names module kind '{MODULE_KIND}', which is not installed" in run.stdout, run.stdout
    logs = "".join(p.read_text() for p in (without_plugin["home"] / "logs").glob("run-*.log"))
    assert f"names module kind '{MODULE_KIND}', which is not installed" in logs
