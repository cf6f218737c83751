"""PEFT adapter repos for tests/test_peft.py, built on the fault tests' tiny tinysent BERT (tests/fault_repos.py).

Under ``ROOT/org/`` (a Hub stand-in folder, and a local zoo folder):

* ``base``:          the fault tests' trained BertForSequenceClassification (a text classifier of its own)
* ``bare-encoder``:  the same model's encoder alone (a BertModel: no classification head), card
                     ``pipeline_tag: feature-extraction``
* ``lora``:          a LoRA adapter of ``org/base`` (task_type SEQ_CLS, r 4 on query/value, modules_to_save
                     classifier), started from non-zero LoRA B and trained briefly on tinysent's train split,
                     saved with peft's save_pretrained; card ``library_name: peft``, ``base_model: org/base``,
                     ``pipeline_tag: text-classification``, ``datasets: [tinysent]``
* ``lora-missing-base``: the same adapter, naming a base that exists nowhere (``org/no-such-base``)
* ``lora-no-head``:  a LoRA adapter of ``org/bare-encoder`` without modules_to_save (task_type none): loaded as
                     a classifier, the base lacks ``classifier.weight`` / ``classifier.bias`` and the adapter does
                     not supply them
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from demo.sources import model_card
from tests.fault_repos import DATASET, MAX_LENGTH, copy_repo

BASE, BARE, LORA, MISSING_BASE, NO_HEAD = "org/base", "org/bare-encoder", "org/lora", "org/lora-missing-base", "org/lora-no-head"
NO_SUCH_BASE = "org/no-such-base"
LORA_TARGETS = ["query", "value"]


def adapter_card(name: str, base: str, note: str = "") -> str:
    front = {"library_name": "peft", "base_model": base, "pipeline_tag": "text-classification", "license": "apache-2.0",
             "datasets": [DATASET], "tags": ["lora", "zooeval-peft-test"]}
    return model_card(front, f"# {name}\n\nA LoRA adapter of {base} for the zooeval PEFT tests. {note}")


def _train_rows(dataset_dir: Path) -> list[dict[str, Any]]:
    with open(dataset_dir / "train.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_lora(base_dir: Path, dest: Path, dataset_dir: Path, base_name: str = BASE, steps: int = 15, seed: int = 1) -> Path:
    """A LoRA adapter of the classifier in ``base_dir`` (recorded as ``base_name``), trained ``steps`` steps."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    base = AutoModelForSequenceClassification.from_pretrained(str(base_dir))
    base.name_or_path = base_name  # what peft records as base_model_name_or_path (the Hub id, not our folder)
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=LORA_TARGETS,
                        modules_to_save=["classifier"], init_lora_weights=False)
    model = get_peft_model(base, config)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    rows = _train_rows(dataset_dir)
    enc = tokenizer([r["text"] for r in rows], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    y = torch.tensor([r["label"] for r in rows])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(**enc, labels=y).loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(str(dest), save_embedding_layers=False)  # embeddings untouched: no Hub lookup
    (dest / "README.md").write_text(adapter_card(dest.parent.name + "/" + dest.name, base_name))
    return dest


def write_bare_encoder(base_dir: Path, dest: Path) -> Path:
    """The encoder of the classifier in ``base_dir`` as a BertModel repo (no head), with its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    classifier = AutoModelForSequenceClassification.from_pretrained(str(base_dir))
    classifier.bert.save_pretrained(str(dest))
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(dest))
    front = {"library_name": "transformers", "pipeline_tag": "feature-extraction", "license": "apache-2.0"}
    (dest / "README.md").write_text(model_card(front, "# org/bare-encoder\n\nA tiny BERT encoder without a head."))
    return dest


def write_lora_no_head(bare_dir: Path, dest: Path) -> Path:
    """A LoRA adapter (query/value, task_type none, no modules_to_save) of ``bare_dir`` loaded as a classifier:
    its weights hold no classification head."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(2)
    base = AutoModelForSequenceClassification.from_pretrained(str(bare_dir))
    base.name_or_path = BARE
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False))
    model.save_pretrained(str(dest), save_embedding_layers=False)  # embeddings untouched: no Hub lookup
    (dest / "README.md").write_text(adapter_card(NO_HEAD, BARE, "It has no modules_to_save: no classification head."))
    return dest


def retarget(src: Path, dest: Path, name: str, base_name: str) -> Path:
    """A copy of the adapter ``src`` that names ``base_name`` as its base (config and card)."""
    shutil.copytree(src, dest)
    cfg_path = dest / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = base_name
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    (dest / "README.md").write_text(adapter_card(name, base_name))
    return dest


def build_peft_zoo(root: Path, fault_zoo: dict[str, Any]) -> dict[str, Path]:
    """Every repo above under ``root/org/``; returns their folders by repo name."""
    org = root / "org"
    org.mkdir(parents=True, exist_ok=True)
    base = copy_repo(fault_zoo["repos"]["good"], org / "base", BASE)
    bare = write_bare_encoder(base, org / "bare-encoder")
    lora = write_lora(base, org / "lora", fault_zoo["dataset_dir"])
    missing = retarget(lora, org / "lora-missing-base", MISSING_BASE, NO_SUCH_BASE)
    no_head = write_lora_no_head(bare, org / "lora-no-head")
    return {BASE: base, BARE: bare, LORA: lora, MISSING_BASE: missing, NO_HEAD: no_head}


def peft_probabilities(base_dir: Path, adapter_dir: Path, texts: list[str]):
    """Class probabilities of the adapter applied to its base with peft directly (independent of zooeval)."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = AutoModelForSequenceClassification.from_pretrained(str(base_dir))
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    return _probabilities(model, AutoTokenizer.from_pretrained(str(base_dir)), texts)


def plain_probabilities(model_dir: Path, texts: list[str]):
    """Class probabilities of a plain Transformers classifier."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    return _probabilities(model, AutoTokenizer.from_pretrained(str(model_dir)), texts)


def _probabilities(model, tokenizer, texts: list[str]):
    import torch

    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        return torch.softmax(model(**enc).logits.double(), dim=-1).numpy()
