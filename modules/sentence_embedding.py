"""Sentence embedders (sentence-transformers models, the Hub's "sentence-similarity" models) scored on sentence
pairs by the cosine similarity of the two embeddings. An embedder is general-purpose, so it is evaluated on
every sentence-similarity dataset, not only ones it declares. The body is loaded as modules.setfit loads a
SetFit body: modules.json may name only sentence-transformers' own classes (anything else is custom code,
refused), safetensors preferred, pickle checkpoints only through torch.load(weights_only=True), and every
parameter must come from the checkpoint.
"""
from __future__ import annotations

from typing import Any

import torch

from modules.base import EvaluationModule, LoadedModel, register_module
from modules.formats import TRANSFORMERS, model_format
from modules.hf import check_safe
from modules.setfit import fetch, files_to_fetch, load_body, repo_files


@register_module
class SentenceEmbeddingSimilarity(EvaluationModule):
    kind = "sentence-transformers-cosine"
    version = 1
    sources = ("huggingface", "local")
    task = "sentence-similarity"
    datatype = "text-pair"

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """A sentence-similarity model (source and task), whatever it was trained on."""
        return (model.get("source") in self.sources and model.get("task") == self.task
                and model_format(model) == TRANSFORMERS)

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        check_safe(model)  # remote code in the stored config, other frameworks' weights only
        files = repo_files(model)
        body = load_body(model, fetch(model, files_to_fetch(files, "")), device)
        return LoadedModel(body, None, {}, device)

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        return {"first": [str(a) for a, _ in inputs], "second": [str(b) for _, b in inputs]}

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> torch.Tensor:
        """Cosine similarity of the pair's embeddings (normalised, so their dot product)."""
        encode = dict(batch_size=max(1, len(batch["first"])), convert_to_tensor=True, normalize_embeddings=True,
                      show_progress_bar=False)
        a = loaded.model.encode(batch["first"], **encode)
        b = loaded.model.encode(batch["second"], **encode)
        return (a * b).sum(dim=-1)
