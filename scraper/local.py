"""The ``local`` source: a folder of Hugging Face-format model repos (for air-gapped sites and the demo).

Layout: ``ROOT/<org>/<name>/`` or ``ROOT/<name>/``, each with config.json, weights and an optional
README.md model card with YAML front matter. A repo with missing or contradictory metadata is stored with
what could be read and a note of what could not; it never stops the scrape.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

ARXIV = re.compile(r"arxiv[:./\s]*(?:abs/)?(\d{4}\.\d{4,5})", re.IGNORECASE)
DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>)\]]+)")
TASK_BY_ARCH_SUFFIX = {
    "ForImageClassification": "image-classification",
    "ForSequenceClassification": "text-classification",
    "ForObjectDetection": "object-detection",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack", ".onnx")


def parse_card(text: str) -> tuple[dict[str, Any], str, list[str]]:
    """Split a model card into (front matter, body, notes)."""
    import yaml

    notes: list[str] = []
    if not text.startswith("---"):
        return {}, text, notes
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        return {}, text, ["model card front matter is not closed with ---"]
    try:
        meta = yaml.safe_load(parts[0][3:]) or {}
        if not isinstance(meta, dict):
            notes.append("model card front matter is not a mapping")
            meta = {}
    except yaml.YAMLError as exc:
        notes.append(f"model card front matter is not valid YAML: {str(exc).splitlines()[0]}")
        meta = {}
    return meta, parts[1], notes


def find_references(text: str) -> list[dict[str, str]]:
    refs = {f"arxiv:{m}": {"name": f"arxiv:{m}", "type": "arxiv", "arxiv_id": m, "url": f"https://arxiv.org/abs/{m}"} for m in ARXIV.findall(text)}
    for d in DOI.findall(text):
        d = d.rstrip(".,;")
        refs[f"doi:{d}"] = {"name": f"doi:{d}", "type": "doi", "doi": d, "url": f"https://doi.org/{d}"}
    return list(refs.values())


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def repo_revision(folder: Path, files: list[Path]) -> str:
    """A hash of every file's relative path and bytes: changes whenever weights or config change."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(folder)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:40]


def read_repo(folder: Path, name: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """One model document (and its references) from one repo folder."""
    notes: list[str] = []
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    config: dict[str, Any] = {}
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        try:
            config = json.loads(cfg_path.read_text())
            if not isinstance(config, dict):
                notes.append("config.json is not a JSON object")
                config = {}
        except (ValueError, OSError) as exc:
            notes.append(f"config.json is not valid JSON: {exc}")
    else:
        notes.append("config.json is missing")
    card_meta: dict[str, Any] = {}
    refs: list[dict[str, str]] = []
    readme = folder / "README.md"
    if readme.is_file():
        text = readme.read_text(errors="replace")
        card_meta, body, card_notes = parse_card(text)
        notes += card_notes
        refs = find_references(text)
    archs = _as_list(config.get("architectures"))
    task = card_meta.get("pipeline_tag")
    if not task:
        for arch in archs:
            for suffix, t in TASK_BY_ARCH_SUFFIX.items():
                if arch.endswith(suffix):
                    task = t
        if not task:
            notes.append("no pipeline_tag and no recognised architecture: task unknown")
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in files):
        notes.append("no weight files")
    id2label = config.get("id2label") or {}
    doc = {
        "_id": f"local/{name}",
        "name": name,
        "source": "local",
        "path": str(folder.resolve()),
        "task": task,
        "datasets": _as_list(card_meta.get("datasets")),
        "tags": _as_list(card_meta.get("tags")),
        "library": card_meta.get("library_name"),
        "license": card_meta.get("license"),
        "base_model": card_meta.get("base_model"),
        "files": {str(p.relative_to(folder)): p.stat().st_size for p in files},
        "config": {
            "architectures": archs,
            "model_type": config.get("model_type"),
            "id2label": {str(k): str(v) for k, v in id2label.items()} if isinstance(id2label, dict) else {},
            "auto_map": config.get("auto_map"),
        },
        "revision": repo_revision(folder, files),
        "references": [r["name"] for r in refs],
        "notes": notes,
    }
    return doc, refs


def discover(root: str | Path) -> list[tuple[Path, str]]:
    """Repo folders under root: any folder holding config.json, README.md or weights, one or two levels deep."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"local model folder {root} does not exist")
    found = []
    for first in sorted(p for p in root.iterdir() if p.is_dir()):
        if _looks_like_repo(first):
            found.append((first, first.name))
            continue
        for second in sorted(p for p in first.iterdir() if p.is_dir()):
            if _looks_like_repo(second):
                found.append((second, f"{first.name}/{second.name}"))
    return found


def _looks_like_repo(p: Path) -> bool:
    return any((p / n).exists() for n in ("config.json", "README.md")) or any(
        f.name.endswith(WEIGHT_SUFFIXES) for f in p.iterdir() if f.is_file()
    )


def scrape_local(store, root: str | Path, log=print) -> dict[str, int]:
    """Store every repo under root; mark local models that vanished from root as removed."""
    docs, refs = [], {}
    for folder, name in discover(root):
        try:
            doc, r = read_repo(folder, name)
        except OSError as exc:  # unreadable folder: store the name and the reason
            doc, r = {"_id": f"local/{name}", "name": name, "source": "local", "path": str(folder), "notes": [f"unreadable: {exc}"]}, []
        docs.append(doc)
        refs.update({x["name"]: x for x in r})
    counts = store.upsert_models(docs)
    store.upsert_named("references", refs.values())
    root_str = str(Path(root).resolve())
    keep = {d["_id"] for d in docs}
    removed = store.db.models.update_many(
        {"source": "local", "status": "active", "path": {"$regex": f"^{re.escape(root_str)}/"}, "_id": {"$nin": list(keep)}},
        {"$set": {"status": "removed"}},
    ).modified_count
    counts.update(seen=len(docs), removed=removed)
    log(f"local scrape of {root}: {len(docs)} repos, {counts['new']} new, {counts['changed']} changed, {removed} removed")
    return counts
