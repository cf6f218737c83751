"""Datasets from the Hugging Face Hub (scraper/hub_datasets.py) through the unmodified ``datasets`` library and the
local Hub stand-in (tests/hubserver.py), against the real mongod.

Each dataset repo is built here in the Hub's layout (parquet files written by ``datasets``, a README.md with
``configs`` and ``dataset_info``: tests/hub_dataset_repos.py) and served over HTTP. The adds run in child
processes because ``datasets`` and ``huggingface_hub`` read ``HF_ENDPOINT`` once, at import. What is registered
is compared with the parquet files read directly with pyarrow: classes (the schema's ClassLabel names), splits,
counts, texts, image pixels, scores; the revision with the commit sha the stand-in serves.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score

from core.data import LocalDataset
from core.identity import ORIGINAL_VARIANT, work_fingerprint
from core.store import Store
from tests import hub_dataset_repos as repos
from tests.fault_repos import CLASSES, session_fault_zoo
from tests.hubserver import HubServer

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_hubdatasets_test_token"
#: A child process that runs add_hub_dataset for each job line on stdin (with HF_TOKEN set as the job says) and
#: writes one answer line per job; everything the libraries print goes to its stderr.
WORKER = """
import json, os, sys
answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
from pathlib import Path
from core.data import DataError
from core.store import Store
from scraper.hub_datasets import add_hub_dataset
for line in sys.stdin:
    job = json.loads(line)
    os.environ.pop("HF_TOKEN", None)
    if job["token"]:
        os.environ["HF_TOKEN"] = job["token"]
    store = Store(job["uri"], job["db"])
    out = []
    for call in job["calls"]:
        lines = []
        try:
            out.append({"name": add_hub_dataset(store, Path(job["home"]), log=lines.append, **call), "log": lines})
        except DataError as exc:
            out.append({"error": str(exc), "log": lines})
    answers.write(json.dumps(out) + "\\n")
    answers.flush()
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    with HubServer(root) as server:
        server.root = root
        yield server


@pytest.fixture(scope="module")
def worker(hub, tmp_path_factory):
    """The add_hub_dataset child (datasets and huggingface_hub read HF_ENDPOINT once, at import), online, with its
    Hugging Face caches in a temporary folder."""
    tmp = tmp_path_factory.mktemp("hf-worker")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp / "hf-home"), "HF_DATASETS_CACHE": str(tmp / "hf-datasets"),
           "HF_DATASETS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
    for var in ("HF_HUB_OFFLINE", "HF_TOKEN", "TRANSFORMERS_OFFLINE"):
        env.pop(var, None)
    with open(tmp / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", WORKER], env=env, cwd=REPO_ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        yield {"proc": proc, "stderr": tmp / "stderr.txt"}
        proc.stdin.close()
        proc.wait(timeout=60)


@pytest.fixture
def ctx(hub, worker, mongo_uri, db_name, tmp_path):
    return {"hub": hub, "worker": worker, "home": tmp_path / "home", "uri": mongo_uri, "db": db_name,
            "store": Store(mongo_uri, db_name)}


def add(ctx: dict[str, Any], *calls: dict[str, Any], token: str | None = None, timeout: float = 300) -> list[dict[str, Any]]:
    """add_hub_dataset(**call) for each call, in the worker; each answer is {name, log} or {error, log}."""
    proc = ctx["worker"]["proc"]
    job = {"uri": ctx["uri"], "db": ctx["db"], "home": str(ctx["home"]), "calls": list(calls), "token": token}
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    assert line, f"no answer from the worker: {ctx['worker']['stderr'].read_text()[-3000:]}"
    return json.loads(line)


def parquet(hub: HubServer, repo: str, config: str, split: str) -> dict[str, Any]:
    """A split's columns and ClassLabel names, read straight from the served parquet file with pyarrow."""
    table = pq.read_table(hub.root / "datasets" / repo / config / f"{split}-00000-of-00001.parquet")
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    names = features.get("label", {}).get("names")
    return {"columns": table.to_pydict(), "names": names}


def labelled_counts(labels: list[int], names: list[str]) -> dict[str, int]:
    counts = Counter(names[y] for y in labels if y != -1)
    return {name: counts.get(name, 0) for name in names}


def test_stand_in_serves_dataset_repos_to_the_unmodified_client(hub, hub_online):
    """The routes HfApi and HfFileSystem use for a dataset repo: info, paths-info (POST), tree, ranged reads."""
    from huggingface_hub import HfApi, HfFileSystem
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    repos.write_repo(hub.root / "datasets" / "org" / "files", {"default": {"train": repos.sentiment_split(6, 4)}})
    parquet_file = hub.root / "datasets" / "org" / "files" / "data" / "train-00000-of-00001.parquet"
    data = parquet_file.read_bytes()
    api = HfApi(endpoint=hub.url, token=False)
    info = api.dataset_info("org/files")
    assert info.sha == hub.datasets.get("org/files").sha and info.id == "org/files"
    assert sorted(s.rfilename for s in info.siblings) == ["README.md", "data/train-00000-of-00001.parquet"]
    assert not list(api.list_models(search="files"))  # a dataset repo is not a model
    entries = api.get_paths_info("org/files", ["data", "README.md", "nope.txt"], repo_type="dataset", revision=info.sha)
    assert [(type(e), e.path) for e in entries] == [(RepoFolder, "data"), (RepoFile, "README.md")]
    tree = list(api.list_repo_tree("org/files", "data", repo_type="dataset"))
    assert [(e.path, e.size) for e in tree] == [("data/train-00000-of-00001.parquet", len(data))]
    fs = HfFileSystem(endpoint=hub.url, token=False)
    path = "datasets/org/files/data/train-00000-of-00001.parquet"
    assert fs.cat_file(path, start=5, end=25) == data[5:25]  # a closed range: bytes=5-24
    assert any(r.path.endswith(".parquet") and r.status == 206 for r in hub.requests)
    with fs.open(path, "rb", block_size=64) as fh:
        fh.seek(100)
        assert fh.read(200) == data[100:300]
    assert fs.cat_file(path) == data
    with pytest.raises(Exception, match="Revision Not Found|Invalid rev id"):
        api.dataset_info("org/files", revision="f" * 40)


def test_text_classification_dataset_revision_and_update(ctx):
    hub, store = ctx["hub"], ctx["store"]
    repo_dir = hub.root / "datasets" / "org" / "reviews"
    repos.write_repo(repo_dir, {"default": {"train": repos.sentiment_split(12, 0),
                                            "test": repos.sentiment_split(9, 1, unlabelled=1)}}, "Reviews")
    sha = hub.datasets.get("org/reviews").sha
    [res] = add(ctx, {"repo": "hf:org/reviews"})
    assert res.get("name") == "org/reviews", res
    doc = store.datasets()["org/reviews"]
    train, test = parquet(hub, "org/reviews", "data", "train"), parquet(hub, "org/reviews", "data", "test")
    assert doc["task"] == "text-classification" and [c["label"] for c in doc["classes"]] == train["names"] == repos.SENTIMENT
    assert {s["name"]: s["total"] for s in doc["splits"]} == {"train": 12, "test": 8}  # the -1 row is left out
    for split, data in (("train", train), ("test", test)):
        stored = next(s for s in doc["splits"] if s["name"] == split)
        assert stored["class_counts"] == labelled_counts(data["columns"]["label"], data["names"])
    folder = ctx["home"] / "datasets" / "hf" / "org__reviews"
    local = LocalDataset.open(folder)
    kept = [(t, y) for t, y in zip(test["columns"]["text"], test["columns"]["label"]) if y != -1]
    assert [(r["text"], r["label"]) for r in local.rows("test")] == kept
    assert doc["hub"]["revision"] == local.meta["hub"]["revision"] == sha and doc["path"] == str(folder.resolve())
    assert doc["revision"] == local.revision() and doc["description"] == "Reviews"  # the card's pretty_name
    assert "split 'test': 1 unlabelled row(s) left out" in "\n".join(res["log"])

    # the same repo and revision again: nothing is downloaded, nothing rewritten
    before = len(hub.requests)
    [again] = add(ctx, {"repo": "org/reviews"})
    assert again["name"] == "org/reviews" and "nothing to do" in again["log"][-1]
    assert not [r for r in hub.requests[before:] if r.path.endswith(".parquet")]
    assert store.datasets()["org/reviews"]["updated_at"] == doc["updated_at"]

    # a new commit (a changed file, so a new sha): the folder is replaced and the dataset's identity changes
    repos.write_repo(repo_dir, {"default": {"train": repos.sentiment_split(14, 2),
                                            "test": repos.sentiment_split(9, 1, unlabelled=1)}}, "Reviews")
    new_sha = hub.datasets.get("org/reviews").sha
    assert new_sha != sha
    [updated] = add(ctx, {"repo": "org/reviews"})
    assert updated["name"] == "org/reviews", updated
    new_doc = store.datasets()["org/reviews"]
    assert new_doc["hub"]["revision"] == new_sha and new_doc["revision"] != doc["revision"]
    assert {s["name"]: s["total"] for s in new_doc["splits"]} == {"train": 14, "test": 8}
    module = {"name": "hf-text-classification", "version": 1}
    old_id, new_id = ({"name": d["name"], "split": "test", "revision": d["revision"]} for d in (doc, new_doc))
    assert work_fingerprint(module, old_id, ORIGINAL_VARIANT) != work_fingerprint(module, new_id, ORIGINAL_VARIANT)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["org__reviews"]  # no temporary or old folder left


def test_image_dataset_split_by_split(ctx):
    hub, store = ctx["hub"], ctx["store"]
    repos.write_repo(hub.root / "datasets" / "org" / "digits",
                     {"default": {"train": repos.digits_split(list(range(30)), "img"),
                                  "test": repos.digits_split(list(range(30, 50)), "img")}})  # CIFAR's column name
    [test_only] = add(ctx, {"repo": "org/digits", "split": "test"})
    doc = store.datasets()["org/digits"]
    assert test_only["name"] == "org/digits" and [s["name"] for s in doc["splits"]] == ["test"]
    data = parquet(hub, "org/digits", "data", "test")
    assert doc["task"] == "image-classification" and [c["label"] for c in doc["classes"]] == data["names"]
    assert doc["splits"][0]["class_counts"] == labelled_counts(data["columns"]["label"], data["names"])
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    local = LocalDataset.open(doc["path"])
    for i, row in enumerate(local.rows("test")):
        assert row["file"].endswith(".png") and row["label"] == digits.target[30 + i]
        with Image.open(Path(doc["path"]) / row["file"]) as img:  # the served PNG bytes, pixel for pixel
            assert np.array_equal(np.asarray(img), repos.digit_pixels(digits.images[30 + i]))
    both, again = add(ctx, {"repo": "org/digits", "split": "train"}, {"repo": "org/digits", "split": "test"})
    assert both["name"] == "org/digits" and "nothing to do" in again["log"][-1]
    assert {s["name"]: s["total"] for s in store.datasets()["org/digits"]["splits"]} == {"test": 20, "train": 30}


def test_sentence_pair_configs(ctx):
    hub, store = ctx["hub"], ctx["store"]
    repos.write_repo(hub.root / "datasets" / "org" / "pairs",
                     {"sim": {"train": repos.similarity_split(10, 0), "validation": repos.similarity_split(6, 1)},
                      "nli": {"test": repos.nli_split(9, 2)}})
    sim, nli, neither = add(ctx, {"repo": "org/pairs", "config": "sim"}, {"repo": "org/pairs", "config": "nli"},
                            {"repo": "org/pairs"})
    assert sim["name"] == "org/pairs:sim" and nli["name"] == "org/pairs:nli", (sim, nli)
    docs = store.datasets()
    assert docs["org/pairs:sim"]["task"] == "sentence-similarity" and docs["org/pairs:sim"]["classes"] == []
    assert docs["org/pairs:nli"]["task"] == "text-pair-classification"
    assert [c["label"] for c in docs["org/pairs:nli"]["classes"]] == parquet(hub, "org/pairs", "nli", "test")["names"]
    valid = parquet(hub, "org/pairs", "sim", "validation")["columns"]
    rows = LocalDataset.open(docs["org/pairs:sim"]["path"]).rows("validation")
    assert [(r["text"], r["text_pair"], r["label"]) for r in rows] == list(zip(valid["sentence1"], valid["sentence2"],
                                                                              valid["label"]))
    assert Path(docs["org/pairs:sim"]["path"]).name == "org__pairs__sim"
    assert "Config name is missing" in neither["error"] and "nli" in neither["error"] and "sim" in neither["error"]


def test_columns_that_fit_no_task_kind(ctx):
    hub = ctx["hub"]
    from datasets import Dataset, Features, Value

    repos.write_repo(hub.root / "datasets" / "org" / "qa", {"default": {"train": repos.qa_split(4)}})
    int_labels = Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]},
                                   features=Features({"text": Value("string"), "label": Value("int64")}))
    repos.write_repo(hub.root / "datasets" / "org" / "unnamed-classes", {"default": {"train": int_labels}})
    qa, unnamed = add(ctx, {"repo": "org/qa"}, {"repo": "org/unnamed-classes"})
    assert "question (string), answers (" in qa["error"] and "label (int64)" in qa["error"], qa
    assert "fit no task kind" in qa["error"] and "'sentence1'/'sentence2'" in qa["error"]
    assert "not a ClassLabel" in unnamed["error"] and "text (string)" in unnamed["error"], unnamed
    assert ctx["store"].datasets() == {} and not (ctx["home"] / "datasets" / "hf" / "org__qa").exists()


def test_missing_private_gated_and_unknown_revision(ctx):
    hub, store = ctx["hub"], ctx["store"]
    for name, meta in (("secret", {"private": True, "tokens": [TOKEN]}), ("gated", {"gated": "auto", "tokens": [TOKEN]})):
        repos.write_repo(hub.root / "datasets" / "org" / name, {"default": {"test": repos.sentiment_split(4, 3)}})
        (hub.root / "datasets" / "org" / name / ".hubmeta.json").write_text(json.dumps(meta))
    missing, private, bad_revision, bad_split, gated = add(
        ctx, {"repo": "org/nope"}, {"repo": "org/secret"}, {"repo": "org/secret", "revision": "v9"},
        {"repo": "org/secret", "split": "test[:2]"}, {"repo": "org/gated"})
    assert missing["error"] == (f"no dataset repo 'org/nope' at {hub.url}: it does not exist, or it is private and "
                                "HF_TOKEN gives no access to it")
    assert private["error"] == missing["error"].replace("org/nope", "org/secret")  # private without access = missing
    assert "no dataset repo 'org/secret'" in bad_revision["error"] and "is not a split name" in bad_split["error"]
    assert "gated" in gated["error"], gated
    assert store.datasets() == {}
    with_token, unknown, gated = add(ctx, {"repo": "org/secret"}, {"repo": "org/secret", "revision": "v9"},
                                     {"repo": "org/gated"}, token=TOKEN)
    assert with_token["name"] == "org/secret" and store.datasets()["org/secret"]["splits"][0]["total"] == 4
    assert gated["name"] == "org/gated", gated
    assert unknown["error"].startswith("dataset repo 'org/secret' has no revision 'v9'"), unknown


@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


def test_hub_dataset_evaluated_end_to_end(ctx, fault_zoo, tmp_path, monkeypatch):
    """The fault tests' tiny real BERT sentiment model (trained on tinysent, its card says so) evaluated by
    `zooeval run` on tinysent published on the Hub: the stored predictions are the model's own (plain
    transformers), the accuracy equals scikit-learn's, and a new commit of the dataset makes the result stale."""
    from datasets import ClassLabel, Dataset, Features, Value

    from service.cli import main

    hub, store = ctx["hub"], ctx["store"]
    local = fault_zoo["dataset_dir"]
    shutil.copytree(fault_zoo["repos"]["good"], tmp_path / "zoo" / "fault" / "good")
    features = Features({"text": Value("string"), "label": ClassLabel(names=CLASSES)})
    splits = {s: Dataset.from_dict({k: [r[k] for r in LocalDataset.open(local).rows(s)] for k in ("text", "label")},
                                   features=features) for s in ("train", "test")}
    repos.write_repo(hub.root / "datasets" / "org" / "tinysent", {"default": splits})
    [added] = add(ctx, {"repo": "org/tinysent"})
    assert added["name"] == "org/tinysent", added
    for key, value in (("ZOOEVAL_HOME", ctx["home"]), ("ZOOEVAL_MONGO_URI", ctx["uri"]), ("ZOOEVAL_DB", ctx["db"])):
        monkeypatch.setenv(key, str(value))

    def cli(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    cli("scrape", "--source", "local", "--path", str(tmp_path / "zoo"))
    cli("run", "--no-progress", "--batch-size", "16")
    [result] = store.iter_results({"dataset": "org/tinysent", "processor": "classification"})
    doc = store.datasets()["org/tinysent"]
    assert result["model_name"] == "fault/good" and result["split"] == "test" and result["dataset_revision"] == doc["revision"]
    chunks = list(store.iter_predictions(result["inference_id"]))
    y_pred = np.concatenate([np.asarray(c["topk_labels"])[:, 0] for c in chunks])
    served = parquet(hub, "org/tinysent", "data", "test")["columns"]
    y_true = np.concatenate([c["y_true"] for c in chunks])
    assert y_true.tolist() == served["label"]
    assert served["text"] == [r["text"] for r in LocalDataset.open(local).rows("test")]
    assert y_pred.tolist() == fault_zoo["predictions"]  # what plain transformers predicts for the same texts
    assert result["overall"]["accuracy"] == pytest.approx(accuracy_score(served["label"], y_pred), abs=1e-12)
    assert result["overall"]["accuracy"] == pytest.approx(fault_zoo["accuracy"], abs=1e-12)
    assert "nothing to do: every result is already stored" in cli("run", "--no-progress")

    # a new commit of the dataset (the test split without its last row): its results are stale and redone
    splits["test"] = splits["test"].select(range(len(splits["test"]) - 1))
    repos.write_repo(hub.root / "datasets" / "org" / "tinysent", {"default": splits})
    [updated] = add(ctx, {"repo": "org/tinysent"})
    assert updated["name"] == "org/tinysent", updated
    cli("run", "--no-progress", "--batch-size", "16")
    new_doc = store.datasets()["org/tinysent"]
    results = {r["dataset_revision"]: r for r in store.iter_results({"dataset": "org/tinysent", "processor": "classification"})}
    assert sorted(results) == sorted([doc["revision"], new_doc["revision"]]) and new_doc["revision"] != doc["revision"]
    assert new_doc["hub"]["revision"] == hub.datasets.get("org/tinysent").sha
    newer = results[new_doc["revision"]]
    assert newer["overall"]["n"] == len(served["label"]) - 1
    assert newer["overall"]["accuracy"] == pytest.approx(accuracy_score(served["label"][:-1], y_pred[:-1]), abs=1e-12)
