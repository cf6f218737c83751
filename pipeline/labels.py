"""Map a model's output labels to a dataset's classes, and say how each was mapped.

Rules, tried in order for each model label: exact, normalised (case, spaces, punctuation), synonym (the
dataset's synonyms, normalised), numeric ("5 stars" -> "5"), alias (the first name of a comma-separated
list that names a class: Hugging Face's ImageNet label "tabby, tabby cat" -> "tabby"). Generic names (LABEL_0, LABEL_1, ...) carry no
meaning; they are mapped by index only when the model declares it was trained on this very dataset (or one
with the same class list) and has exactly as many labels as the dataset has classes. A model whose labels
cannot all be mapped raises LabelMappingError: it is never silently scored.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

_GENERIC = re.compile(r"^label[_ ]?(\d+)$", re.IGNORECASE)
_NUMERIC = re.compile(r"^(\d+(?:\.\d+)?)\s*[a-z]*$")


class LabelMappingError(Exception):
    def __init__(self, message: str, unmapped: list[str]):
        super().__init__(message)
        self.unmapped = unmapped


def normalise(label: str) -> str:
    """Lower case, accents stripped, punctuation and underscores as spaces, spaces collapsed."""
    text = unicodedata.normalize("NFKD", str(label))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"[\W_]+", " ", text)
    return " ".join(text.split())


def _first_alias(label: str, norm: dict[str, list[int]]) -> str | None:
    """A label listing several names ("tabby, tabby cat", as Hugging Face's ImageNet heads do): the first
    of them (normalised) that names a dataset class, or None."""
    parts = [normalise(p) for p in re.split(r"[,;]", str(label))]
    if len(parts) < 2:
        return None
    return next((p for p in parts if p and p in norm), None)


@dataclass
class LabelMapping:
    """``model_to_dataset[i]`` is the dataset class index of model output i."""

    model_to_dataset: list[int]
    methods: dict[str, str] = field(default_factory=dict)  # model label -> rule used
    method: str = "name"  # "name" or "index"

    def to_doc(self, classes: list[str], id2label: dict[int, str]) -> dict[str, Any]:
        return {
            "method": self.method,
            "pairs": [
                {"model_label": id2label[i], "dataset_class": classes[d], "rule": self.methods.get(id2label[i], self.method)}
                for i, d in enumerate(self.model_to_dataset)
            ],
        }


def map_labels(
    id2label: dict[int, str],
    classes: list[str],
    synonyms: dict[str, str] | None = None,
    trained_on_dataset: bool = False,
) -> LabelMapping:
    """Map every model label to a dataset class index or raise LabelMappingError."""
    if not id2label:
        raise LabelMappingError("the model declares no labels (config id2label is empty)", [])
    ids = sorted(int(k) for k in id2label)
    if ids != list(range(len(ids))):
        raise LabelMappingError(f"the model's label ids are not 0..{len(ids) - 1}: {ids}", [])
    labels = [str(id2label[i]) for i in ids]
    if all(_GENERIC.match(lab) for lab in labels):
        if trained_on_dataset and len(labels) == len(classes) and all(
            int(_GENERIC.match(lab).group(1)) == i for i, lab in enumerate(labels)
        ):
            return LabelMapping(list(range(len(labels))), {lab: "index" for lab in labels}, method="index")
        why = (
            "generic labels (LABEL_i) can only be mapped by index for a model trained on this dataset "
            f"with {len(classes)} labels"
        )
        raise LabelMappingError(f"unmappable labels: {why}", labels)

    exact: dict[str, list[int]] = {}
    norm: dict[str, list[int]] = {}
    for i, c in enumerate(classes):
        exact.setdefault(c, []).append(i)
        norm.setdefault(normalise(c), []).append(i)
    syn = {normalise(k): norm[normalise(v)] for k, v in (synonyms or {}).items() if normalise(v) in norm}
    mapping: list[int] = []
    methods: dict[str, str] = {}
    unmapped: list[str] = []
    for model_id, lab in enumerate(labels):
        n = normalise(lab)
        if lab in exact:
            found, rule = exact[lab], "exact"
        elif n in norm:
            found, rule = norm[n], "normalised"
        elif n in syn:
            found, rule = syn[n], "synonym"
        elif (m := _NUMERIC.match(n)) and m.group(1) in norm:
            found, rule = norm[m.group(1)], "numeric"
        elif alias := _first_alias(lab, norm):
            found, rule = norm[alias], "alias"
        else:
            unmapped.append(lab)
            continue
        # a name the dataset uses twice (ImageNet's two "crane" classes): the class at the model's own index
        # when it is one of them (the same class list), else the first
        mapping.append(model_id if model_id in found else found[0])
        methods[lab] = rule
    if unmapped:
        raise LabelMappingError(
            f"{len(unmapped)} of {len(labels)} model labels match no dataset class "
            f"(classes: {classes[:20]}{'...' if len(classes) > 20 else ''}): {unmapped[:20]}",
            unmapped,
        )
    return LabelMapping(mapping, methods, method="name")
