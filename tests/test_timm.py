"""timm models: torchvision's real ImageNet MobileNetV2 weights converted to timm's mobilenetv2_100
(demo.imagenet_timm), published as timm Hub repos, scraped from the Hub stand-in and evaluated by
modules.timm_classification on foolbox's 20 labelled ImageNet images, compared sample by sample with timm run
directly.

The repos: ``.tv_in1k`` (synset label_names, card naming ImageNet-1k), ``-nolabels`` (num_classes only, card
naming no dataset: ImageNet inferred from the timm tag, outputs mapped by index), ``-undeclared`` (label_names,
card naming no dataset: ImageNet inferred from the synsets through the dataset's synonyms) and ``-nohead``
(classifier.bias missing from the checkpoint: incomplete_weights).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.store import Store
from demo.classification_sets import IMAGENET_DATASET, build_imagenet_foolbox
from demo.imagenet_timm import (
    REPO_NAMES,
    ConversionError,
    build_verified_repo,
    convert_state_dict,
    imagenet_synonyms,
    timm_key,
    timm_mobilenet_v2,
    torchvision_mobilenet_v2,
    verify_conversion,
    write_timm_repo,
)
from demo.sources import foolbox_imagenet_files
from tests.cli_child import run_zooeval

LABELS, NO_LABELS = REPO_NAMES["labels"], REPO_NAMES["no-labels"]
UNDECLARED, NO_HEAD = f"{LABELS}-undeclared", f"{LABELS}-nohead"
MODULE = f"timm-image-classification/{IMAGENET_DATASET}"


@pytest.fixture(scope="module")
def images():
    from PIL import Image

    out = []
    for path, label in foolbox_imagenet_files():
        with Image.open(path) as img:
            out.append((img.convert("RGB"), label))
    return out


@pytest.fixture(scope="module")
def timm_net():
    return timm_mobilenet_v2()


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory, timm_net) -> Path:
    """The four repos as the Hub stand-in serves them (ROOT/<org>/<name>/)."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("timm-hub")
    info = build_verified_repo(root / LABELS, label_names=True, net=timm_net)
    assert info["max_logit_difference"] <= 1e-5 and info["verified_on"] == "20 foolbox ImageNet images"
    write_timm_repo(root / NO_LABELS, label_names=False, net=timm_net)
    shutil.copytree(root / LABELS, root / UNDECLARED)
    card = (root / UNDECLARED / "README.md").read_text()
    assert "datasets:\n- imagenet-1k\n" in card
    (root / UNDECLARED / "README.md").write_text(card.replace("datasets:\n- imagenet-1k\n", ""))
    shutil.copytree(root / LABELS, root / NO_HEAD)
    state = load_file(root / NO_HEAD / "model.safetensors")
    del state["classifier.bias"]
    save_file(state, root / NO_HEAD / "model.safetensors")
    return root


# -- the conversion ---------------------------------------------------------------------------------
def test_converted_timm_model_gives_torchvision_logits(images, timm_net):
    import timm.data

    tv = torchvision_mobilenet_v2()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(timm_net), is_training=False)
    batch = torch.stack([transform(img) for img, _ in images])
    with torch.inference_mode():
        ours, theirs = timm_net(batch), tv(batch)
    assert ours.shape == theirs.shape == (20, 1000)
    assert float((ours - theirs).abs().max()) <= 1e-5
    assert verify_conversion(timm_net, tv, [img for img, _ in images[:2]]) <= 1e-5
    # the check fails when a single weight is off
    broken = torchvision_mobilenet_v2()
    with torch.no_grad():
        broken.classifier[1].bias[0] += 1e-3
    with pytest.raises(ConversionError, match="differ from torchvision"):
        verify_conversion(timm_net, broken, [img for img, _ in images[:2]])


def test_key_mapping_covers_both_state_dicts_exactly(timm_net):
    from demo.sources import mobilenet_weights_file

    state = torch.load(mobilenet_weights_file(), map_location="cpu", weights_only=True)
    converted = convert_state_dict(state, timm_net)
    assert set(converted) == set(timm_net.state_dict()) and len(converted) == len(state) == 314
    assert timm_key("features.0.0.weight") == "conv_stem.weight"
    assert timm_key("features.1.conv.1.weight") == "blocks.0.0.conv_pw.weight"
    assert timm_key("features.2.conv.2.weight") == "blocks.1.0.conv_pwl.weight"
    assert timm_key("features.17.conv.1.0.weight") == "blocks.6.0.conv_dw.weight"
    assert timm_key("features.18.1.running_var") == "bn2.running_var"
    assert timm_key("classifier.1.bias") == "classifier.bias"
    with pytest.raises(ConversionError, match="unexpected"):
        timm_key("features.19.0.weight")
    with pytest.raises(ConversionError, match="missing"):
        convert_state_dict({k: v for k, v in state.items() if k != "classifier.1.bias"}, timm_net)


def test_imagenet_synonyms_follow_timm_synset_order():
    from core.fiftyone_support import imagenet_class_names

    classes = imagenet_class_names()
    synonyms = imagenet_synonyms(classes)
    assert list(synonyms.values()) == classes
    assert (synonyms["n01440764"] == "tench" and synonyms["n02012849"] == "crane (bird)"
            and synonyms["n03126707"] == "crane (machine)")
    swapped = [classes[1], classes[0], *classes[2:]]
    with pytest.raises(ValueError, match="not in ImageNet-1k index order"):
        imagenet_synonyms(swapped)


# -- scraping and training data --------------------------------------------------------------------
def test_scraped_config_fields_and_inferred_training_data(hub_root, tmp_path):
    from scraper.local import read_repo
    from scraper.repo_metadata import config_fields
    from scraper.training_data import infer_training_datasets, tag_subset

    raw = json.loads((hub_root / LABELS / "config.json").read_text())
    assert len(raw["label_names"]) == len(raw["label_descriptions"]) == 1000
    stored = config_fields(raw)
    assert stored["architecture"] == "mobilenetv2_100" and stored["num_classes"] == 1000
    assert stored["id2label"]["0"] == "n01440764" and len(stored["id2label"]) == 1000
    assert stored["pretrained_cfg"]["tag"] == "tv_in1k" and stored["pretrained_cfg"]["crop_pct"] == 0.875
    assert "label_names" not in json.dumps(stored) and "label_descriptions" not in json.dumps(stored)
    assert len(json.dumps(stored["pretrained_cfg"])) < 1000

    # a local timm repo whose card has library_name timm and no pipeline_tag is an image classifier
    repo = tmp_path / "no-tag"
    shutil.copytree(hub_root / NO_LABELS, repo)
    card = (repo / "README.md").read_text()
    (repo / "README.md").write_text(card.replace("pipeline_tag: image-classification\n", ""))
    doc, _ = read_repo(repo, "local/no-tag")
    assert doc["task"] == "image-classification" and doc["library"] == "timm" and doc["config"]["id2label"] == {}

    ds_dir = tmp_path / "datasets" / IMAGENET_DATASET
    build_imagenet_foolbox(ds_dir)
    meta = json.loads((ds_dir / "dataset.json").read_text())
    dataset = {"name": IMAGENET_DATASET, "datatype": "image", "synonyms": meta["synonyms"],
               "classes": [{"id": i, "label": c} for i, c in enumerate(meta["classes"])]}
    no_labels = {"task": "image-classification",
                 "config": config_fields(json.loads((hub_root / NO_LABELS / "config.json").read_text()))}
    names, evidence = infer_training_datasets(no_labels, {IMAGENET_DATASET: dataset})
    assert names == [IMAGENET_DATASET] and evidence["method"] == "pretrained_tag" and evidence["class_order"] == "imagenet-1k"
    names, evidence = infer_training_datasets({"task": "image-classification", "config": stored}, {IMAGENET_DATASET: dataset})
    assert names == [IMAGENET_DATASET] and evidence["method"] == "label_set" and evidence["coverage"] == {IMAGENET_DATASET: 1.0}
    # without the synset synonyms the class order cannot be checked: nothing inferred, and the reason says so
    plain = {**dataset, "synonyms": {}}
    names, evidence = infer_training_datasets(no_labels, {IMAGENET_DATASET: plain})
    assert names == [] and "in its order" in evidence["reason"]
    wrong_size = {"task": "image-classification", "config": {**no_labels["config"], "num_classes": 10}}
    names, evidence = infer_training_datasets(wrong_size, {IMAGENET_DATASET: dataset})
    assert names == [] and "10 outputs" in evidence["reason"]
    assert [tag_subset(t) for t in ("a1_in1k", "in21k_ft_in1k", "in1k_384", "in22k", "openai", None)] == [
        "imagenet-1k", "imagenet-1k", "imagenet-1k", None, None, None]


def test_local_repo_pickle_weights_only_through_weights_only(hub_root, timm_net, images, tmp_path):
    """A repo with only pytorch_model.bin loads (torch.load(weights_only=True)) and predicts as the converted
    model; one whose pickle holds an object is refused before anything is unpickled."""
    from safetensors.torch import load_file

    from modules.base import IncompleteWeightsError, UnsafeModelError
    from modules.timm_classification import TimmImageClassification
    from scraper.local import read_repo
    from tests.fault_repos import Evil

    state = load_file(hub_root / LABELS / "model.safetensors")
    module = TimmImageClassification(dataset=IMAGENET_DATASET)
    good, evil, partial = tmp_path / "good", tmp_path / "evil", tmp_path / "partial"
    marker = tmp_path / "unpickled-marker"
    for repo, obj in ((good, dict(state)), (evil, {**state, "_evil": Evil(str(marker))}),
                      (partial, {k: v for k, v in state.items() if k != "blocks.3.1.conv_dw.weight"})):
        shutil.copytree(hub_root / LABELS, repo)
        (repo / "model.safetensors").unlink()
        torch.save(obj, repo / "pytorch_model.bin")
    loaded = module.load(read_repo(good, "local/good")[0], "cpu")
    assert loaded.extra["weights"] == "pytorch_model.bin" and loaded.id2label[0] == "n01440764"
    inputs = [img for img, _ in images[:4]]
    with torch.inference_mode():
        ours = module.forward(loaded, module.prepare(loaded, inputs))
        theirs = timm_net(torch.stack([loaded.preprocessor(img) for img in inputs]))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    with pytest.raises(UnsafeModelError, match="holds objects other than tensors"):
        module.load(read_repo(evil, "local/evil")[0], "cpu")
    assert not marker.exists()
    with pytest.raises(IncompleteWeightsError, match=r"lacks 1 tensor\(s\) .*blocks\.3\.1\.conv_dw\.weight"):
        module.load(read_repo(partial, "local/partial")[0], "cpu")


# -- end to end through the Hub stand-in -----------------------------------------------------------
def zooeval(*args: str, env: dict[str, str]) -> str:
    out = run_zooeval(args, env=env, timeout=600)
    assert out.returncode == 0, f"zooeval {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _timm_reference(repo: Path, images) -> np.ndarray:
    """Logits of timm itself (create_model from the repo folder with its own weights and preprocessing)."""
    import timm
    import timm.data

    net = timm.create_model(f"local-dir:{repo}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(net), is_training=False)
    with torch.inference_mode():
        return torch.cat([net(torch.stack([transform(img) for img, _ in images[i:i + 8]]))
                          for i in range(0, len(images), 8)]).numpy()


def _stored(store: Store, result: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    chunks = list(store.iter_predictions(result["inference_id"]))
    ids = [i for c in chunks for i in c["sample_ids"]]
    return (ids, np.concatenate([np.asarray(c["topk_labels"]) for c in chunks]),
            np.concatenate([np.asarray(c["topk_scores"]) for c in chunks]))


def test_timm_repos_from_the_hub_end_to_end(hub_root, images, mongo_uri, db_name, tmp_path, capsys):
    from core.data import LocalDataset
    from tests.hubserver import HubServer

    home = tmp_path / "home"
    build_imagenet_foolbox(home / "datasets" / IMAGENET_DATASET)
    with HubServer(hub_root) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "ZOOEVAL_HOME": str(home),
               "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name, "HF_HUB_DISABLE_TELEMETRY": "1"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            env.pop(var, None)
        out = zooeval("scrape", "--source", "huggingface", "--no-progress", "--task", "image-classification", env=env)
        assert "new 4" in out, out
        out = zooeval("run", "--no-progress", "--variant", "original", "--batch-size", "8", env=env)
        served = {name: hub.folders.get(name).sha for name in (LABELS, NO_LABELS, UNDECLARED, NO_HEAD)}

    store = Store(mongo_uri, db_name)
    models = {d["name"]: d for d in store.db.models.find({"source": "huggingface"})}
    assert set(models) == set(served)
    assert all(m["library"] == "timm" and m["config"]["architecture"] == "mobilenetv2_100" for m in models.values())
    assert models[LABELS]["datasets"] == ["imagenet-1k"] and "inferred_datasets" not in models[LABELS]
    assert models[NO_LABELS]["datasets"] == [] and models[NO_LABELS]["inferred_datasets"] == [IMAGENET_DATASET]
    assert models[NO_LABELS]["dataset_evidence"]["method"] == "pretrained_tag"
    assert models[UNDECLARED]["inferred_datasets"] == [IMAGENET_DATASET]
    assert models[UNDECLARED]["dataset_evidence"]["method"] == "label_set"

    # the checkpoint without classifier.bias: refused, naming the tensor; nothing else failed
    fails = list(store.db.failures.find())
    assert [(f["model_name"], f["error_class"]) for f in fails] == [(NO_HEAD, "incomplete_weights")], out
    assert "classifier.bias" in fails[0]["reason"] and fails[0]["module"] == MODULE

    results = {r["model_name"]: r for r in store.iter_results({"processor": "classification"})}
    assert set(results) == {LABELS, NO_LABELS, UNDECLARED}, out
    ds = LocalDataset.open(home / "datasets" / IMAGENET_DATASET)
    samples = list(ds.samples("test"))
    assert [s.label for s in samples] == [label for _, label in images]
    y_true = np.array([s.label for s in samples])
    reference = _timm_reference(hub_root / LABELS, images)
    probs = torch.softmax(torch.from_numpy(reference), dim=-1)
    ref_scores, ref_top5 = torch.topk(probs, 5, dim=-1)
    rules = {LABELS: {"synonym"}, NO_LABELS: {"index"}, UNDECLARED: {"synonym"}}
    for name, r in results.items():
        assert r["module"] == MODULE and r["variant"] == "original" and r["source"] == "huggingface"
        assert r["model_revision"] == models[name]["revision"] == served[name]
        assert {p["rule"] for p in r["label_mapping"]["pairs"]} == rules[name] and len(r["label_mapping"]["pairs"]) == 1000
        ids, top5, scores = _stored(store, r)
        order = [ids.index(s.id) for s in samples]
        np.testing.assert_array_equal(top5[order], ref_top5.numpy())
        np.testing.assert_allclose(scores[order], ref_scores.numpy(), rtol=0, atol=1e-5)
        correct = int((ref_top5[:, 0].numpy() == y_true).sum())
        assert (r["overall"]["n"], r["overall"]["correct"]) == (20, correct)
        assert r["overall"]["accuracy"] == pytest.approx(correct / 20, abs=1e-12)
    # torchvision with its standard evaluation transform, for the record: the same predictions
    from torchvision import transforms as T

    standard = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                          T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    with torch.inference_mode():
        tv = torchvision_mobilenet_v2()(torch.stack([standard(img) for img, _ in images])).argmax(1).numpy()
    np.testing.assert_array_equal(tv, ref_top5[:, 0].numpy())
    with capsys.disabled():
        print(f"\ntimm mobilenetv2_100 (converted) on {IMAGENET_DATASET}: timm {correct}/20, torchvision "
              f"{int((tv == y_true).sum())}/20, stored {results[LABELS]['overall']['correct']}/20")
    assert correct >= 15  # the real ImageNet weights
    store.close()
