"""Readers for the GLUE sentence-pair (and single-sentence) tasks in the layouts users actually have.

Two layouts are read:

* **The GLUE TSV files** (``download_glue_data.py``: ``STS-B/train.tsv``, ``MNLI/dev_matched.tsv``, ...): tab
  separated, read as the GLUE tools and Hugging Face's ``glue`` builder read them (no quote character: GLUE
  sentences contain unpaired ``"``), UTF-8 (MRPC's train/dev files start with a byte-order mark, which is
  skipped). Every file has a header row except CoLA's train and dev files (source, label, original label,
  sentence). Test files have no label column.
* **The Hugging Face parquet layout of ``glue``** (``<config>/<split>-00000-of-00001.parquet``, or
  ``<config>/<split>/0000.parquet`` as the parquet-converter writes): columns ``sentence``, ``sentence1``/
  ``sentence2``, ``question``/``sentence``, ``question1``/``question2`` or ``premise``/``hypothesis``, then
  ``label`` (a ClassLabel int, or float32 for STS-B; -1 where the split has no labels) and ``idx``.

Every reader returns a :class:`GlueSplit` whose rows are ``{"id", "text", "text_pair", "label"}``: ``text_pair``
is None for CoLA and SST-2; ``label`` is a float in [0, 5] for STS-B, a class index into ``classes`` otherwise
(Hugging Face's class order, so both layouts give the same indices), and None in an unlabelled (test) split.
``id`` is the row's 0-based position among the data rows of the file (the TSV) or its ``idx`` (the parquet),
which is how Hugging Face numbers GLUE rows, so a split read from either layout has the same ids (except
MRPC's dev split, whose Hugging Face ``idx`` counts rows of the original MRPC train file).

Anything else is refused with a :class:`GlueFormatError` naming the file, the line and the columns it has.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class GlueFormatError(ValueError):
    """A file is not in the layout of the GLUE task it was read as."""


STSB_TARGET: dict[str, Any] = {"type": "float", "range": [0, 5]}


@dataclass(frozen=True)
class GlueLayout:
    """Where one GLUE task keeps its texts and labels, in the TSV files and in Hugging Face's parquet files."""

    name: str  # Hugging Face config name (stsb, mnli, ...)
    folder: str  # folder of the GLUE download (STS-B, MNLI, ...)
    classes: tuple[str, ...] | None  # Hugging Face's ClassLabel names in order; None: a float score (STS-B)
    tsv_text: str
    tsv_text_pair: str | None
    tsv_label: str
    label_form: Literal["name", "index", "score"]  # how the TSV files write the label
    parquet_text: str
    parquet_text_pair: str | None
    tsv_files: dict[str, str] = field(default_factory=lambda: {
        "train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"})

    @property
    def target(self) -> dict[str, Any] | None:
        return dict(STSB_TARGET) if self.classes is None else None


MNLI_FILES = {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
              "validation_mismatched": "dev_mismatched.tsv", "test_matched": "test_matched.tsv",
              "test_mismatched": "test_mismatched.tsv"}

#: CoLA's train and dev files have no header: these are their four columns.
COLA_HEADERLESS_COLUMNS = ["source", "label", "original_label", "sentence"]

GLUE_LAYOUTS: dict[str, GlueLayout] = {layout.name: layout for layout in (
    GlueLayout("cola", "CoLA", ("unacceptable", "acceptable"), "sentence", None, "label", "index", "sentence", None),
    GlueLayout("sst2", "SST-2", ("negative", "positive"), "sentence", None, "label", "index", "sentence", None),
    GlueLayout("mrpc", "MRPC", ("not_equivalent", "equivalent"), "#1 String", "#2 String", "Quality", "index",
               "sentence1", "sentence2"),
    GlueLayout("qqp", "QQP", ("not_duplicate", "duplicate"), "question1", "question2", "is_duplicate", "index",
               "question1", "question2"),
    GlueLayout("stsb", "STS-B", None, "sentence1", "sentence2", "score", "score", "sentence1", "sentence2"),
    GlueLayout("mnli", "MNLI", ("entailment", "neutral", "contradiction"), "sentence1", "sentence2", "gold_label",
               "name", "premise", "hypothesis", MNLI_FILES),
    GlueLayout("qnli", "QNLI", ("entailment", "not_entailment"), "question", "sentence", "label", "name",
               "question", "sentence"),
    GlueLayout("rte", "RTE", ("entailment", "not_entailment"), "sentence1", "sentence2", "label", "name",
               "sentence1", "sentence2"),
    GlueLayout("wnli", "WNLI", ("not_entailment", "entailment"), "sentence1", "sentence2", "label", "index",
               "sentence1", "sentence2"),
)}


@dataclass
class GlueSplit:
    """The rows of one split of a GLUE task, with its class names (or its float target for STS-B)."""

    task: str
    source: str  # the file(s) read
    classes: list[str] | None
    target: dict[str, Any] | None
    rows: list[dict[str, Any]]

    @property
    def labelled(self) -> bool:
        return all(row["label"] is not None for row in self.rows)


def glue_layout(task: str) -> GlueLayout:
    """The layout of a GLUE task named as Hugging Face (``stsb``) or the GLUE download (``STS-B``) names it."""
    key = task.lower().replace("-", "").replace("_", "")
    if key not in GLUE_LAYOUTS:
        names = ", ".join(f"{lay.name} ({lay.folder})" for lay in GLUE_LAYOUTS.values())
        raise GlueFormatError(f"unknown GLUE task {task!r}; known: {names}")
    return GLUE_LAYOUTS[key]


def _parse_label(layout: GlueLayout, value: str, where: str) -> int | float:
    """A TSV label cell as a class index or a score; GlueFormatError naming ``where`` otherwise."""
    if layout.label_form == "score":
        try:
            score = float(value)
        except ValueError:
            raise GlueFormatError(f"{where}: score {value!r} is not a number") from None
        if not (math.isfinite(score) and 0.0 <= score <= 5.0):
            raise GlueFormatError(f"{where}: score {value!r} is outside [0, 5]")
        return score
    assert layout.classes is not None
    if layout.label_form == "name":
        if value not in layout.classes:
            raise GlueFormatError(f"{where}: label {value!r} is not one of {list(layout.classes)}")
        return layout.classes.index(value)
    allowed = [str(i) for i in range(len(layout.classes))]
    if value not in allowed:
        raise GlueFormatError(f"{where}: label {value!r} is not one of {allowed} "
                              f"({', '.join(f'{i} = {c}' for i, c in enumerate(layout.classes))})")
    return int(value)


def read_glue_tsv(path: str | os.PathLike, task: str, *, require_labels: bool = True) -> GlueSplit:
    """Read one GLUE TSV file (``train.tsv``, ``dev.tsv``, ``dev_matched.tsv``, ``test.tsv``, ...) of ``task``.

    ``require_labels=False`` reads a test file (no label column: every label is None).
    """
    layout = glue_layout(task)
    path = Path(path)
    rows: list[dict[str, Any]] = []
    line = 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            first = next(reader, None)
            line = reader.line_num
            if first is None:
                raise GlueFormatError(f"{path} is empty")
            if layout.name == "cola" and first != ["index", "sentence"]:  # CoLA train/dev: no header row
                header, pending = list(COLA_HEADERLESS_COLUMNS), [(line, first)]
                describe = f"CoLA's headerless layout {COLA_HEADERLESS_COLUMNS}"
            else:
                header, pending = first, []
                describe = f"the header {header}"
                if len(set(header)) != len(header):
                    raise GlueFormatError(f"{path}, line 1: the header repeats a column: {header}")
            text_cols = [c for c in (layout.tsv_text, layout.tsv_text_pair) if c]
            needed = text_cols + ([layout.tsv_label] if require_labels else [])
            missing = [c for c in needed if c not in header]
            if missing:
                raise GlueFormatError(
                    f"{path}, line 1: GLUE {layout.folder} needs the column(s) {missing}; the file has {header}"
                    + ("" if require_labels or layout.tsv_label in header else " (read as a test file: no labels)"))
            positions = {c: header.index(c) for c in text_cols}
            label_at = header.index(layout.tsv_label) if layout.tsv_label in header else None

            def records():
                yield from pending
                for record in reader:
                    yield reader.line_num, record

            for line, record in records():
                if not record:  # a blank line (csv yields []): skipped, as csv.DictReader does
                    continue
                where = f"{path}, line {line}"
                if len(record) != len(header):
                    raise GlueFormatError(f"{where}: {len(record)} tab-separated fields, but {describe} has "
                                          f"{len(header)}")
                label: int | float | None = None
                if label_at is not None and (record[label_at] != "" or require_labels):
                    label = _parse_label(layout, record[label_at], where)
                rows.append({"id": str(len(rows)), "text": record[positions[layout.tsv_text]],
                             "text_pair": record[positions[layout.tsv_text_pair]] if layout.tsv_text_pair else None,
                             "label": label})
    except FileNotFoundError:
        raise GlueFormatError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise GlueFormatError(f"{path}, after line {line}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise GlueFormatError(f"{path}, line {line + 1}: {exc}") from None
    return GlueSplit(layout.name, str(path), list(layout.classes) if layout.classes else None, layout.target, rows)


def _hf_label_names(schema_metadata: dict[bytes, bytes] | None) -> list[str] | None:
    """The ClassLabel names the ``datasets`` library wrote into a parquet file's schema, if any."""
    raw = (schema_metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        features = json.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return None
    label = features.get("label") if isinstance(features, dict) else None
    return list(label["names"]) if isinstance(label, dict) and "names" in label else None


def read_glue_parquet(paths: str | os.PathLike | list[str | os.PathLike], task: str, *,
                      require_labels: bool = True) -> GlueSplit:
    """Read the Hugging Face parquet file(s) of one split of ``task`` (shards in the order given).

    A label of -1 means "no label" (Hugging Face's test splits); ``require_labels=False`` accepts it.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = glue_layout(task)
    files = [Path(p) for p in (paths if isinstance(paths, list) else [paths])]
    if not files:
        raise GlueFormatError(f"no parquet files given for GLUE {layout.name}")
    text_cols = [c for c in (layout.parquet_text, layout.parquet_text_pair) if c]
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for path in files:
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            raise GlueFormatError(f"{path}: no such file") from None
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a file that is not parquet
            raise GlueFormatError(f"{path}: not a readable parquet file ({exc})") from None
        columns = table.column_names
        missing = [c for c in text_cols + ["label", "idx"] if c not in columns]
        if missing:
            raise GlueFormatError(f"{path}: Hugging Face glue/{layout.name} needs the column(s) {missing}; "
                                  f"the file has {columns}")
        names = _hf_label_names(table.schema.metadata)
        if layout.classes is not None and names is not None and names != list(layout.classes):
            raise GlueFormatError(f"{path}: its label names {names} differ from glue/{layout.name}'s "
                                  f"{list(layout.classes)}")
        data = {c: table.column(c).to_pylist() for c in text_cols + ["label", "idx"]}
        if pa.types.is_float32(table.schema.field("label").type):
            # glue/stsb stores float32 scores: 4.2 reads back as 4.199999809...; take the shortest decimal that is
            # the same float32 (what the TSV file says), so both layouts give the same labels
            data["label"] = [None if v is None else float(np.format_float_positional(np.float32(v)))
                             for v in data["label"]]
        for position in range(table.num_rows):
            idx, value = data["idx"][position], data["label"][position]
            where = f"{path}, row {position} (idx {idx})"
            if not isinstance(idx, int) or isinstance(idx, bool):
                raise GlueFormatError(f"{where}: idx must be an integer, got {idx!r}")
            if idx in seen:
                raise GlueFormatError(f"{where}: idx {idx} appears twice")
            seen.add(idx)
            for c in text_cols:
                if not isinstance(data[c][position], str):
                    raise GlueFormatError(f"{where}: column {c!r} holds {data[c][position]!r}, not text")
            label: int | float | None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == -1:
                if require_labels:
                    raise GlueFormatError(f"{where}: label -1 (no label) in a split read as labelled")
                label = None
            elif layout.classes is None:
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 5.0:
                    raise GlueFormatError(f"{where}: score {value!r} is not a number in [0, 5]")
                label = float(value)
            else:
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(layout.classes):
                    raise GlueFormatError(f"{where}: label {value!r} is not a class index in "
                                          f"[0, {len(layout.classes)}) or -1")
                label = value
            rows.append({"id": str(idx), "text": data[layout.parquet_text][position],
                         "text_pair": data[layout.parquet_text_pair][position] if layout.parquet_text_pair else None,
                         "label": label})
    return GlueSplit(layout.name, ", ".join(str(p) for p in files),
                     list(layout.classes) if layout.classes else None, layout.target, rows)


def read_glue_split(root: str | os.PathLike, task: str, split: str) -> GlueSplit:
    """Read ``split`` (Hugging Face's split names: train, validation, test, validation_matched, ...) of ``task``
    from a folder holding either layout: ``root`` itself, ``root/<GLUE folder>`` (``STS-B``) or
    ``root/<config>`` (``stsb``). Test splits are read without labels."""
    layout = glue_layout(task)
    if split not in layout.tsv_files:
        raise GlueFormatError(f"GLUE {layout.name} has no split {split!r}; its splits are {list(layout.tsv_files)}")
    root = Path(root)
    labelled = not split.startswith("test")
    looked: list[str] = []
    for folder in dict.fromkeys([root, root / layout.folder, root / layout.name]):
        if not folder.is_dir():
            continue
        tsv = folder / layout.tsv_files[split]
        shards = sorted(folder.glob(f"{split}-*.parquet")) + sorted(folder.glob(f"{split}.parquet")) \
            + sorted((folder / split).glob("*.parquet"))
        if tsv.is_file() and shards:
            raise GlueFormatError(f"{folder} holds both {tsv.name} and parquet files of {split!r}: "
                                  "point at one layout")
        if tsv.is_file():
            return read_glue_tsv(tsv, layout.name, require_labels=labelled)
        if shards:
            return read_glue_parquet(shards, layout.name, require_labels=labelled)
        looked.append(f"{folder} (has {sorted(p.name for p in folder.iterdir())[:20]})")
    raise GlueFormatError(f"no {layout.tsv_files[split]} and no {split}-*.parquet for GLUE {layout.name} under "
                          f"{root}; looked in: {'; '.join(looked) or 'nothing (not a folder)'}")
