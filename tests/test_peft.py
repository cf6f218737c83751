"""PEFT / LoRA adapters: scraped with their base pinned, evaluated on their base with peft, or refused with
a reason that starts with "PEFT adapter: ".

End to end (child processes, like tests/test_hub_e2e.py): `zooeval scrape --source huggingface` against the
local Hub stand-in and `zooeval scrape --source local` over the same repos in a folder, then one
`zooeval run`. The adapter's stored predictions must equal peft's own (PeftModel on the base, run here),
sample by sample, from both sources; its identity must carry the base's revision; the base must be
evaluated as a model of its own with its own numbers; an adapter whose base exists nowhere and one whose
base lacks the head it does not supply must be stored failures with the reason.
The unit tests load adapters from folders with the module directly (no Hub, no database).
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from core import identity as ident
from core.fingerprint import folder_state
from core.store import Store
from modules.base import IncompleteWeightsError, ModelLoadError
from modules.peft_adapter import PeftTextClassification
from scraper.adapters import attach_local_adapters, hub_adapter
from tests.cli_child import run_zooeval
from tests.fault_repos import DATASET, session_fault_zoo
from tests.hubserver import HubServer
from tests.peft_repos import (
    BARE,
    BASE,
    LORA,
    MISSING_BASE,
    NO_HEAD,
    NO_SUCH_BASE,
    build_peft_zoo,
    peft_probabilities,
    plain_probabilities,
)


@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


@pytest.fixture(scope="module")
def peft_zoo(fault_zoo, tmp_path_factory):
    root = tmp_path_factory.mktemp("peft-zoo")
    return {"root": root, "repos": build_peft_zoo(root, fault_zoo)}


def zooeval(*args: str, env: dict[str, str]) -> str:
    out = run_zooeval(args, env=env, timeout=600)
    assert out.returncode == 0, f"zooeval {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _test_split(dataset_dir) -> tuple[list[str], list[str], np.ndarray]:
    """tinysent's test split: sample ids, texts, labels."""
    with open(dataset_dir / "test.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [str(r["id"]) for r in rows], [r["text"] for r in rows], np.array([int(r["label"]) for r in rows])


def _stored_probabilities(store: Store, inference_id: str, n_classes: int) -> tuple[list[str], np.ndarray]:
    """Sample ids and each sample's class probabilities, rebuilt from the stored top-k."""
    ids, rows = [], []
    for chunk in store.iter_predictions(inference_id):
        for sid, labels, scores in zip(chunk["sample_ids"], chunk["topk_labels"], chunk["topk_scores"]):
            probs = np.zeros(n_classes)
            probs[labels] = scores
            ids.append(sid)
            rows.append(probs)
    return ids, np.array(rows)


def _original_inference(store: Store, source: str, name: str) -> dict:
    docs = list(store.db.inferences.find({"source": source, "model_name": name, "variant": "original"}))
    assert len(docs) == 1, (source, name, docs)
    return docs[0]


def _recomputed_inference_id(model: dict, inference: dict) -> str:
    """The inference id from a stored model document and the stored record's own identity fields."""
    work = ident.work_fingerprint({"name": inference["module"], "version": inference["module_version"]},
                                  {"name": inference["dataset"], "split": inference["split"],
                                   "revision": inference["dataset_revision"]},
                                  dict(ident.ORIGINAL_VARIANT))
    return ident.inference_id(ident.model_fingerprint(model), work)


@pytest.mark.slow
def test_adapters_from_the_hub_and_a_local_folder_end_to_end(peft_zoo, fault_zoo, mongo_uri, db_name, tmp_path):
    root, repos = peft_zoo["root"], peft_zoo["repos"]
    home = tmp_path / "home"
    shutil.copytree(fault_zoo["dataset_dir"], home / "datasets" / DATASET)
    with HubServer(root) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "ZOOEVAL_HOME": str(home),
               "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name, "HF_HUB_DISABLE_TELEMETRY": "1"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            env.pop(var, None)
        zooeval("scrape", "--source", "huggingface", "--no-progress", env=env)
        zooeval("scrape", "--source", "local", "--path", str(root), env=env)
        out = zooeval("run", "--no-progress", "--batch-size", "16", env=env)
        served = {name: hub.folders.get(name).sha for name in repos}
    store = Store(mongo_uri, db_name)
    variants = store.datasets()[DATASET]["supported_variants"]
    models = {(d["source"], d["name"]): d for d in store.db.models.find()}
    sample_ids, texts, labels = _test_split(fault_zoo["dataset_dir"])

    # the scrapers pinned each adapter's base: the Hub's commit sha, the local base repo's stored revision
    hub_lora, local_lora = models[("huggingface", LORA)], models[("local", LORA)]
    assert hub_lora["adapter"] == {"base_model": BASE, "base_revision": served[BASE], "peft_type": "LORA", "task_type": "SEQ_CLS"}
    assert local_lora["adapter"] == {"base_model": BASE, "base_revision": models[("local", BASE)]["revision"],
                                     "peft_type": "LORA", "task_type": "SEQ_CLS", "base_path": str(repos[BASE].resolve())}
    missing = models[("huggingface", MISSING_BASE)]["adapter"]
    assert missing["base_model"] == NO_SUCH_BASE and missing["base_revision"] is None
    assert "not on the Hub" in missing["note"], missing
    assert models[("huggingface", NO_HEAD)]["adapter"]["base_revision"] == served[BARE]
    assert ("huggingface", BARE) not in models  # a feature extractor: not listed, yet resolved as a base

    # the adapter's predictions are peft's own, sample by sample, from both sources
    expected = peft_probabilities(repos[BASE], repos[LORA], texts)
    base_expected = plain_probabilities(repos[BASE], texts)
    assert np.abs(expected - base_expected).max() > 1e-3  # the adapter changes the base's outputs
    for source in ("huggingface", "local"):
        inference = _original_inference(store, source, LORA)
        assert inference["module"] == f"peft-text-classification/{DATASET}"
        ids, probs = _stored_probabilities(store, inference["_id"], 2)
        assert ids == sample_ids
        np.testing.assert_allclose(probs, expected, atol=1e-5)
        # the stored task identity carries the base revision: the same adapter on another base commit is another task
        model = models[(source, LORA)]
        assert _recomputed_inference_id(model, inference) == inference["_id"]
        moved = {**model, "adapter": {**model["adapter"], "base_revision": "0" * 40}}
        assert _recomputed_inference_id(moved, inference) != inference["_id"]
        assert ident.model_identity(model)["base"] == {"name": BASE, "revision": model["adapter"]["base_revision"]}
        results = {r["variant"]: r
                   for r in store.iter_results({"source": source, "model_name": LORA, "processor": "classification"})}
        assert sorted(results) == sorted(["original", *variants]), out
        accuracy = float(np.mean(expected.argmax(-1) == labels))
        assert results["original"]["overall"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)

        # the base is evaluated too, as a plain Transformers model, with its own numbers
        base_inf = _original_inference(store, source, BASE)
        assert base_inf["module"] == f"hf-text-classification/{DATASET}"
        ids, probs = _stored_probabilities(store, base_inf["_id"], 2)
        assert ids == sample_ids
        np.testing.assert_allclose(probs, base_expected, atol=1e-5)
        base_result = store.iter_results({"source": source, "model_name": BASE, "processor": "classification",
                                          "variant": "original"})
        assert next(iter(base_result))["overall"]["accuracy"] == pytest.approx(fault_zoo["accuracy"], abs=1e-12)

    # refused with the reason, never a cryptic error: a base that exists nowhere, a head nobody supplies
    fails = {(f["source"], f["model_name"], f["variant"]): f for f in store.db.failures.find()}
    assert {(s, n) for s, n, _ in fails} == {(s, n) for s in ("huggingface", "local") for n in (MISSING_BASE, NO_HEAD)}, out
    for source in ("huggingface", "local"):
        for variant in ("original", *variants):
            f = fails[(source, MISSING_BASE, variant)]
            assert f["error_class"] == "model_load" and f["reason"].startswith("PEFT adapter: "), f["reason"]
            assert NO_SUCH_BASE in f["reason"], f["reason"]
            f = fails[(source, NO_HEAD, variant)]
            assert f["error_class"] == "incomplete_weights" and f["reason"].startswith("PEFT adapter: "), f["reason"]
            assert "classifier.bias, classifier.weight" in f["reason"], f["reason"]
    assert "PEFT adapter: base model 'org/no-such-base' at revision None cannot be loaded: base model " \
           "'org/no-such-base' is not on the Hub" in fails[("huggingface", MISSING_BASE, "original")]["reason"]
    store.close()


# -- unit tests: the module on local folders --------------------------------------------------------------
@pytest.fixture
def store(mongo_uri, db_name):
    """A real, empty store (a base that is not among the scraped folders is looked up in it)."""
    s = Store(mongo_uri, db_name)
    yield s
    s.close()


def _local_docs(repos: dict, names: list[str], store: Store) -> dict[str, dict]:
    """Local model documents as scraper.local builds them, with their adapters attached."""
    from scraper.local import read_repo

    docs = [read_repo(repos[n], n)[0] for n in names]
    attach_local_adapters(docs, store)
    return {d["name"]: d for d in docs}


def test_identity_of_a_model_without_adapter_is_unchanged():
    plain = {"source": "huggingface", "name": "org/model", "revision": "abc123"}
    assert ident.model_identity(plain) == plain
    assert ident.model_identity({**plain, "adapter": None}) == plain
    adapter = {**plain, "adapter": {"base_model": "org/base", "base_revision": "f" * 40, "peft_type": "LORA"}}
    assert ident.model_identity(adapter) == {**plain, "base": {"name": "org/base", "revision": "f" * 40}}
    assert ident.model_fingerprint(adapter) != ident.model_fingerprint(plain)


def test_adapter_loads_on_its_local_base_and_equals_peft(peft_zoo, fault_zoo, store):
    repos = peft_zoo["repos"]
    docs = _local_docs(repos, [BASE, LORA], store)
    module = PeftTextClassification(dataset=DATASET)
    assert module.accepts(docs[LORA], {}) and not module.accepts(docs[BASE], {})
    loaded = module.load(docs[LORA], "cpu")
    assert loaded.id2label == {0: "negative", 1: "positive"}
    assert loaded.extra == {"base_model": BASE, "base_revision": docs[BASE]["revision"]}
    _, texts, _ = _test_split(fault_zoo["dataset_dir"])
    import torch

    with torch.inference_mode():
        logits = module.forward(loaded, module.prepare(loaded, texts))
    np.testing.assert_allclose(torch.softmax(logits.double(), -1).numpy(), peft_probabilities(repos[BASE], repos[LORA], texts),
                               atol=1e-6)


def test_refusals_say_why(peft_zoo, tmp_path, store):
    repos = peft_zoo["repos"]
    module = PeftTextClassification(dataset=DATASET)
    docs = _local_docs(repos, [BASE, BARE, LORA, NO_HEAD, MISSING_BASE], store)
    with pytest.raises(IncompleteWeightsError, match=r"^PEFT adapter: .*lacks 2 tensors.*classifier\.bias, classifier\.weight"):
        module.load(docs[NO_HEAD], "cpu")
    with pytest.raises(ModelLoadError, match=r"^PEFT adapter: base model 'org/no-such-base' at revision None cannot be "
                                             r"loaded: base model 'org/no-such-base' is not a local repo"):
        module.load(docs[MISSING_BASE], "cpu")
    # target modules that the base does not have
    bad = tmp_path / "org" / "lora-bad-target"
    shutil.copytree(repos[LORA], bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, "target_modules": ["no_such_layer"]}))
    bad_doc = _local_docs({**repos, "org/lora-bad-target": bad}, [BASE, "org/lora-bad-target"], store)["org/lora-bad-target"]
    with pytest.raises(ModelLoadError, match=r"^PEFT adapter: the target modules of adapter 'org/lora-bad-target' are "
                                             r"not in base model 'org/base'"):
        module.load(bad_doc, "cpu")
    # LoRA tensors missing from the weights file (they would keep their random initialisation)
    from safetensors.torch import load_file, save_file

    partial = shutil.copytree(repos[LORA], tmp_path / "org" / "lora-partial")
    state = load_file(str(partial / "adapter_model.safetensors"))
    dropped = sorted(k for k in state if "layer.1." in k and "lora_B" in k)
    assert len(dropped) == 2
    save_file({k: v for k, v in state.items() if k not in dropped}, str(partial / "adapter_model.safetensors"))
    partial_doc = _local_docs({**repos, "org/lora-partial": partial}, [BASE, "org/lora-partial"], store)["org/lora-partial"]
    with pytest.raises(IncompleteWeightsError, match=r"^PEFT adapter: tensors of adapter 'org/lora-partial' are missing "
                                                     r"from its weights file.*layer\.1\.attention\.self\.query\.lora_B"):
        module.load(partial_doc, "cpu")
    # a task type the text classification module cannot run
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, "task_type": "CAUSAL_LM"}))
    causal = _local_docs({**repos, "org/lora-bad-target": bad}, [BASE, "org/lora-bad-target"], store)["org/lora-bad-target"]
    assert causal["adapter"]["task_type"] == "CAUSAL_LM"
    with pytest.raises(ModelLoadError, match=r"^PEFT adapter: adapter 'org/lora-bad-target' has task_type 'CAUSAL_LM'"):
        module.load(causal, "cpu")


def test_a_local_base_changed_after_the_scrape_is_refused(peft_zoo, tmp_path, store):
    repos = peft_zoo["repos"]
    base = shutil.copytree(repos[BASE], tmp_path / "org" / "base")
    docs = _local_docs({**repos, BASE: base}, [BASE, LORA], store)
    assert docs[LORA]["adapter"]["base_revision"] == folder_state(base)[1] == docs[BASE]["revision"]
    (base / "README.md").write_text((base / "README.md").read_text() + "\nEdited after the scrape.\n")
    with pytest.raises(ModelLoadError, match=r"^PEFT adapter: base model 'org/base' at revision \w+ cannot be loaded: "
                                             r"its folder .* now holds revision \w+"):
        PeftTextClassification(dataset=DATASET).load(docs[LORA], "cpu")


@pytest.mark.usefixtures("hub_online")
def test_a_base_named_by_a_path_falls_back_to_the_card(peft_zoo, tmp_path, store):
    """peft records the folder the author loaded the base from; the card's base_model names the repo."""
    from scraper.hub_client import HubClient, RetryPolicy

    repos = peft_zoo["repos"]
    hub_root = tmp_path / "hub"
    shutil.copytree(repos[BASE], hub_root / "org" / "base")
    adapter = shutil.copytree(repos[LORA], hub_root / "org" / "lora-from-path")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "/home/someone/models/base"}))
    # the Hub: the card's base_model, resolved to its commit sha
    with HubServer(hub_root) as hub:
        client = HubClient(hub.url, retry=RetryPolicy(max_retries=1, base_wait=0.05, timeout=5), log=lambda _: None)
        files = {f: 0 for f in hub.folders.get("org/lora-from-path").files}
        found = hub_adapter(client, "org/lora-from-path", hub.folders.get("org/lora-from-path").sha, files,
                            (adapter / "README.md").read_text())["adapter"]
        base_sha = hub.folders.get(BASE).sha
    assert found["base_model"] == BASE and found["base_revision"] == base_sha
    assert "'/home/someone/models/base', not a Hub repo id; the card's base_model 'org/base' is used" in found["note"]
    # a local folder: the card's base_model among the scraped repos
    docs = _local_docs({BASE: hub_root / "org" / "base", "org/lora-from-path": adapter}, [BASE, "org/lora-from-path"], store)
    local = docs["org/lora-from-path"]["adapter"]
    assert (local["base_model"], local["base_revision"]) == (BASE, docs[BASE]["revision"])
    assert "the card's base_model is used" in local["note"]


def test_image_adapter_loads_and_equals_peft(tmp_path, store):
    """The image module is the text module's code with the image auto classes: a tiny ViT and a LoRA adapter
    (randomly initialised: this checks the loading, not accuracy)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from PIL import Image
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    from demo.sources import model_card
    from modules.peft_adapter import PeftImageClassification

    torch.manual_seed(0)
    base_dir, adapter_dir = tmp_path / "org" / "vit", tmp_path / "org" / "vit-lora"
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=3, id2label={0: "circle", 1: "square", 2: "triangle"},
                       label2id={"circle": 0, "square": 1, "triangle": 2})
    ViTForImageClassification(config).save_pretrained(str(base_dir))
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(base_dir))
    base = AutoModelForImageClassification.from_pretrained(str(base_dir))
    base.name_or_path = "org/vit"
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"],
                                           init_lora_weights=False))
    lora.save_pretrained(str(adapter_dir), save_embedding_layers=False)
    (adapter_dir / "README.md").write_text(model_card(
        {"library_name": "peft", "base_model": "org/vit", "pipeline_tag": "image-classification", "datasets": ["shapes"]},
        "# vit-lora"))
    docs = _local_docs({"org/vit": base_dir, "org/vit-lora": adapter_dir}, ["org/vit", "org/vit-lora"], store)
    assert docs["org/vit-lora"]["adapter"]["task_type"] is None
    module = PeftImageClassification(dataset="shapes")
    loaded = module.load(docs["org/vit-lora"], "cpu")
    assert loaded.id2label == {0: "circle", 1: "square", 2: "triangle"}
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(4)]
    direct = PeftModel.from_pretrained(AutoModelForImageClassification.from_pretrained(str(base_dir)), str(adapter_dir)).eval()
    with torch.inference_mode():
        got = module.forward(loaded, module.prepare(loaded, images))
        want = direct(**AutoImageProcessor.from_pretrained(str(base_dir))(images=images, return_tensors="pt")).logits
        plain = AutoModelForImageClassification.from_pretrained(str(base_dir))(
            **AutoImageProcessor.from_pretrained(str(base_dir))(images=images, return_tensors="pt")).logits
    torch.testing.assert_close(got, want)
    assert (got - plain).abs().max() > 1e-3  # the adapter is applied
