"""Hugging Face cross-encoders on sentence pairs: ``AutoModelForSequenceClassification`` given both texts at
once (the tokenizer joins them: ``[CLS] a [SEP] b [SEP]``). A head with several outputs classifies the pair
(text-pair-classification); a head with one output scores it (sentence-similarity, an STS-B-style regression
head). On the Hub such models are "text-classification" models; like every Transformers module they are
loaded safely (modules.hf.load_transformers) and only for datasets they were trained on (or compatible ones).
"""
from __future__ import annotations

from typing import Any

import torch

from modules.base import LoadedModel, ModelLoadError, register_module
from modules.hf import _HFClassification, id2label_of, load_transformers


class _CrossEncoder(_HFClassification):
    datatype = "text-pair"
    model_tasks = ("text-classification",)
    auto_model = "AutoModelForSequenceClassification"
    preprocessor = "AutoTokenizer"
    max_length = 256
    #: how many outputs the head must have: 1 (a score), or None for 2 or more (classes)
    outputs: int | None = None

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        net, tokenizer = load_transformers(model, self.auto_model, self.preprocessor, device)
        n = int(net.config.num_labels)
        if (self.outputs == 1) != (n == 1):
            raise ModelLoadError(f"model {model['name']!r} has a head of {n} output(s): {self.kind} takes "
                                 + ("a single-score (regression) head" if self.outputs == 1 else "a classification head"))
        return LoadedModel(net, tokenizer, id2label_of(net), device)

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        first, second = [str(a) for a, _ in inputs], [str(b) for _, b in inputs]
        return dict(loaded.preprocessor(first, second, padding=True, truncation=True, max_length=self.max_length,
                                        return_tensors="pt"))


@register_module
class CrossEncoderPairClassification(_CrossEncoder):
    kind = "hf-cross-encoder-classification"
    task = "text-pair-classification"


@register_module
class CrossEncoderSimilarity(_CrossEncoder):
    kind = "hf-cross-encoder-similarity"
    task = "sentence-similarity"
    outputs = 1

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> torch.Tensor:
        return loaded.model(**batch).logits.reshape(-1)
