"""End to end from the Hub: `zooeval scrape --source huggingface` against the local Hub stand-in, then
`zooeval run` downloads and evaluates what it listed, with the unmodified huggingface_hub and transformers.

The repos are the fault tests' tiny trained text classifier (and broken copies of it) served over HTTP by
tests.hubserver. The commands run as child processes because huggingface_hub reads HF_ENDPOINT once, at
import. The stored accuracy must equal the model's own (computed with plain transformers when the repos
were built), the stored revision must be the commit sha the stand-in serves, the broken repos must be
failures of the right class (the malicious pickle never unpickled, the remote code never run), and a
second scrape + run must find nothing new to do.
"""
from __future__ import annotations

import os
import shutil

import pytest

from core.store import Store
from tests.cli_child import run_zooeval
from tests.fault_repos import DATASET, session_fault_zoo
from tests.hubserver import HubServer

REPOS = ["good", "pickle-ok", "corrupt", "remote-code", "pickle-evil"]


@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


def zooeval(*args: str, env: dict[str, str]) -> str:
    out = run_zooeval(args, env=env, timeout=600)
    assert out.returncode == 0, f"zooeval {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.mark.slow
def test_scrape_the_hub_then_evaluate_what_it_serves(fault_zoo, mongo_uri, db_name, tmp_path):
    root = tmp_path / "hub"
    for name in REPOS:
        shutil.copytree(fault_zoo["repos"][name], root / "org" / name)
    home = tmp_path / "home"
    shutil.copytree(fault_zoo["dataset_dir"], home / "datasets" / DATASET)
    with HubServer(root) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "ZOOEVAL_HOME": str(home),
               "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name, "HF_HUB_DISABLE_TELEMETRY": "1"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            env.pop(var, None)
        out = zooeval("scrape", "--source", "huggingface", "--no-progress", env=env)
        assert "new 5" in out, out
        out = zooeval("run", "--no-progress", "--batch-size", "16", env=env)
        served = {f"org/{n}": hub.folders.get(f"org/{n}").sha for n in REPOS}
        again = zooeval("scrape", "--source", "huggingface", "--no-progress", env=env)
        rerun = zooeval("run", "--no-progress", env=env)
        page = zooeval("model", "org/good", "--card", env=env)  # the card is fetched from the Hub, not stored
    card = (root / "org" / "good" / "README.md").read_text()
    assert "source: huggingface" in page and card.strip().splitlines()[-1] in page, page
    store = Store(mongo_uri, db_name)
    variants = store.datasets()[DATASET]["supported_variants"]
    models = {d["name"]: d for d in store.db.models.find({"source": "huggingface"})}
    assert set(models) == {f"org/{n}" for n in REPOS}
    for name in ("good", "pickle-ok"):
        res = {r["variant"]: r for r in store.iter_results({"model_name": f"org/{name}", "processor": "classification"})}
        assert sorted(res) == sorted(["original", *variants]), (name, out)
        r = res["original"]
        assert r["overall"]["accuracy"] == pytest.approx(fault_zoo["accuracy"], abs=1e-12)
        assert r["source"] == "huggingface" and r["model_revision"] == models[f"org/{name}"]["revision"]
        assert r["model_revision"] == served[f"org/{name}"]
    fails = {f["model_name"]: f for f in store.db.failures.find()}
    assert set(fails) == {"org/corrupt", "org/remote-code", "org/pickle-evil"}
    assert store.count("failures") == 3 * (1 + len(variants))
    assert fails["org/corrupt"]["error_class"] == "model_load"
    assert fails["org/remote-code"]["error_class"] == "unsafe_model"
    assert fails["org/pickle-evil"]["error_class"] == "unsafe_model"
    assert not fault_zoo["markers"]["pickle"].exists()
    assert not fault_zoo["markers"]["remote_code"].exists()
    # nothing new on the Hub: nothing to store, nothing to infer
    assert "new 0" in again and "changed 0" in again, again
    assert store.count("results") == store.count("inferences") == 2 * (1 + len(variants))
    assert "nothing to do: every result is already stored; no model was loaded" in rerun, rerun
    store.close()
