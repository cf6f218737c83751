"""A store holding the repo shapes people publish on the Hub, side by side: a plain Transformers classifier, a
SetFit model, timm models (ImageNet synset labels, and Hugging Face-style ImageNet labels with the two
"crane"s), a PEFT adapter, TensorFlow-only weights and a gated repo. One `zooeval scrape --source huggingface`
and one `zooeval run` against the Hub stand-in; then `zooeval results` must show, per model, right numbers
(equal to the library run directly) or one clear reason.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch

from core.store import Store
from tests.cli_child import run_zooeval
from tests.fault_repos import DATASET, build_trust_repos, session_fault_zoo
from tests.hubserver import META_FILE, HubServer
from tests.peft_repos import BASE, LORA, build_peft_zoo, peft_probabilities
from tests.setfit_repos import session_setfit_zoo


def zooeval(*args: str, env: dict[str, str]) -> str:
    out = run_zooeval(args, env=env, timeout=900)
    assert out.returncode == 0, f"zooeval {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def crane_named(src, dest):
    """The timm repo with the label names Hugging Face's ImageNet configs use ("tench, Tinca tinca", ...,
    "crane" at outputs 134 and 517), its card naming imagenet-1k as such cards do."""
    from timm.data import ImageNetInfo

    shutil.copytree(src, dest)
    config = json.loads((dest / "config.json").read_text())
    info = ImageNetInfo()
    config["label_names"] = [info.index_to_description(i) for i in range(1000)]
    config.pop("label_descriptions", None)
    assert config["label_names"].count("crane") == 2
    (dest / "config.json").write_text(json.dumps(config))
    assert "datasets:\n- imagenet-1k" in (dest / "README.md").read_text()
    return dest


def timm_top1(repo, images) -> list[int]:
    """timm itself on the repo folder: create_model with the repo's weights and its own preprocessing."""
    import timm
    import timm.data

    net = timm.create_model(f"local-dir:{repo}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(net), is_training=False)
    with torch.inference_mode():
        return net(torch.stack([transform(img) for img in images])).argmax(-1).tolist()


def table_value(out: str, variant: str, column: str) -> float:
    """A number from the first `zooeval results` table row of a variant (columns found by the header's offsets)."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("dataset") and f" {column} " in f" {line} ")
    header, rule = lines[at], lines[at + 1]
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]
    names = [header[a:b].strip() for a, b in spans]
    for line in lines[at + 2:]:
        cells = [line[a:b].strip() for a, b in spans]
        if cells[names.index("variant")] == variant:
            return float(cells[names.index(column)])
    raise AssertionError(f"no {variant!r} row under column {column!r}:\n{out}")


@pytest.mark.slow
def test_mixed_hub_zoo_right_numbers_or_one_reason_each(tmp_path_factory, tmp_path, mongo_uri, db_name):
    from core.data import LocalDataset
    from demo.classification_sets import IMAGENET_DATASET, build_imagenet_foolbox
    from demo.imagenet_timm import write_timm_repo

    fault = session_fault_zoo(tmp_path_factory)
    setfit = session_setfit_zoo(tmp_path_factory)
    root = tmp_path / "hub"
    org = root / "org"
    shutil.copytree(fault["repos"]["good"], org / "good")
    for name, folder in build_trust_repos(fault["repos"]["good"], tmp_path / "trust").items():
        shutil.copytree(folder, org / name)
    gated = shutil.copytree(fault["repos"]["good"], org / "gated")
    (gated / META_FILE).write_text(json.dumps({"gated": "manual", "tokens": ["hf_not_yours"]}))
    peft = build_peft_zoo(tmp_path / "peft", fault)
    shutil.copytree(peft[BASE], org / "base")
    shutil.copytree(peft[LORA], org / "lora")
    shutil.copytree(setfit["repos"]["setfit-rt"], org / "setfit-rt")
    timm_repo = write_timm_repo(org / "mobilenetv2-timm", label_names=True)
    crane_named(timm_repo, org / "mobilenetv2-hf-labels")

    home = tmp_path / "home"
    shutil.copytree(fault["dataset_dir"], home / "datasets" / DATASET)
    shutil.copytree(setfit["dataset_dir"], home / "datasets" / "rotten_tomatoes")
    (home / "datasets" / IMAGENET_DATASET).mkdir(parents=True)
    build_imagenet_foolbox(home / "datasets" / IMAGENET_DATASET)

    with HubServer(root) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "ZOOEVAL_HOME": str(home),
               "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name, "HF_HUB_DISABLE_TELEMETRY": "1"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN"):
            env.pop(var, None)
        zooeval("scrape", "--source", "huggingface", "--no-progress", env=env)
        zooeval("run", "--no-progress", "--batch-size", "16", "--variant", "original", env=env)
        shown = {name: zooeval("results", f"org/{name}", env=env) for name in
                 ("good", "setfit-rt", "mobilenetv2-timm", "mobilenetv2-hf-labels", "lora", "base", "tf-only",
                  "body-only", "gated")}

    # plain Transformers: the fault zoo's model, whose accuracy plain transformers measured
    assert table_value(shown["good"], "original", "accuracy") == pytest.approx(fault["accuracy"], abs=5e-5)
    # SetFit: the LogisticRegression head on the body's embeddings, as fitted
    rows = setfit["test_rows"]
    x = np.asarray(setfit["body"].encode([r["text"] for r in rows], normalize_embeddings=True))
    setfit_acc = float(np.mean(setfit["lr"].predict(x) == np.asarray([r["label"] for r in rows])))
    assert table_value(shown["setfit-rt"], "original", "accuracy") == pytest.approx(setfit_acc, abs=5e-5)
    # timm, both label styles: timm run directly on the same images
    ds = LocalDataset.open(home / "datasets" / IMAGENET_DATASET)
    test_rows = ds.rows("test")
    images = [ds.load_input(r) for r in test_rows]
    timm_acc = float(np.mean(np.asarray(timm_top1(timm_repo, images)) == np.asarray([r["label"] for r in test_rows])))
    for name in ("mobilenetv2-timm", "mobilenetv2-hf-labels"):
        assert table_value(shown[name], "original", "accuracy") == pytest.approx(timm_acc, abs=5e-5), shown[name]
    # PEFT: the adapter on its base, with peft directly; the base on its own
    texts = [r["text"] for r in LocalDataset.open(home / "datasets" / DATASET).rows("test")]
    labels = np.asarray([r["label"] for r in LocalDataset.open(home / "datasets" / DATASET).rows("test")])
    lora_acc = float(np.mean(np.asarray(peft_probabilities(peft[BASE], peft[LORA], texts)).argmax(-1) == labels))
    assert table_value(shown["lora"], "original", "accuracy") == pytest.approx(lora_acc, abs=5e-5)
    assert table_value(shown["base"], "original", "accuracy") == pytest.approx(fault["accuracy"], abs=5e-5)
    # refusals: one line each, with the reason
    for name, reason in (("tf-only", "[incompatible_library] model 'org/tf-only' has only TensorFlow weights (tf_model.h5)"),
                         ("body-only", "[incomplete_weights]")):
        failed = [line for line in shown[name].splitlines() if line.startswith("FAILED")]
        assert len(failed) == 1 and reason in failed[0] and "parked" in failed[0], shown[name]
    assert "not evaluated: gated: needs an HF_TOKEN with access" in shown["gated"], shown["gated"]

    store = Store(mongo_uri, db_name)
    try:
        # the crane-named head: its repeated names mapped by index, everything else by name
        r = next(store.iter_results({"model_name": "org/mobilenetv2-hf-labels"}))
        rules = {p["model_label"]: p["rule"] for p in r["label_mapping"]["pairs"]}
        assert rules["crane"] == "index (duplicate name)"
        pairs = r["label_mapping"]["pairs"]
        assert ([p["dataset_class"] for p in pairs][134] == "crane (bird)"
                and [p["dataset_class"] for p in pairs][517] == "crane (machine)")
        # same weights, other label names: identical stored predictions
        plain = next(store.iter_results({"model_name": "org/mobilenetv2-timm"}))
        preds = [[c["topk_labels"] for c in store.iter_predictions(x["inference_id"])] for x in (r, plain)]
        assert preds[0] == preds[1]
        assert {f["model_name"] for f in store.db.failures.find()} == {"org/tf-only", "org/body-only"}
    finally:
        store.close()
