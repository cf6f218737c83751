"""Hugging Face classification modules (image and text), for Hub models and local HF-format folders.

Safe loading: ``trust_remote_code=False`` always; a repo whose config names custom code is refused;
safetensors weights are required unless a pickle checkpoint can be loaded with ``weights_only=True``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from modules.base import EvaluationModule, LoadedModel, ModelLoadError, UnsafeModelError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def model_location(model: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Where from_pretrained should look, and the keyword arguments that pin the revision."""
    if model.get("path"):
        return model["path"], {"local_files_only": True}
    kwargs: dict[str, Any] = {}
    if model.get("revision"):
        kwargs["revision"] = model["revision"]
    return model["name"], kwargs


def check_safe(model: dict[str, Any]) -> dict[str, Any]:
    """Refuse remote code; choose safetensors. Returns extra from_pretrained kwargs."""
    config = model.get("config") or {}
    if config.get("auto_map"):
        raise UnsafeModelError(
            f"model {model['name']!r} needs remote code (config auto_map {sorted(config['auto_map'])}); "
            "zooeval never enables trust_remote_code"
        )
    files = model.get("files") or {}
    if any(f.endswith(".safetensors") for f in files):
        return {"use_safetensors": True}
    if any(f.endswith(PICKLE_SUFFIXES) for f in files):
        # transformers loads pickle checkpoints with torch.load(weights_only=True): no code runs.
        return {"use_safetensors": False}
    if files:
        raise ModelLoadError(f"model {model['name']!r} has no weight files (files: {sorted(files)[:10]})")
    return {}


class _HFClassification(EvaluationModule):
    version = 1
    sources = ("huggingface", "local")
    auto_model: str

    def _load_common(self, model: dict[str, Any], device: str, pre_cls_name: str) -> LoadedModel:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        where, kwargs = model_location(model)
        kwargs.update(check_safe(model))
        if model.get("path") and not (Path(where) / "config.json").is_file():
            raise ModelLoadError(f"model {model['name']!r}: config.json is missing in {where}")
        auto = getattr(transformers, self.auto_model)
        pre_cls = getattr(transformers, pre_cls_name)
        try:
            net = auto.from_pretrained(where, trust_remote_code=False, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot load model {model['name']!r}: {type(exc).__name__}: {msg}") from exc
        except Exception as exc:  # safetensors raises its own error type for truncated files
            raise ModelLoadError(f"cannot load model {model['name']!r}: {type(exc).__name__}: {exc}") from exc
        pre_kwargs = {k: v for k, v in kwargs.items() if k != "use_safetensors"}
        try:
            pre = pre_cls.from_pretrained(where, trust_remote_code=False, **pre_kwargs)
        except Exception as exc:
            raise ModelLoadError(f"cannot load the preprocessor of {model['name']!r}: {type(exc).__name__}: {exc}") from exc
        net.eval().to(device)
        id2label = {int(k): str(v) for k, v in (net.config.id2label or {}).items()}
        return LoadedModel(net, pre, id2label, device)

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> torch.Tensor:
        out = loaded.model(**batch)
        return out.logits


class HFImageClassification(_HFClassification):
    kind = "hf-image-classification"
    task = "image-classification"
    datatype = "image"
    auto_model = "AutoModelForImageClassification"

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        return self._load_common(model, device, "AutoImageProcessor")

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        return dict(loaded.preprocessor(images=inputs, return_tensors="pt"))


class HFTextClassification(_HFClassification):
    kind = "hf-text-classification"
    task = "text-classification"
    datatype = "text"
    auto_model = "AutoModelForSequenceClassification"
    max_length = 256

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        return self._load_common(model, device, "AutoTokenizer")

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        return dict(
            loaded.preprocessor(inputs, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        )


MODULE_KINDS = {cls.kind: cls for cls in (HFImageClassification, HFTextClassification)}
