"""Local labelled datasets on disk, the format every module reads and every variant is written in.

A dataset folder holds ``dataset.json`` (metadata) and one ``<split>.jsonl`` per split. Each line is
``{"id": str, "label": ..., "text": str}`` for text, ``{"id", "label", "file": "rel/path.png"}`` for images, or
other fields a task kind reads (a sentence pair's ``text_pair``). What ``label`` holds is the task kind's
business (a class index into ``classes``, a score, ...). A perturbed variant is a folder of the same format
(written by perturbations.cache).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator


class DataError(Exception):
    """A dataset file is missing, unreadable or malformed."""


def read_json_file(path: Path, what: str) -> Any:
    """The JSON value in ``path``; DataError naming ``what`` and the file when it is missing, unreadable or not
    valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{what} {path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} is unreadable: {exc}") from None
    except ValueError as exc:
        raise DataError(f"{what} {path} is not valid JSON: {exc}") from None


def read_dataset_json(root: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """A dataset folder's ``dataset.json`` (the object, and its path); DataError naming the file when it is
    missing, unreadable, not valid JSON or not a JSON object."""
    path = Path(root) / "dataset.json"
    meta = read_json_file(path, "dataset metadata")
    if not isinstance(meta, dict):
        raise DataError(f"dataset metadata {path} is not a JSON object")
    return meta, path


def dataset_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The catalogue fields every registered dataset document carries (thesis 3.1.1, 3.2.2), read from its
    dataset.json: version, description, homepage, year, reference, compatible datasets (a model trained on
    one is evaluated here), datasets with the same classes in the same order (a model trained on one may have
    its generic or repeated label names mapped by index), supported variants, the extra processors and module kinds
it asks for, label synonyms."""
    return {
        "version": str(meta.get("version", "1")),
        "description": meta.get("description"),
        "homepage": meta.get("homepage"),
        "year": meta.get("year"),
        "reference": meta.get("reference"),
        "compatible_with": list(meta.get("compatible_with") or []),
        "same_class_order_as": list(meta.get("same_class_order_as") or []),
        "supported_variants": list(meta.get("supported_variants") or []),
        "processors": list(meta.get("processors") or []),
        "modules": list(meta.get("modules") or []),
        "synonyms": dict(meta.get("synonyms") or {}),
        **({"hub": meta["hub"]} if meta.get("hub") else {}),  # a Hub dataset's origin: repo, config, commit sha
    }


def check_class_groups(groups: Any, classes: list[str]) -> dict[str, list[str]]:
    """``groups`` as ``{group: [class, ...]}``; ValueError naming what is wrong (not a mapping, an empty group,
    a class the dataset does not have, a class listed twice in one group). A class may be in several groups."""
    if not isinstance(groups, dict):
        raise ValueError(f"class groups must map a group name to its classes, got {type(groups).__name__}")
    known = set(classes)
    out = {}
    for name, members in groups.items():
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise ValueError(f"class group {name!r} must be a non-empty list of class names")
        unknown = [m for m in members if m not in known]
        if unknown:
            raise ValueError(f"class group {name!r} names classes the dataset does not have: {unknown[:10]}")
        if len(set(members)) != len(members):
            raise ValueError(f"class group {name!r} lists a class twice")
        out[str(name)] = list(members)
    return out


@dataclass
class Sample:
    id: str
    label: int
    input: Any  # PIL.Image.Image for images, str for text


@dataclass
class DatasetFolder:
    """What every dataset folder format shares: its root and ``dataset.json``, its name and splits, the checked
    path of a split's file, images decoded with an error naming the file, and a content revision."""

    root: Path
    meta: dict[str, Any] = field(repr=False)
    #: a split's file, relative to the root
    split_file: ClassVar[str] = "{split}.jsonl"

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def split_path(self, split: str) -> Path:
        if split not in self.splits:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; it has {self.splits}")
        return self.root / self.split_file.format(split=split)

    def read_image(self, path: Path, what: str = "") -> Any:
        """The image file decoded to RGB (a PIL image); DataError naming the dataset, the file and ``what``
        (e.g. the sample) when it cannot be read."""
        from PIL import Image

        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise DataError(f"dataset {self.name!r}: cannot read image {path}{f' ({what})' if what else ''}: "
                            f"{exc}") from None

    def content_files(self, split: str) -> Iterator[Path]:
        """The media files a split names (images, masks), in a fixed order: part of the revision."""
        return iter(())

    def revision(self) -> str:
        """Content hash of the metadata, every split file and every media file they name."""
        h = hashlib.sha256()
        h.update((self.root / "dataset.json").read_bytes())
        for split in sorted(self.splits):
            h.update(split.encode())
            h.update(self.split_path(split).read_bytes())
            for path in self.content_files(split):
                h.update(path.read_bytes())
        return h.hexdigest()[:16]


@dataclass
class LocalDataset(DatasetFolder):
    @classmethod
    def open(cls, root: str | os.PathLike) -> "LocalDataset":
        root = Path(root)
        meta, meta_path = read_dataset_json(root)
        for key in ("name", "datatype", "classes", "splits"):
            if key not in meta:
                raise DataError(f"dataset metadata {meta_path} has no {key!r}")
        return cls(root, meta)

    @property
    def datatype(self) -> str:
        return self.meta["datatype"]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def rows(self, split: str) -> list[dict[str, Any]]:
        """The split's index rows (no media loaded)."""
        path = self.split_path(split)
        rows = []
        try:
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                        row["id"], row["label"]
                    except (ValueError, KeyError, TypeError):
                        raise DataError(f"{path}:{lineno}: not a valid sample row") from None
                    rows.append(row)
        except OSError as exc:
            raise DataError(f"cannot read split file {path}: {exc}") from None
        return rows

    def load_input(self, row: dict[str, Any]) -> Any:
        """The sample's input: its image decoded to RGB, or its text."""
        return self.load_image(row) if "file" in row else row["text"]

    def load_image(self, row: dict[str, Any]) -> Any:
        """The row's image file decoded to RGB; DataError naming the file when it cannot be read."""
        return self.read_image(self.root / row["file"], f"sample {row['id']!r}")

    def samples(self, split: str) -> Iterator[Sample]:
        for row in self.rows(split):
            yield Sample(str(row["id"]), int(row["label"]), self.load_input(row))

    def content_files(self, split: str) -> Iterator[Path]:
        return (self.root / row["file"] for row in self.rows(split) if "file" in row)

    def class_counts(self, split: str) -> dict[str, int]:
        counts = {c: 0 for c in self.classes}
        for row in self.rows(split):
            counts[self.classes[int(row["label"])]] += 1
        return counts


def write_dataset(root: str | os.PathLike, meta: dict[str, Any], splits: dict[str, list[dict[str, Any]]]) -> Path:
    """Write dataset.json and the split files (media files must already be under root)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    meta["splits"] = sorted(splits)
    for split, rows in splits.items():
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (root / "dataset.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    return root
