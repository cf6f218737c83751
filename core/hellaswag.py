"""Multiple-choice datasets: a context, a list of endings and the index of the gold ending per item.

Two folder layouts, both with a ``dataset.json`` that says ``"task": "multiple-choice"``:

* plain (the LocalDataset format, core.data): one ``<split>.jsonl`` per split whose rows are
  ``{"id": str, "context": str, "endings": [str, ...], "label": int}`` (other fields are kept);
* HellaSwag's own jsonl (``"format": "hellaswag"``): rows with ``ind``, ``activity_label``, ``ctx_a``, ``ctx_b``,
  ``ctx``, ``endings``, ``label``, ``split``, ``split_type``, ``source_id``, in ``<split>.jsonl`` or the file
  ``files`` names per split (``{"validation": "hellaswag_val.jsonl"}``). Each row is turned into a plain row
  by lm-evaluation-harness's HellaSwag preprocessing (:func:`hellaswag_item`).

A row missing a field, with fewer than two endings or with a gold index outside its endings is a DataError
naming the file, the line and what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from core.data import DataError, LocalDataset, read_dataset_json

#: The HellaSwag fields lm-evaluation-harness's preprocessing reads.
HELLASWAG_FIELDS = ("activity_label", "ctx_a", "ctx_b", "endings", "label")


def preprocess(text: str) -> str:
    """lm-evaluation-harness's HellaSwag text cleaning (tasks/hellaswag/utils.py ``preprocess``): strip, " [title]"
    becomes ". ", other WikiHow "[...]" markers are removed, double spaces become one."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def gold_index(value: Any, n_endings: int, where: str) -> int:
    """The gold ending's index (an int, or a digit string as the Hub's HellaSwag has it); DataError naming
    ``where`` when it is missing, not an index, or outside the endings."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: the gold label {value!r} is not an ending index")
    if not 0 <= value < n_endings:
        raise DataError(f"{where}: the gold label {value} is outside its {n_endings} endings (0..{n_endings - 1})")
    return value


def check_item(row: Any, where: str) -> dict[str, Any]:
    """A plain multiple-choice row, checked: a text ``context``, at least two text ``endings``, ``label`` an
    index into them (returned as an int). DataError naming ``where`` and what is wrong."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    missing = [k for k in ("id", "context", "endings", "label") if k not in row]
    if missing:
        raise DataError(f"{where}: the row has no {', '.join(repr(k) for k in missing)} (it has {sorted(row)}; a "
                        "multiple-choice row needs 'id', 'context', 'endings' and 'label')")
    if not isinstance(row["context"], str):
        raise DataError(f"{where}: 'context' is a {type(row['context']).__name__}, not a text")
    endings = row["endings"]
    if not isinstance(endings, list) or len(endings) < 2 or not all(isinstance(e, str) and e for e in endings):
        raise DataError(f"{where}: 'endings' must be a list of at least two non-empty texts, got {endings!r:.200}")
    return {**row, "id": str(row["id"]), "label": gold_index(row["label"], len(endings), where)}


def hellaswag_item(raw: Any, where: str, line: int) -> dict[str, Any]:
    """A plain row from one HellaSwag record, as lm-evaluation-harness builds its query and choices:
    context = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()), endings = preprocess(each),
    gold = int(label). The id is HellaSwag's ``ind`` (else the line number); activity_label, split_type and
    source_id are kept."""
    if not isinstance(raw, dict):
        raise DataError(f"{where}: a HellaSwag row must be a JSON object, got {type(raw).__name__}")
    missing = [k for k in HELLASWAG_FIELDS if k not in raw]
    if missing:
        raise DataError(f"{where}: the HellaSwag row has no {', '.join(repr(k) for k in missing)} (it has {sorted(raw)})")
    for key in ("activity_label", "ctx_a", "ctx_b"):
        if not isinstance(raw[key], str):
            raise DataError(f"{where}: {key!r} is a {type(raw[key]).__name__}, not a text")
    if not isinstance(raw["endings"], list) or not all(isinstance(e, str) for e in raw["endings"]):
        raise DataError(f"{where}: 'endings' must be a list of texts, got {raw['endings']!r:.200}")
    context = preprocess(raw["activity_label"] + ": " + raw["ctx_a"] + " " + raw["ctx_b"].capitalize())
    row = {"id": str(raw.get("ind", line)), "context": context, "endings": [preprocess(e) for e in raw["endings"]],
           "label": raw["label"]}
    row.update({k: raw[k] for k in ("activity_label", "split_type", "source_id") if k in raw})
    return check_item(row, where)


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed JSON) of every non-empty line; DataError naming the file and line."""
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        out.append((lineno, json.loads(line)))
                    except ValueError as exc:
                        raise DataError(f"{path}:{lineno}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise DataError(f"cannot read split file {path}: {exc}") from None
    return out


def read_hellaswag(path: str | Path) -> list[dict[str, Any]]:
    """The plain rows of a HellaSwag jsonl file (see :func:`hellaswag_item`)."""
    path = Path(path)
    return [hellaswag_item(raw, f"{path}:{lineno}", lineno) for lineno, raw in read_jsonl(path)]


class MultipleChoiceDataset(LocalDataset):
    """A multiple-choice dataset folder (plain or HellaSwag layout), its rows read and checked once."""

    _rows: dict[str, list[dict[str, Any]]]

    @classmethod
    def open(cls, root: str | Path) -> "MultipleChoiceDataset":
        root = Path(root)
        meta, meta_path = read_dataset_json(root)
        for key in ("name", "splits"):
            if key not in meta:
                raise DataError(f"dataset metadata {meta_path} has no {key!r}")
        layout = meta.get("format", "plain")
        if layout not in ("plain", "hellaswag"):
            raise DataError(f"dataset metadata {meta_path}: unknown multiple-choice format {layout!r} "
                            "(known: 'plain', 'hellaswag')")
        ds = cls(root, {"datatype": "multiple-choice", "classes": [], **meta})
        ds._rows = {}
        files = meta.get("files") or {}
        for split in ds.splits:
            path = root / files.get(split, f"{split}.jsonl")
            if layout == "hellaswag":
                rows = read_hellaswag(path)
            else:
                rows = [check_item(raw, f"{path}:{lineno}") for lineno, raw in read_jsonl(path)]
            seen: set[str] = set()
            for row in rows:
                if row["id"] in seen:
                    raise DataError(f"{path}: the id {row['id']!r} is used twice")
                seen.add(row["id"])
            ds._rows[split] = rows
        return ds

    def rows(self, split: str) -> list[dict[str, Any]]:
        if split not in self._rows:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; it has {self.splits}")
        return self._rows[split]

    def revision(self) -> str:
        """Content hash of the metadata and the items as read (the preprocessing included)."""
        h = hashlib.sha256(json.dumps(self.meta, sort_keys=True).encode())
        for split in sorted(self._rows):
            h.update(split.encode())
            h.update(json.dumps(self._rows[split], sort_keys=True).encode())
        return h.hexdigest()[:16]
