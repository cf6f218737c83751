"""The inputs behind a result's samples: the text, or the image file a page shows as a thumbnail, read from the
dataset folder, or from the cached variant folder the result was computed on (perturbations.cache) when it is
still there. Nothing is built or written here: a variant that is not cached shows the original input, and
says so."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp", ".bmp": "image/bmp"}


@functools.lru_cache(maxsize=32)
def _rows(path: str, mtime: float, size: int) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    row = json.loads(line)
                    rows[str(row["id"])] = row
                except (ValueError, KeyError, TypeError):
                    continue
    return rows


def split_rows(folder: Path, split: str) -> dict[str, dict[str, Any]]:
    """The rows of ``folder/<split>.jsonl`` by sample id ({} when the file is missing)."""
    path = folder / f"{split}.jsonl"
    try:
        st = path.stat()
    except OSError:
        return {}
    return _rows(str(path), st.st_mtime, st.st_size)


def sample_folder(dataset: dict[str, Any], result: dict[str, Any], home: Path) -> tuple[Path | None, str | None]:
    """The folder holding the samples the result was computed on, and a note when it is not exactly that
    (the original data shown for a variant no longer cached, a dataset changed since)."""
    if not dataset.get("path") or dataset.get("format") == "coco":
        return None, "the inputs of this dataset cannot be shown here"
    root = Path(dataset["path"])
    changed = result.get("dataset_revision") not in (None, dataset.get("revision"))
    if result.get("variant", "original") == "original":
        return root, "the dataset changed since this result" if changed else None
    from perturbations import get_perturbation
    from perturbations.cache import is_complete, variant_path

    try:
        perturbation = get_perturbation(result["variant"])
    except KeyError:
        perturbation = None
    if perturbation is not None and perturbation.version == result.get("variant_version") and \
            perturbation.params == (result.get("variant_params") or {}):
        folder = variant_path(Path(home) / "variants", SimpleNamespace(name=dataset["name"]),
                              result.get("dataset_revision") or dataset.get("revision"), perturbation,
                              int(result.get("variant_seed") or 0))
        if is_complete(folder):
            return folder, None
    return root, f"the {result['variant']} variant is not in the variant cache: the original inputs are shown"


def describe_input(row: dict[str, Any] | None) -> dict[str, Any]:
    """What a page shows of a sample row: its text (and the second text of a pair), or its image file."""
    if row is None:
        return {}
    if row.get("file"):
        return {"file": str(row["file"])}
    out = {"text": row.get("text")}
    if row.get("text_pair") is not None:
        out["text_pair"] = row["text_pair"]
    return out


def inputs_for(dataset: dict[str, Any], result: dict[str, Any], home: Path,
               sample_ids: list[str]) -> tuple[dict[str, dict], str | None]:
    """Per sample id, ``describe_input`` of its row in the folder the result was computed on; and the note of
    :func:`sample_folder`."""
    folder, note = sample_folder(dataset, result, home)
    if folder is None:
        return {}, note
    rows = split_rows(folder, result["split"])
    return {sid: describe_input(rows.get(sid)) for sid in sample_ids}, note


def safe_file(folder: Path, relative: str) -> Path | None:
    """``folder/relative`` when it is an image file inside ``folder`` (no escape by ``..`` or a link)."""
    try:
        root = folder.resolve()
        path = (folder / relative).resolve()
    except (OSError, ValueError):
        return None
    if not path.is_relative_to(root) or path.suffix.lower() not in IMAGE_TYPES or not path.is_file():
        return None
    return path
