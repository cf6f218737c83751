"""The one fingerprint function: sha256 of canonical JSON, with a schema version inside.

Chained fingerprints (as in Hugging Face datasets): a child's fingerprint is the hash of its parent's
fingerprint and the child's own plain data, so a task id is cheap to compute for millions of candidates.
"""
from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, Iterable

#: Bump when the meaning of any fingerprinted field changes; every id changes with it.
SCHEMA_VERSION = 1


def canonical_json(data: Any) -> str:
    """Serialise plain data deterministically: sorted keys, fixed separators, no NaN."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_string(text: str) -> str:
    """A string as canonical_json writes it (quoted and escaped), for callers that write a fixed shape themselves."""
    return encode_basestring(text)


def fingerprint(data: Any) -> str:
    """sha256 hex digest of ``{"schema": SCHEMA_VERSION, "data": data}`` as canonical JSON."""
    return fingerprint_of_json(canonical_json(data))


def fingerprint_of_json(data_json: str) -> str:
    """``fingerprint(data)`` given ``canonical_json(data)``."""
    # canonical_json({"schema": SCHEMA_VERSION, "data": data}): its keys sorted, "data" comes first
    return hashlib.sha256(f'{{"data":{data_json},"schema":{SCHEMA_VERSION}}}'.encode("utf-8")).hexdigest()


def chain(parent: str, child: str) -> str:
    """Fingerprint of a child fingerprint under a parent one (both hex digests)."""
    return hashlib.sha256(f"{SCHEMA_VERSION}|{parent}|{child}".encode("ascii")).hexdigest()


def chain_children(parent: str, children: Iterable[str]) -> list[str]:
    """``chain(parent, child)`` for each child, cheaper than one call each (planning computes millions)."""
    copy = hashlib.sha256(f"{SCHEMA_VERSION}|{parent}|".encode("ascii")).copy  # the shared prefix, hashed once
    digests = []
    for child in children:
        h = copy()
        h.update(child.encode("ascii"))
        digests.append(h.hexdigest())
    return digests


def chain_parents(parents: Iterable[str], child: str) -> list[str]:
    """``chain(parent, child)`` for each parent, cheaper than one call each."""
    copy, tail = hashlib.sha256(f"{SCHEMA_VERSION}|".encode("ascii")).copy, f"|{child}".encode("ascii")
    digests = []
    for parent in parents:
        h = copy()
        h.update(parent.encode("ascii"))
        h.update(tail)
        digests.append(h.hexdigest())
    return digests


def file_digest(path: str, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def folder_revision(folder: Path, files: list[Path]) -> str:
    """A hash of every file's relative path and bytes: changes whenever weights or config change."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(folder)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:40]


def folder_state(folder: Path) -> tuple[dict[str, int], str]:
    """A local repo folder's files (relative path -> size, hidden files left out) and its folder_revision."""
    paths = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return {str(p.relative_to(folder)): p.stat().st_size for p in paths}, folder_revision(folder, paths)
