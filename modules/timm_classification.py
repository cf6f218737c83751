"""timm image classifiers (``library_name: timm`` repos on the Hub and in local folders), loaded with timm itself.

transformers' own timm wrapper fails on the config.json files current timm writes, so the repo is read the way
timm reads it: config.json (``architecture``, ``num_classes``, ``model_args``, ``pretrained_cfg``) parsed by
timm, the architecture created with ``pretrained=False``, and the weights loaded here:

* Hub models: config.json and the weights are downloaded with ``huggingface_hub.hf_hub_download`` at the
  model's pinned revision (the commit sha the scraper stored; ``HF_ENDPOINT`` and ``HF_TOKEN`` honoured).
  Local models: the repo folder (``model["path"]``).
* ``model.safetensors`` whenever the repo has it; a ``pytorch_model.bin`` only through
  ``torch.load(weights_only=True)`` (modules.hf.check_pickle_weights first: anything but tensors is refused as
  unsafe). Remote code (config ``auto_map``) is refused as for every repo.
* The checkpoint must fill the model exactly: a tensor the model needs and the checkpoint lacks is an
  ``incomplete_weights`` failure naming it (timm would leave it randomly initialised), a tensor the model
  does not have is a ``model_load`` failure. An architecture the installed timm does not know is
  ``incompatible_library``.

Preprocessing is timm's own for the repo's ``pretrained_cfg`` (``resolve_model_data_config`` and
``create_transform`` in evaluation mode). Labels: the config's ``label_names`` (ImageNet synset ids such as
``n01440764``, which an ImageNet dataset maps by its synonyms, or names), else generic ``LABEL_0`` ...
``LABEL_{n-1}`` for its ``num_classes`` outputs, which map by index only for a model trained on the dataset
(EvaluationModule.trained_on: as declared or, declaring none, as inferred; for such a timm model the inference
is from its pretrained tag, with the dataset's class order checked against the tag's: scraper.training_data).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from modules.base import (
    EvaluationModule,
    IncompatibleLibraryError,
    IncompleteWeightsError,
    LoadedModel,
    ModelLoadError,
    UnsafeModelError,
    register_module,
)
from modules.formats import TIMM, model_format
from modules.hf import check_pickle_weights, check_safe, model_location

SAFE_WEIGHTS = "model.safetensors"
PICKLE_WEIGHTS = "pytorch_model.bin"
CONFIG = "config.json"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _named(names: list[str], limit: int = 20) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def timm_labels(config: dict[str, Any], num_classes: int) -> dict[int, str]:
    """Output index -> label: timm's ``label_names`` (a list, or a dict with gaps filled by LABEL_i), else
    LABEL_0 .. LABEL_{num_classes-1}. Raises ModelLoadError when the names do not fit the outputs."""
    names = config.get("label_names") or (config.get("pretrained_cfg") or {}).get("label_names")
    if not names:
        return {i: f"LABEL_{i}" for i in range(num_classes)}
    if isinstance(names, list):
        if len(names) != num_classes:
            raise ModelLoadError(f"config label_names has {len(names)} names for {num_classes} outputs (num_classes)")
        by_index = dict(enumerate(names))
    elif isinstance(names, dict):
        try:
            by_index = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError):
            raise ModelLoadError(f"config label_names has non-integer keys: {list(names)[:5]}") from None
        outside = sorted(i for i in by_index if not 0 <= i < num_classes)
        if outside:
            raise ModelLoadError(f"config label_names names outputs {outside[:5]} of a model with {num_classes} (num_classes)")
    else:
        raise ModelLoadError(f"config label_names is a {type(names).__name__}, not a list or a dict")
    return {i: str(by_index.get(i, f"LABEL_{i}")) for i in range(num_classes)}


@register_module
class TimmImageClassification(EvaluationModule):
    kind = "timm-image-classification"
    version = 1
    sources = ("huggingface", "local")
    task = "image-classification"
    datatype = "image"

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """timm repos only (modules.formats), trained on this dataset or a compatible one."""
        return model_format(model) == TIMM and super().accepts(model, datasets)

    # -- loading ------------------------------------------------------------------------------------
    def _fetch(self, model: dict[str, Any], filename: str) -> Path:
        """A repo file: from the local folder, or downloaded at the pinned revision."""
        where, kwargs = model_location(model)
        if model.get("path"):
            path = Path(where) / filename
            if not path.is_file():
                raise ModelLoadError(f"model {model['name']!r}: {filename} is missing in {where}")
            return path
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(where, filename, revision=kwargs.get("revision")))
        except Exception as exc:
            raise ModelLoadError(f"cannot download {filename} of model {model['name']!r} at revision "
                                 f"{kwargs.get('revision')}: {type(exc).__name__}: {_first_line(exc)[:300]}") from exc

    def _weights_file(self, model: dict[str, Any]) -> tuple[Path, bool]:
        """(the checkpoint, whether it is safetensors): model.safetensors, else a pytorch_model.bin read only
        with torch.load(weights_only=True) after modules.hf.check_pickle_weights."""
        files = set(model.get("files") or {})
        if SAFE_WEIGHTS in files or not files:
            return self._fetch(model, SAFE_WEIGHTS), True
        if PICKLE_WEIGHTS in files:
            where, kwargs = model_location(model)
            check_pickle_weights(model, where, kwargs)
            return self._fetch(model, PICKLE_WEIGHTS), False
        raise ModelLoadError(f"model {model['name']!r} has neither {SAFE_WEIGHTS} nor {PICKLE_WEIGHTS}, the weight "
                             f"files of a timm repo (files: {sorted(files)[:10]})")

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        import timm
        import timm.data

        name = model["name"]
        check_safe(model)  # refuses remote code; a repo with no weight file at all is a clear failure
        config_path = self._fetch(model, CONFIG)
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"model {name!r}: config.json is unreadable: {exc}") from None
        if not isinstance(config, dict):
            raise ModelLoadError(f"model {name!r}: config.json is not a JSON object")
        if config.get("auto_map"):
            raise UnsafeModelError(f"model {name!r} needs remote code (config.json auto_map {sorted(config['auto_map'])}); "
                                   "zooeval never runs it")
        architecture = config.get("architecture")
        if not isinstance(architecture, str) or not architecture:
            raise ModelLoadError(f"model {name!r}: config.json names no timm architecture (architecture)")
        if not timm.is_model(architecture):
            raise IncompatibleLibraryError(f"model {name!r}: timm {timm.__version__} has no architecture "
                                           f"{architecture!r}; a newer timm may")
        num_classes = config.get("num_classes", (config.get("pretrained_cfg") or {}).get("num_classes"))
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ModelLoadError(f"model {name!r}: config.json gives no number of outputs (num_classes: {num_classes!r})")
        try:
            id2label = timm_labels(config, num_classes)
        except ModelLoadError as exc:
            raise ModelLoadError(f"model {name!r}: {exc}") from None
        weights, safe = self._weights_file(model)
        try:  # timm parses the config (model_args, pretrained_cfg) from the folder config.json is in
            net = timm.create_model(f"local-dir:{config_path.parent}", pretrained=False, num_classes=num_classes)
        except Exception as exc:
            raise ModelLoadError(f"cannot create timm {architecture} for {name!r}: {type(exc).__name__}: "
                                 f"{_first_line(exc)[:300]}") from exc
        try:
            if safe:
                from safetensors.torch import load_file

                state = load_file(str(weights), device="cpu")
            else:
                state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or corrupt files; the pickle was checked to hold only tensors
            raise ModelLoadError(f"cannot read the weights {weights.name} of {name!r}: {type(exc).__name__}: "
                                 f"{_first_line(exc)[:300]}") from exc
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches (listed on the lines after the first)
            raise ModelLoadError(f"the weights {weights.name} of {name!r} do not fit timm {architecture}: "
                                 f"{' '.join(str(exc).split())[:800]}") from exc
        if missing:
            raise IncompleteWeightsError(
                f"the checkpoint {weights.name} of {name!r} lacks {len(missing)} tensor(s) of timm {architecture}: "
                f"{_named(list(missing))}; they would be randomly initialised, so the model is not evaluated")
        if unexpected:
            raise ModelLoadError(f"the checkpoint {weights.name} of {name!r} holds {len(unexpected)} tensor(s) timm "
                                 f"{architecture} does not have: {_named(list(unexpected))}")
        net.eval().to(device)
        data_config = timm.data.resolve_model_data_config(net)
        transform = timm.data.create_transform(**data_config, is_training=False)
        extra = {"architecture": architecture, "data_config": data_config, "timm_version": timm.__version__,
                 "weights": weights.name}
        return LoadedModel(net, transform, id2label, device, extra)

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        return {"pixel_values": torch.stack([loaded.preprocessor(img) for img in inputs])}

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> torch.Tensor:
        return loaded.model(batch["pixel_values"])

