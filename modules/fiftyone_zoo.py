"""FiftyOne zoo image classifiers (``fiftyone.zoo.load_zoo_model``), evaluated like any other model.

``load`` builds the zoo model through FiftyOne itself; ``prepare`` applies the model's own FiftyOne transforms
to the PIL images; ``forward`` runs the underlying torch module (FiftyOne's ``_forward_pass``) to logits on
the device the pipeline chose; ``id2label`` are the model's classes (repeated names made unique,
core.fiftyone_support.unique_labels).

Weights. Nothing is downloaded unless ``ZOOEVAL_FIFTYONE_DOWNLOAD=1``: the model's file must be in
``FIFTYONE_MODEL_ZOO_DIR`` and, for a torchvision entrypoint, in ``$TORCH_HOME/hub/checkpoints``
(core.fiftyone_support.fiftyone_env sets both defaults under ZOOEVAL_HOME; ``zooeval demo`` puts the
MobileNetV2 weights there). A missing file is a model_load failure that says which file goes where.

Which weights. A torchvision zoo entry names its file (``base_filename``, the manifest's download URL) and an
entrypoint argument such as ``weights="MobileNet_V2_Weights.DEFAULT"``. With torchvision >= 0.13 ``DEFAULT``
is a moving target (for MobileNetV2 it is IMAGENET1K_V2, ``mobilenet_v2-7ebf99e0.pth``, while the manifest
names IMAGENET1K_V1, ``mobilenet_v2-b0353104.pth``). The module pins the member of that weights enum whose
file is the manifest's ``base_filename``, so the weights evaluated are the ones the manifest entry (and so the
model's revision) names, whatever the installed torchvision calls DEFAULT.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from core.fiftyone_support import fiftyone_zoo, manifest_revision, unique_labels
from modules.base import EvaluationModule, LoadedModel, ModelLoadError, register_module

DOWNLOAD_ENV = "ZOOEVAL_FIFTYONE_DOWNLOAD"


def pinned_torchvision_weights(zoo_model) -> tuple[str | None, str | None]:
    """(weights argument, checkpoint file name) for a torchvision entrypoint: the member of the weights enum
    whose file is the manifest's ``base_filename`` (else the one the manifest names). (None, None) when the
    model is not built by a torchvision entrypoint with a ``weights`` argument."""
    cfg = ((zoo_model.default_deployment_config_dict or {}).get("config")) or {}
    weights = (cfg.get("entrypoint_args") or {}).get("weights")
    if not isinstance(weights, str) or not str(cfg.get("entrypoint_fcn") or "").startswith("torchvision."):
        return None, None
    try:
        import torchvision.models as tvm

        named = tvm.get_weight(weights)
    except Exception:  # unknown enum or member: let the entrypoint report it
        return weights, None
    enum = type(named)
    chosen = next((m for m in enum if os.path.basename(m.url) == zoo_model.base_filename), named)
    return f"{enum.__name__}.{chosen.name}", os.path.basename(chosen.url)


def missing_weight_files(zoo_model, checkpoint: str | None) -> list[tuple[Path, str]]:
    """(expected path, what looks there) of each weight file the model needs and that is not in place."""
    import fiftyone as fo

    missing = []
    if zoo_model.manager is not None and not zoo_model.is_in_dir(fo.config.model_zoo_dir):
        missing.append((Path(zoo_model.get_path_in_dir(fo.config.model_zoo_dir)), "FIFTYONE_MODEL_ZOO_DIR"))
    if checkpoint:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / checkpoint
        if not hub.is_file():
            missing.append((hub, "TORCH_HOME/hub/checkpoints"))
    return missing


def load_fiftyone_model(model: dict[str, Any], device: str, what: str = "model", **load_kwargs: Any) -> tuple[Any, str | None]:
    """``fiftyone.zoo.load_zoo_model`` for a scraped FiftyOne model document, offline: the installed manifest
    entry must be the scraped one (same revision), the weights must already be on disk (unless
    ZOOEVAL_FIFTYONE_DOWNLOAD=1), torchvision weights are pinned to the file FiftyOne names. Every failure is
    a ModelLoadError that says what to do. ``what`` names the kind of model in messages; ``load_kwargs``
    go to load_zoo_model (e.g. ``confidence_thresh``). Returns (the FiftyOne model, the pinned torchvision
    weights enum name or None)."""
    name = model["name"]
    try:
        fozm = fiftyone_zoo()
    except ImportError as exc:
        raise ModelLoadError(f"cannot load FiftyOne model {name!r}: fiftyone is not installed ({exc})") from exc
    try:
        zoo_model = fozm.get_zoo_model(name)
    except ValueError as exc:
        raise ModelLoadError(f"FiftyOne model {name!r} is not in the installed zoo manifests ({exc}); "
                             "run `zooeval scrape --source fiftyone`") from exc
    if model.get("revision") and manifest_revision(zoo_model) != model["revision"]:
        raise ModelLoadError(f"the installed FiftyOne manifest entry of {name!r} differs from the scraped one "
                             f"(revision {model['revision'][:12]}); run `zooeval scrape --source fiftyone` first")
    weights, checkpoint = pinned_torchvision_weights(zoo_model)
    download = os.environ.get(DOWNLOAD_ENV, "").lower() in ("1", "true", "yes")
    missing = missing_weight_files(zoo_model, checkpoint)
    if missing and not download:
        files = sorted({p.name for p, _ in missing})
        where = " and ".join(f"{p.parent} ({what_dir})" for p, what_dir in missing)
        raise ModelLoadError(
            f"weights of FiftyOne {what} {name!r} not found offline: put {', '.join(files)} in {where}, "
            f"or set {DOWNLOAD_ENV}=1 to let FiftyOne download them"
        )
    kwargs: dict[str, Any] = {"device": device, **load_kwargs}
    if weights:
        args = dict(((zoo_model.default_deployment_config_dict or {}).get("config") or {}).get("entrypoint_args") or {})
        kwargs["entrypoint_args"] = {**args, "weights": weights}
    try:
        return fozm.load_zoo_model(name, download_if_necessary=download, cache=False, **kwargs), weights
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(f"cannot load FiftyOne model {name!r}: {type(exc).__name__}: {msg}"[:1500]) from exc


@register_module
class FiftyOneImageClassification(EvaluationModule):
    kind = "fiftyone-image-classification"
    version = 1
    sources = ("fiftyone",)
    task = "image-classification"
    datatype = "image"

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        name = model["name"]
        fo_model, weights = load_fiftyone_model(model, device)
        net = getattr(fo_model, "_model", None)
        if not isinstance(net, torch.nn.Module) or getattr(fo_model, "transforms", None) is None \
                or getattr(fo_model, "config", None) is None or getattr(fo_model.config, "raw_inputs", False):
            raise ModelLoadError(f"FiftyOne model {name!r} ({type(fo_model).__name__}) is not a torch image model with "
                                 "tensor transforms; this module runs FiftyOne TorchImageModel classifiers only")
        if not getattr(fo_model, "has_logits", False):
            raise ModelLoadError(f"FiftyOne model {name!r} has no classifier output (no logits)")
        classes = list(fo_model.classes or [])
        if not classes:
            raise ModelLoadError(f"FiftyOne model {name!r} declares no classes")
        net.eval()
        id2label = dict(enumerate(unique_labels([str(c) for c in classes])))
        extra = {"fiftyone_model": fo_model, "weights": weights, "half": bool(fo_model.using_half_precision)}
        return LoadedModel(net, fo_model.transforms, id2label, device, extra)

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        """The model's FiftyOne transforms per image; one stacked tensor when the sizes agree, else a list
        (FiftyOne's transforms keep the aspect ratio, so images of different sizes give different shapes)."""
        tensors = [loaded.preprocessor(img) for img in inputs]
        if len({tuple(t.shape) for t in tensors}) == 1:
            return {"pixel_values": torch.stack(tensors)}
        return {"images": tensors}

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> torch.Tensor:
        if "pixel_values" in batch:
            return self._logits(loaded, batch["pixel_values"])
        return torch.cat([self._logits(loaded, t.to(loaded.device).unsqueeze(0)) for t in batch["images"]])

    @staticmethod
    def _logits(loaded: LoadedModel, x: torch.Tensor) -> torch.Tensor:
        if loaded.extra.get("half"):
            x = x.half()
        fo_model = loaded.extra.get("fiftyone_model")
        out = fo_model._forward_pass(x) if fo_model is not None else loaded.model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = getattr(out, "logits", out)
        return out
