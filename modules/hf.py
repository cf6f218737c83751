"""Hugging Face classification modules (image and text), for Hub models and local HF-format folders.

Safe loading: ``trust_remote_code=False`` always; a repo whose config names custom code (``auto_map``) is
refused; safetensors weights are used whenever the repo has them. A repo with only a pickle checkpoint
(``pytorch_model.bin``) is first read here with ``torch.load(weights_only=True)`` (torch >= 2.6), which
unpickles nothing but tensors and plain containers; a checkpoint that holds anything else is refused
(``UnsafeModelError``) before transformers sees it, and transformers is then also told ``weights_only=True``.
"""
from __future__ import annotations

import json
import pickle
import re
import zipfile
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
from modules.formats import TRANSFORMERS, model_format

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# the pickle checkpoints from_pretrained reads (other .bin/.pt files, e.g. training_args.bin, it never opens)
PICKLE_WEIGHTS = re.compile(r"^pytorch_model(-\d+-of-\d+)?\.bin$")
SAFE_TORCH_LOAD = (2, 6)  # torch.load(weights_only=True) is unsafe before 2.6 (CVE-2025-32434)
#: Weights for frameworks zooeval does not run, by file suffix (a repo with only these is incompatible).
FOREIGN_WEIGHTS_BY_SUFFIX = {".h5": "TensorFlow", ".msgpack": "Flax", ".onnx": "ONNX", ".tflite": "TensorFlow Lite"}
FOREIGN_WEIGHTS = tuple(FOREIGN_WEIGHTS_BY_SUFFIX)


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
    foreign = sorted(f for f in files if f.endswith(FOREIGN_WEIGHTS))
    if foreign and not any(f.endswith((".safetensors", *PICKLE_SUFFIXES)) for f in files):
        frameworks = sorted({fw for suffix, fw in FOREIGN_WEIGHTS_BY_SUFFIX.items() for f in foreign if f.endswith(suffix)})
        raise IncompatibleLibraryError(
            f"model {model['name']!r} has only {' and '.join(frameworks)} weights ({', '.join(foreign[:4])}); "
            "zooeval runs PyTorch weights")
    if any(f.endswith(".safetensors") for f in files):
        return {"use_safetensors": True, "weights_only": True}
    if any(f.endswith(PICKLE_SUFFIXES) for f in files):
        # read with torch.load(weights_only=True) by check_pickle_weights first, and by transformers after
        return {"use_safetensors": False, "weights_only": True}
    if files:
        raise ModelLoadError(f"model {model['name']!r} has no weight files (files: {sorted(files)[:10]})")
    return {"weights_only": True}


def torch_version() -> tuple[int, int]:
    major, minor = (torch.__version__.split("+")[0].split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def check_pickle_weights(model: dict[str, Any], where: str, kwargs: dict[str, Any]) -> list[str]:
    """Read every pickle checkpoint from_pretrained would read with ``torch.load(weights_only=True)``.

    Raises UnsafeModelError when a checkpoint holds anything but tensors and plain containers (its pickle
    would run code), ModelLoadError when it is unreadable. Returns the files checked."""
    names = sorted(f for f in (model.get("files") or {}) if PICKLE_WEIGHTS.match(f))
    if not names:
        return []  # from_pretrained finds no checkpoint either and fails with a clear message
    if torch_version() < SAFE_TORCH_LOAD:
        raise UnsafeModelError(
            f"model {model['name']!r} has only pickle weights ({', '.join(names)}) and torch {torch.__version__} "
            "cannot load them safely (torch.load(weights_only=True) needs torch >= 2.6); convert them to safetensors"
        )
    for name in names:
        try:
            if model.get("path"):
                path = Path(where) / name
            else:
                from huggingface_hub import hf_hub_download

                path = Path(hf_hub_download(where, name, revision=kwargs.get("revision")))
            mmap = zipfile.is_zipfile(path)
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UnsafeModelError(
                f"model {model['name']!r}: the pickle checkpoint {name} holds objects other than tensors, so loading "
                f"it could run arbitrary code; refused (torch.load(weights_only=True): {first[:300]}). "
                "Publish the weights as safetensors"
            ) from None
        except Exception as exc:
            if (denied := hub_access_error(model, exc)) is not None:
                raise denied from exc
            raise ModelLoadError(f"cannot read the checkpoint {name} of model {model['name']!r}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(state, dict):
            raise ModelLoadError(f"the checkpoint {name} of model {model['name']!r} is not a state dict ({type(state).__name__})")
        del state
    return names


def check_local_config(model: dict[str, Any], where: str) -> None:
    """The repo's config.json exists and names no custom code (the stored metadata may be stale)."""
    path = Path(where) / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"model {model['name']!r}: config.json is missing in {where}")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {model['name']!r}: config.json is unreadable: {exc}") from None
    if isinstance(config, dict) and config.get("auto_map"):
        raise UnsafeModelError(
            f"model {model['name']!r} needs remote code (config.json auto_map {sorted(config['auto_map'])}); "
            "zooeval never enables trust_remote_code"
        )


def check_complete(name: str, info: dict[str, Any]) -> None:
    """Refuse a model whose checkpoint lacks parameters (``from_pretrained(..., output_loading_info=True)``):
    they were initialised at random, so its outputs are noise that differs on every load of the same revision."""
    missing = sorted(set(info.get("missing_keys") or []) | {str(k[0]) if isinstance(k, tuple) else str(k)
                                                             for k in info.get("mismatched_keys") or []})
    if missing:
        shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
        raise IncompleteWeightsError(
            f"model {name!r}: the checkpoint lacks {len(missing)} parameter tensor(s) the model needs ({shown}); "
            "they would be initialised at random, so its scores would be noise (a body published without its head, "
            "as sentence-transformers and SetFit repos and bases for fine-tuning are, is not a classifier)")


#: What a model whose files the Hub refuses (a gated repo, without a token that has access) is told.
GATED = "gated: needs an HF_TOKEN with access"


def hub_access_error(model: dict[str, Any], exc: BaseException) -> ModelLoadError | None:
    """A clear error when huggingface_hub's GatedRepoError is behind ``exc`` (transformers wraps it in an
    OSError), else None."""
    from huggingface_hub.errors import GatedRepoError

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, GatedRepoError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    status = cause.response.status_code if getattr(cause, "response", None) is not None else "?"
    return ModelLoadError(f"cannot load model {model['name']!r}: {GATED} (the Hub answered {status} for its files)")


def load_transformers(model: dict[str, Any], auto_model: str, preprocessor: str, device: str) -> tuple[Any, Any]:
    """Load a Transformers repo safely: no remote code, safetensors when present, pickle checkpoints only
    through torch.load(weights_only=True), the revision pinned, and every parameter from the checkpoint.
    Returns (model in eval mode on ``device``, preprocessor)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    where, kwargs = model_location(model)
    kwargs.update(check_safe(model))
    if model.get("path"):
        check_local_config(model, where)
    if kwargs.get("use_safetensors") is False:
        check_pickle_weights(model, where, kwargs)
    try:
        net, info = getattr(transformers, auto_model).from_pretrained(
            where, trust_remote_code=False, output_loading_info=True, **kwargs)
    except Exception as exc:  # OSError/ValueError/KeyError, and safetensors' own error type for truncated files
        if (denied := hub_access_error(model, exc)) is not None:
            raise denied from exc
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "trust_remote_code" in str(exc):
            raise UnsafeModelError(f"model {model['name']!r} needs remote code, which zooeval never runs: {msg}") from exc
        raise ModelLoadError(f"cannot load model {model['name']!r}: {type(exc).__name__}: {msg}") from exc
    check_complete(model["name"], info)
    pre_kwargs = {k: v for k, v in kwargs.items() if k not in ("use_safetensors", "weights_only")}
    try:
        pre = getattr(transformers, preprocessor).from_pretrained(where, trust_remote_code=False, **pre_kwargs)
    except Exception as exc:
        if (denied := hub_access_error(model, exc)) is not None:
            raise denied from exc
        raise ModelLoadError(f"cannot load the preprocessor of {model['name']!r} ({preprocessor}): "
                             f"{type(exc).__name__}: {exc}") from exc
    return net.eval().to(device), pre


def id2label_of(net: Any) -> dict[int, str]:
    return {int(k): str(v) for k, v in (net.config.id2label or {}).items()}


class _HFClassification(EvaluationModule):
    version = 1
    sources = ("huggingface", "local")
    auto_model: str
    preprocessor: str

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """Plain Transformers repos only: SetFit, timm and PEFT repos have modules of their own."""
        return model_format(model) == TRANSFORMERS and super().accepts(model, datasets)

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        net, pre = load_transformers(model, self.auto_model, self.preprocessor, device)
        return LoadedModel(net, pre, id2label_of(net), device)

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> torch.Tensor:
        out = loaded.model(**batch)
        return out.logits


@register_module
class HFImageClassification(_HFClassification):
    kind = "hf-image-classification"
    task = "image-classification"
    datatype = "image"
    auto_model = "AutoModelForImageClassification"
    preprocessor = "AutoImageProcessor"

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        return dict(loaded.preprocessor(images=inputs, return_tensors="pt"))


@register_module
class HFTextClassification(_HFClassification):
    kind = "hf-text-classification"
    task = "text-classification"
    datatype = "text"
    auto_model = "AutoModelForSequenceClassification"
    preprocessor = "AutoTokenizer"
    max_length = 256

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        return dict(
            loaded.preprocessor(inputs, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        )



