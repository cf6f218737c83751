"""The modules this installation runs: one per (source x task x dataset).

By default every registered dataset gets the modules for its datatype (images: the Hugging Face and the
FiftyOne image classifiers; text: the Hugging Face text classifier), with the dataset's supported variants.
An object-detection dataset (task "object-detection", e.g. a COCO folder) gets the detection modules
instead (Hugging Face, torchvision, FiftyOne) plus the extra module kinds its dataset.json declares in
``modules`` (e.g. ``["mtcnn-face-detection"]`` for the faces set: MTCNN detects only faces, so it runs only
where a dataset asks for it).
An operator adds a module for a new task or dataset by registering an instance in
``modules.base.MODULES`` (for example from a plugin imported via ZOOEVAL_PLUGINS); a registered module
replaces the default one for the same name.
"""
from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from modules.base import MODULES, EvaluationModule
from modules.detection import MODULE_KINDS as DETECTION_KINDS
from modules.detection import FiftyOneDetection, HFObjectDetection, TorchvisionDetection
from modules.fiftyone_zoo import FiftyOneImageClassification
from modules.hf import HFImageClassification, HFTextClassification
from modules.setfit import SetFitTextClassification
from modules.peft_adapter import PeftImageClassification, PeftTextClassification
from modules.timm_classification import TimmImageClassification
from core.registry import name_matches

log = logging.getLogger("zooeval")

DEFAULT_BY_DATATYPE: dict[str, tuple[type[EvaluationModule], ...]] = {
    "image": (HFImageClassification, FiftyOneImageClassification, TimmImageClassification),
    "text": (HFTextClassification, SetFitTextClassification),
}
DEFAULT_BY_DATATYPE["image"] += (PeftImageClassification,)
DEFAULT_BY_DATATYPE["text"] += (PeftTextClassification,)
DEFAULT_BY_TASK: dict[str, tuple[type[EvaluationModule], ...]] = {
    "object-detection": (HFObjectDetection, TorchvisionDetection, FiftyOneDetection),
}


def default_module_classes(doc: dict[str, Any]) -> tuple[type[EvaluationModule], ...]:
    """The module classes a dataset document gets: by task when it declares one we know (plus the extra
    detection kinds it lists in ``modules``), else by datatype. An unknown kind is logged and skipped."""
    task = doc.get("task")
    if task in DEFAULT_BY_TASK:
        extra = []
        for kind in doc.get("modules") or []:
            if kind not in DETECTION_KINDS:
                log.warning("dataset %r declares module kind %r, which is not a detection module (known: %s); "
                            "ignored", doc.get("name"), kind, ", ".join(sorted(DETECTION_KINDS)))
                continue
            if DETECTION_KINDS[kind] not in DEFAULT_BY_TASK[task] and DETECTION_KINDS[kind] not in extra:
                extra.append(DETECTION_KINDS[kind])
        return (*DEFAULT_BY_TASK[task], *extra)
    return DEFAULT_BY_DATATYPE.get(doc.get("datatype"), ())


def load_plugins() -> None:
    for name in filter(None, (os.environ.get("ZOOEVAL_PLUGINS") or "").split(",")):
        importlib.import_module(name.strip())


def build_modules(datasets: dict[str, dict[str, Any]], include: list[str] | None = None,
                  exclude: list[str] | None = None, variants: list[str] | None = None) -> list[EvaluationModule]:
    """Default modules for the registered datasets plus registered ones, filtered by name wildcards."""
    load_plugins()
    found: dict[str, EvaluationModule] = {}
    for name, doc in sorted(datasets.items()):
        classes = default_module_classes(doc)
        if not classes:
            continue
        split = "test" if any(s["name"] == "test" for s in doc["splits"]) else doc["splits"][-1]["name"]
        vs = ["original", *doc.get("supported_variants", [])]
        if variants is not None:
            vs = [v for v in vs if v in variants]
        if doc.get("task") == "object-detection":
            vs = [v for v in vs if _moves_boxes(v, name)]
        for cls in classes:
            module = cls(dataset=name, split=split, variants=tuple(vs))
            found[module.name] = module
    for module in MODULES:
        found[module.name] = module
    return [m for name, m in found.items() if name_matches(name, include, exclude)]


def _moves_boxes(variant: str, dataset: str) -> bool:
    """A detection variant needs a known box transform (perturbations.boxes); others are logged and skipped."""
    from perturbations.boxes import box_transform

    try:
        box_transform(variant)
        return True
    except ValueError as exc:
        log.warning("dataset %r: variant %r skipped for detection: %s", dataset, variant, exc)
        return False
