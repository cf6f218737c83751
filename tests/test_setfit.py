"""SetFit repos (sentence-transformers body + separate head) evaluated faithfully by modules.setfit.

The repos (tests/setfit_repos.py) are the real all-MiniLM-L6-v2 body with a scikit-learn LogisticRegression
head trained on its embeddings of Rotten Tomatoes snippets. The reference is SetFit itself: a
``setfit.SetFitModel`` built here from the same body and the same fitted head object (no file unpickled).
End to end, through the Hub stand-in and the CLI as child processes (as tests/test_hub_e2e.py): the stored
predictions equal SetFit's sample by sample, the pickle-head repo is an ``unsafe_model`` failure whose pickle
never ran, and a second evaluation of the same revision stores bit-identical metrics. In process: the other
head layouts (SetFit's torch head, multinomial and one-vs-rest logistic regression) against SetFit /
scikit-learn, and every refusal with its error class.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid

import numpy as np
import pytest
import torch

from core.store import Store
from modules.base import IncompleteWeightsError, ModelLoadError, UnsafeModelError
from modules.hf import HFTextClassification
from modules.setfit import SetFitTextClassification, choose_head, files_to_fetch, head_labels, parse_head
from tests.fault_repos import Evil
from tests.hubserver import HubServer
from tests.setfit_repos import (
    DATASET,
    LABELS,
    drop_normalize,
    embed,
    fit_logistic_regression,
    load_body,
    save_lr_head,
    session_setfit_zoo,
    write_pickle_head,
    write_repo,
)
from tests.test_hub_e2e import zooeval

MODULE = f"{SetFitTextClassification.kind}/{DATASET}"
VOLATILE = ("created_at", "run_id", "runtime", "env")  # result fields that differ between two runs by design


@pytest.fixture(scope="module")
def setfit_zoo(tmp_path_factory):
    return session_setfit_zoo(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(setfit_zoo):
    """SetFit's own class probabilities on the test snippets (SetFitModel.predict_proba) and predictions."""
    from setfit import SetFitModel

    ref = SetFitModel(model_body=setfit_zoo["body"], model_head=setfit_zoo["lr"], normalize_embeddings=True,
                      labels=LABELS)
    texts = [r["text"] for r in setfit_zoo["test_rows"]]
    proba = np.asarray(ref.predict_proba(texts, as_numpy=True), dtype=np.float64)
    return {"proba": proba, "labels": [ref.id2label[int(i)] for i in proba.argmax(1)]}


def _stored_predictions(store: Store, inference_id: str) -> dict[str, list]:
    out: dict[str, list] = {"sample_ids": [], "topk_labels": [], "topk_scores": []}
    for chunk in store.iter_predictions(inference_id):
        for key in out:
            out[key] += chunk[key]
    return out


def _scrape_and_run(env: dict[str, str]) -> tuple[str, str]:
    scraped = zooeval("scrape", "--source", "huggingface", "--no-progress", env=env)
    ran = zooeval("run", "--no-progress", "--batch-size", "32", env=env)
    return scraped, ran


@pytest.mark.slow
def test_setfit_from_the_hub_equals_setfit(setfit_zoo, reference, mongo_uri, db_name, tmp_path):
    root = tmp_path / "hub"
    shutil.copytree(setfit_zoo["zoo"], root)
    home = tmp_path / "home"
    shutil.copytree(setfit_zoo["dataset_dir"], home / "datasets" / DATASET)
    second_db = f"{db_name}_again"
    hf_home = tmp_path / "hf-home"
    try:
        with HubServer(root) as hub:
            env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home), "ZOOEVAL_HOME": str(home),
                   "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name, "HF_HUB_DISABLE_TELEMETRY": "1"}
            for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
                env.pop(var, None)
            scraped, ran = _scrape_and_run(env)
            served = {name: hub.folders.get(name).sha for name in ("org/setfit-rt", "org/setfit-rt-pickle")}
            # the same revision evaluated again from scratch, in a second database
            scraped_again, ran_again = _scrape_and_run({**env, "ZOOEVAL_DB": second_db})
        assert "new 2" in scraped and "new 2" in scraped_again, (scraped, scraped_again)

        store, again = Store(mongo_uri, db_name), Store(mongo_uri, second_db)
        models = {d["name"]: d for d in store.db.models.find({"source": "huggingface"})}
        assert {n: d["revision"] for n, d in models.items()} == served
        assert models["org/setfit-rt"]["library"] == "setfit" and "model_head.safetensors" in models["org/setfit-rt"]["files"]

        results = list(store.iter_results({"model_name": "org/setfit-rt"}))
        assert [(r["module"], r["variant"], r["processor"]) for r in results] == [(MODULE, "original", "classification")], ran
        result = results[0]
        assert result["model_revision"] == served["org/setfit-rt"]
        assert result["label_mapping"] is not None

        # stored predictions equal SetFit's, sample by sample (class order: the dataset's, = the labels')
        rows = setfit_zoo["test_rows"]
        stored = _stored_predictions(store, result["inference_id"])
        assert stored["sample_ids"] == [r["id"] for r in rows]
        proba = reference["proba"]
        for i, (labels, scores) in enumerate(zip(stored["topk_labels"], stored["topk_scores"])):
            assert [LABELS[c] for c in labels][0] == reference["labels"][i], rows[i]
            assert labels == np.argsort(-proba[i], kind="stable").tolist(), rows[i]
            # float32 embeddings and head, as SetFit computes them; only the summation order may differ
            assert scores == pytest.approx(proba[i][labels].tolist(), abs=1e-6), rows[i]
        y_true = np.array([r["label"] for r in rows])
        assert result["overall"]["accuracy"] == pytest.approx(float(np.mean(proba.argmax(1) == y_true)), abs=1e-12)
        assert result["overall"]["accuracy"] > 0.6  # a real classifier, not noise

        # the pickle head: refused before anything was unpickled (or even downloaded)
        fails = {f["model_name"]: f for f in store.db.failures.find()}
        assert set(fails) == {"org/setfit-rt-pickle"}, fails
        assert fails["org/setfit-rt-pickle"]["error_class"] == "unsafe_model"
        assert fails["org/setfit-rt-pickle"]["module"] == MODULE
        assert "model_head.pkl is a pickle" in fails["org/setfit-rt-pickle"]["reason"]
        assert not setfit_zoo["marker"].exists()
        assert not [p for p in hf_home.rglob("model_head.pkl")]
        # the Transformers module leaves SetFit repos alone (no random classification head)
        assert not [r for r in store.iter_results() if r["module"].startswith(HFTextClassification.kind)]

        # the second evaluation of the same revision: bit-identical results and predictions
        second = list(again.iter_results({"model_name": "org/setfit-rt"}))
        assert len(second) == 1 and second[0]["_id"] == result["_id"]
        assert {k: v for k, v in second[0].items() if k not in VOLATILE} == {k: v for k, v in result.items() if k not in VOLATILE}
        assert _stored_predictions(again, result["inference_id"]) == stored
        assert again.db.failures.find_one({"model_name": "org/setfit-rt-pickle"})["error_class"] == "unsafe_model"
        store.close()
        again.close()
    finally:
        Store(mongo_uri, second_db, init_schema=False).client.drop_database(second_db)


# -- in process: the head layouts ------------------------------------------------------------------
def _module() -> SetFitTextClassification:
    return SetFitTextClassification(dataset=DATASET)


def _probabilities(folder, texts: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    module = _module()
    loaded = module.load({"name": folder.name, "path": str(folder)}, "cpu")
    with torch.inference_mode():
        logits = module.forward(loaded, module.prepare(loaded, texts))
    return torch.softmax(logits.double(), dim=-1).numpy(), loaded.id2label


def _new_repo(tmp_path, setfit_zoo, config: dict | None = None):
    name = f"setfit-{uuid.uuid4().hex[:6]}"
    return write_repo(tmp_path / name, f"org/{name}", "A test variant.", config)


def _test_texts(setfit_zoo, n: int = 48) -> list[str]:
    return [r["text"] for r in setfit_zoo["test_rows"][:n]]


@pytest.mark.parametrize("container", ["safetensors", "torch"])
def test_setfit_torch_head_equals_setfit(setfit_zoo, tmp_path, container):
    """SetFit's differentiable head (SetFitHead, temperature 0.5) as a state dict gives SetFit's probabilities."""
    from safetensors.torch import save_file
    from setfit import SetFitHead, SetFitModel

    torch.manual_seed(0)
    head = SetFitHead(in_features=setfit_zoo["x_train"].shape[1], out_features=2, temperature=0.5, device="cpu")
    x = torch.from_numpy(setfit_zoo["x_train"])
    y = torch.tensor([r["label"] for r in setfit_zoo["train_rows"]])
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(x)[0], y).backward()
        opt.step()
    head.eval()
    repo = _new_repo(tmp_path, setfit_zoo)
    state = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    assert set(state) == {"linear.weight", "linear.bias"}
    if container == "safetensors":
        save_file(state, str(repo / "model_head.safetensors"), metadata={"temperature": "0.5"})
    else:
        torch.save({**state, "temperature": 0.5}, str(repo / "model_head.pt"))
    texts = _test_texts(setfit_zoo)
    proba, id2label = _probabilities(repo, texts)
    ref = SetFitModel(model_body=setfit_zoo["body"], model_head=head, normalize_embeddings=True, labels=LABELS)
    expected = ref.predict_proba(texts, as_numpy=True)
    assert id2label == dict(enumerate(LABELS))
    assert np.array_equal(proba.argmax(1), expected.argmax(1))
    assert proba == pytest.approx(expected, abs=1e-6)
    assert proba.max(1).mean() > 0.5 and not np.allclose(proba, 0.5)


def test_multinomial_and_one_vs_rest_heads_equal_scikit_learn(setfit_zoo, tmp_path):
    """Three classes: a multinomial LogisticRegression (classes_ not in label order) and a one-vs-rest one,
    each against scikit-learn's predict_proba on the same embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    labels3 = ["rotten", "short", "fresh"]
    texts = [r["text"] for r in setfit_zoo["train_rows"]]
    # a real three-way target: short snippets, else the sentiment; class ids 2 / 0 / 1 as they come
    y = [1 if len(t) < 70 else (2 if r["label"] == 1 else 0) for t, r in zip(texts, setfit_zoo["train_rows"])]
    x = setfit_zoo["x_train"]
    test_texts = _test_texts(setfit_zoo)
    x_test = embed(setfit_zoo["body"], test_texts)

    lr = fit_logistic_regression(x, y)
    assert lr.coef_.shape == (3, x.shape[1])
    # a body without its Normalize module: the unit vectors come from normalize_embeddings
    repo = drop_normalize(_new_repo(tmp_path, setfit_zoo, {"labels": labels3, "normalize_embeddings": True}))
    save_lr_head(lr, repo / "model_head.safetensors")
    proba, id2label = _probabilities(repo, test_texts)
    assert id2label == {i: labels3[c] for i, c in enumerate(lr.classes_)}
    assert proba == pytest.approx(lr.predict_proba(x_test), abs=1e-6)

    ovr = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(x, y)
    repo = _new_repo(tmp_path, setfit_zoo, {"labels": labels3, "normalize_embeddings": True})
    from safetensors.torch import save_file

    save_file({"coef_": torch.from_numpy(np.vstack([e.coef_ for e in ovr.estimators_])),
               "intercept_": torch.from_numpy(np.concatenate([e.intercept_ for e in ovr.estimators_])),
               "classes_": torch.from_numpy(ovr.classes_.astype(np.int64))},
              str(repo / "model_head.safetensors"), metadata={"multi_class": "ovr"})
    proba, _ = _probabilities(repo, test_texts)
    assert proba == pytest.approx(ovr.predict_proba(x_test), abs=1e-6)
    assert not np.allclose(proba, lr.predict_proba(x_test), atol=1e-3)  # the two rules really differ


def test_binary_head_without_config_gets_generic_labels(setfit_zoo, tmp_path):
    """No config_setfit.json: SetFit's defaults (embeddings not normalised, no label names) -> LABEL_i."""
    repo = drop_normalize(_new_repo(tmp_path, setfit_zoo))
    (repo / "config_setfit.json").unlink()
    body = load_body(repo)
    train = setfit_zoo["train_rows"][:96]
    raw = embed(body, [r["text"] for r in train], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)  # raw vectors: normalising would matter
    lr = fit_logistic_regression(raw, [r["label"] for r in train])
    save_lr_head(lr, repo / "model_head.safetensors", with_classes=False)
    texts = _test_texts(setfit_zoo, 16)
    proba, id2label = _probabilities(repo, texts)
    assert id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert proba == pytest.approx(lr.predict_proba(embed(body, texts, normalize=False)), abs=1e-6)


# -- in process: refusals --------------------------------------------------------------------------
def _load_error(folder) -> ModelLoadError:
    with pytest.raises(ModelLoadError) as info:
        _module().load({"name": f"org/{folder.name}", "path": str(folder)}, "cpu")
    return info.value


def test_pickles_are_never_unpickled(setfit_zoo, tmp_path):
    from safetensors.torch import load_file

    marker = tmp_path / "pickle-ran"
    only_pkl = _new_repo(tmp_path, setfit_zoo)
    write_pickle_head(only_pkl / "model_head.pkl", marker)
    err = _load_error(only_pkl)
    assert isinstance(err, UnsafeModelError) and err.error_class == "unsafe_model"
    assert "model_head.pkl is a pickle (joblib)" in str(err) and "safetensors" in str(err)

    evil_pt = _new_repo(tmp_path, setfit_zoo)
    torch.save({"linear.weight": torch.zeros(2, 384), "_evil": Evil(str(marker))}, str(evil_pt / "model_head.pt"))
    err = _load_error(evil_pt)
    assert isinstance(err, UnsafeModelError) and "model_head.pt" in str(err)
    assert not marker.exists()

    # a body whose only checkpoint is a malicious pickle
    evil_body = _new_repo(tmp_path, setfit_zoo)
    save_lr_head(setfit_zoo["lr"], evil_body / "model_head.safetensors")
    state = load_file(str(evil_body / "model.safetensors"))
    (evil_body / "model.safetensors").unlink()
    torch.save({**state, "_evil": Evil(str(marker))}, str(evil_body / "pytorch_model.bin"))
    err = _load_error(evil_body)
    assert isinstance(err, UnsafeModelError) and "pytorch_model.bin" in str(err)
    assert not marker.exists()

    # a safe head beside the pickle one: the safe one is used, the pickle never opened
    both = _new_repo(tmp_path, setfit_zoo)
    write_pickle_head(both / "model_head.pkl", marker)
    save_lr_head(setfit_zoo["lr"], both / "model_head.safetensors")
    proba, _ = _probabilities(both, _test_texts(setfit_zoo, 8))
    assert proba.shape == (8, 2)
    assert not marker.exists()


def test_custom_module_code_is_refused(setfit_zoo, tmp_path):
    marker = tmp_path / "module-code-ran"
    repo = _new_repo(tmp_path, setfit_zoo)
    save_lr_head(setfit_zoo["lr"], repo / "model_head.safetensors")
    modules = json.loads((repo / "modules.json").read_text())
    modules[1]["type"] = "custom_pooling.EvilPooling"
    (repo / "modules.json").write_text(json.dumps(modules))
    (repo / "custom_pooling.py").write_text(f"open({str(marker)!r}, 'w')\nEvilPooling = object\n")
    err = _load_error(repo)
    assert isinstance(err, UnsafeModelError) and "custom_pooling.EvilPooling" in str(err)
    assert not marker.exists()


def test_incomplete_or_mismatched_models_are_refused(setfit_zoo, tmp_path):
    from safetensors.torch import load_file, save_file

    no_head = _new_repo(tmp_path, setfit_zoo)
    err = _load_error(no_head)
    assert isinstance(err, IncompleteWeightsError) and err.error_class == "incomplete_weights"
    assert "no SetFit classification head" in str(err)

    missing = _new_repo(tmp_path, setfit_zoo)
    save_lr_head(setfit_zoo["lr"], missing / "model_head.safetensors")
    state = load_file(str(missing / "model.safetensors"))
    dropped = "encoder.layer.0.attention.self.query.weight"
    assert dropped in state
    del state[dropped]
    save_file(state, str(missing / "model.safetensors"), metadata={"format": "pt"})
    err = _load_error(missing)
    assert isinstance(err, IncompleteWeightsError) and dropped in str(err)

    wrong_dim = _new_repo(tmp_path, setfit_zoo)
    save_file({"coef_": torch.ones(1, 100, dtype=torch.float64), "intercept_": torch.zeros(1, dtype=torch.float64)},
              str(wrong_dim / "model_head.safetensors"))
    err = _load_error(wrong_dim)
    assert type(err) is ModelLoadError and "100-dimensional" in str(err) and "384-dimensional" in str(err)

    wrong_count = _new_repo(tmp_path, setfit_zoo)
    save_file({"linear.weight": torch.ones(3, 384), "linear.bias": torch.zeros(3)}, str(wrong_count / "model_head.safetensors"))
    err = _load_error(wrong_count)
    assert type(err) is ModelLoadError and "3 outputs" in str(err) and "2 labels" in str(err)

    unknown = _new_repo(tmp_path, setfit_zoo)
    save_file({"weights": torch.ones(2, 384)}, str(unknown / "model_head.safetensors"))
    err = _load_error(unknown)
    assert type(err) is ModelLoadError and "no known head layout" in str(err) and "coef_" in str(err)


def test_head_layout_rules():
    """Label columns, binary heads, and the head files that are refused, on hand-made tensors."""
    f64 = torch.float64
    subset = parse_head("m", "h", {"coef_": torch.ones(2, 4, dtype=f64), "intercept_": torch.zeros(2, dtype=f64),
                                   "classes_": torch.tensor([2, 0])}, {})
    assert head_labels("m", subset, ["a", "b", "c"], 4) == {0: "c", 1: "a"}  # a head that never predicts "b"
    assert head_labels("m", subset, None, 4) == {0: "LABEL_2", 1: "LABEL_0"}
    with pytest.raises(ModelLoadError, match=r"classes_ \[2\] are not indices"):
        head_labels("m", subset, ["a", "b"], 4)
    binary = parse_head("m", "h", {"coef_": torch.tensor([[1.0, -1.0]], dtype=f64),
                                   "intercept_": torch.tensor([0.5], dtype=f64)}, {})
    logits = binary.logits(torch.tensor([[2.0, 1.0]]))
    assert logits.tolist() == [[0.0, 1.5]]  # softmax = [1 - sigmoid(1.5), sigmoid(1.5)], scikit-learn's binary rule
    assert head_labels("m", binary, ["no", "yes"], 2) == {0: "no", 1: "yes"}
    setfit_head = parse_head("m", "h", {"linear.weight": torch.eye(2)}, {"temperature": "2.0"})
    assert setfit_head.logits(torch.tensor([[1.0, 3.0]]))[0].tolist() == pytest.approx([1 / (2 + 1e-5), 3 / (2 + 1e-5)])
    for tensors, settings, message in [
        ({"linear.weight": torch.ones(2, 4)}, {"multitarget": "true"}, "multi-target"),
        ({"coef_": torch.ones(3, 4)}, {"multi_class": "auto"}, "multi_class 'auto'"),
        ({"coef_": torch.ones(1, 4), "classes_": torch.tensor([0, 0])}, {}, "distinct"),
        ({"coef_": torch.ones(1, 4), "linear.bias": torch.ones(1)}, {}, "no known head layout"),
        ({"coef_": torch.ones(4)}, {}, "2-d float tensor"),
        ({"coef_": torch.ones(2, 4), "intercept_": torch.ones(3)}, {}, r"shape \(2,\)"),
    ]:
        with pytest.raises(ModelLoadError, match=message):
            parse_head("m", "h", tensors, settings)


def test_only_the_files_a_load_reads_are_downloaded():
    files = ["README.md", "config.json", "model.safetensors", "pytorch_model.bin", "model_head.pkl", "tokenizer.json",
             "model_head.safetensors", "1_Pooling/config.json", "2_Dense/pytorch_model.bin", "onnx/model.onnx",
             "tf_model.h5", "config_setfit.json"]
    assert choose_head({"name": "x"}, files) == "model_head.safetensors"
    assert files_to_fetch(files, "model_head.safetensors") == [
        "README.md", "config.json", "model.safetensors", "tokenizer.json", "model_head.safetensors",
        "1_Pooling/config.json", "2_Dense/pytorch_model.bin", "config_setfit.json"]
    # a pickle body checkpoint is fetched when it is the only one (and read with weights_only=True)
    assert "pytorch_model.bin" in files_to_fetch(["config.json", "pytorch_model.bin", "model_head.safetensors"],
                                                 "model_head.safetensors")
    assert choose_head({"name": "x"}, ["model_head.pkl", "model_head.pt"]) == "model_head.pt"


def test_only_setfit_repos_are_accepted():
    datasets = {DATASET: {"compatible_with": []}}
    base = {"source": "huggingface", "task": "text-classification", "datasets": [DATASET], "config": {}}
    setfit_doc = {**base, "library": "setfit", "files": {"model.safetensors": 1, "model_head.pkl": 1}}
    plain = {**base, "library": "transformers", "files": {"model.safetensors": 1}}
    assert _module().accepts(setfit_doc, datasets)
    assert not _module().accepts(plain, datasets)
    assert not _module().accepts({**setfit_doc, "datasets": ["imdb"]}, datasets)
    assert not HFTextClassification(dataset=DATASET).accepts(setfit_doc, datasets)
