"""The modules this installation runs: one per (source x task x dataset).

By default every registered dataset gets the modules for its datatype (images: the Hugging Face and the
FiftyOne image classifiers; text: the Hugging Face text classifier), with the dataset's supported variants.
An operator adds a module for a new task or dataset by registering an instance in
``modules.base.MODULES`` (for example from a plugin imported via ZOOEVAL_PLUGINS); a registered module
replaces the default one for the same name.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from modules.base import MODULES, EvaluationModule
from modules.fiftyone_zoo import FiftyOneImageClassification
from modules.hf import HFImageClassification, HFTextClassification
from pipeline.registry import name_matches

DEFAULT_BY_DATATYPE: dict[str, tuple[type[EvaluationModule], ...]] = {
    "image": (HFImageClassification, FiftyOneImageClassification),
    "text": (HFTextClassification,),
}


def load_plugins() -> None:
    for name in filter(None, (os.environ.get("ZOOEVAL_PLUGINS") or "").split(",")):
        importlib.import_module(name.strip())


def build_modules(datasets: dict[str, dict[str, Any]], include: list[str] | None = None,
                  exclude: list[str] | None = None, variants: list[str] | None = None) -> list[EvaluationModule]:
    """Default modules for the registered datasets plus registered ones, filtered by name wildcards."""
    load_plugins()
    found: dict[str, EvaluationModule] = {}
    for name, doc in sorted(datasets.items()):
        classes = DEFAULT_BY_DATATYPE.get(doc.get("datatype"), ())
        if not classes:
            continue
        split = "test" if any(s["name"] == "test" for s in doc["splits"]) else doc["splits"][-1]["name"]
        vs = ["original", *doc.get("supported_variants", [])]
        if variants is not None:
            vs = [v for v in vs if v in variants]
        for cls in classes:
            module = cls(dataset=name, split=split, variants=tuple(vs))
            found[module.name] = module
    for module in MODULES:
        found[module.name] = module
    return [m for name, m in found.items() if name_matches(name, include, exclude)]
