"""Safe model loading (modules/hf.py): no repo code and no arbitrary unpickling, ever; safetensors first.

Uses the tiny repos of tests/fault_repos.py (the ``fault_zoo`` session fixture of tests/test_faults.py) and
builds its own malicious checkpoints, each with its own marker file, to show they really are malicious.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from modules.base import ModelLoadError, UnsafeModelError
from modules.hf import HFTextClassification, check_safe
from scraper.local import read_repo
from tests.fault_repos import DATASET, Evil, make_pickle, session_fault_zoo


@pytest.fixture(scope="session")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


def load(folder, name="fault/x"):
    doc, _ = read_repo(folder, name)
    return HFTextClassification(dataset=DATASET).load(doc, "cpu")


def logits(loaded, texts):
    with torch.inference_mode():
        return loaded.model(**loaded.preprocessor(texts, padding=True, return_tensors="pt")).logits


def test_malicious_pickle_is_refused_and_never_unpickled(fault_zoo, tmp_path):
    marker = tmp_path / "pwned"
    repo = make_pickle(fault_zoo["repos"]["good"], tmp_path / "evil", "fault/evil", marker=marker)
    with pytest.raises(UnsafeModelError, match=r"pytorch_model\.bin holds objects other than tensors") as err:
        load(repo, "fault/evil")
    assert err.value.error_class == "unsafe_model"
    assert not marker.exists()
    # the control: plain unpickling of that very file would have run its code
    torch.load(repo / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_safetensors_are_preferred_over_a_pickle_in_the_same_repo(fault_zoo, tmp_path):
    marker = tmp_path / "pwned"
    repo = tmp_path / "both"
    shutil.copytree(fault_zoo["repos"]["good"], repo)
    torch.save({"_evil": Evil(str(marker))}, repo / "pytorch_model.bin")
    doc, _ = read_repo(repo, "fault/both")
    assert check_safe(doc) == {"use_safetensors": True, "weights_only": True}
    loaded = load(repo, "fault/both")
    assert not marker.exists()
    good = load(fault_zoo["repos"]["good"])
    texts = ["the film was good", "this movie is really awful"]
    assert torch.equal(logits(loaded, texts), logits(good, texts))


def test_plain_pickle_checkpoint_loads_with_weights_only(fault_zoo):
    loaded = load(fault_zoo["repos"]["pickle-ok"], "fault/pickle-ok")
    good = load(fault_zoo["repos"]["good"])
    texts = ["the plot felt quite dull", "the ending was very lovely"]
    assert torch.equal(logits(loaded, texts), logits(good, texts))
    assert loaded.id2label == {0: "negative", 1: "positive"}


def test_remote_code_is_refused_even_when_the_stored_metadata_is_stale(fault_zoo):
    repo = fault_zoo["repos"]["remote-code"]
    doc, _ = read_repo(repo, "fault/remote-code")
    with pytest.raises(UnsafeModelError, match="remote code"):
        HFTextClassification(dataset=DATASET).load(doc, "cpu")
    doc["config"]["auto_map"] = None  # scraped before the repo gained custom code
    with pytest.raises(UnsafeModelError, match="auto_map"):
        HFTextClassification(dataset=DATASET).load(doc, "cpu")
    assert not fault_zoo["markers"]["remote_code"].exists()


def test_truncated_pickle_and_missing_config_are_load_errors(fault_zoo, tmp_path):
    repo = tmp_path / "truncated"
    shutil.copytree(fault_zoo["repos"]["pickle-ok"], repo)
    data = (repo / "pytorch_model.bin").read_bytes()
    (repo / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cannot read the checkpoint pytorch_model.bin") as err:
        load(repo, "fault/truncated")
    assert err.value.error_class == "model_load"
    with pytest.raises(ModelLoadError, match="config.json is missing") as err:
        load(fault_zoo["repos"]["no-config"], "fault/no-config")
    assert err.value.error_class == "model_load"
    cfg = tmp_path / "badcfg"
    shutil.copytree(fault_zoo["repos"]["good"], cfg)
    (cfg / "config.json").write_text(json.dumps({"model_type": "bert"})[:-3])
    with pytest.raises(ModelLoadError, match="config.json is unreadable"):
        load(cfg, "fault/badcfg")
