"""The ``local`` source: a folder of Hugging Face-format model repos (for air-gapped sites and the demo).

Layout: ``ROOT/<org>/<name>/`` or ``ROOT/<name>/``, each with config.json, weights and an optional
README.md model card with YAML front matter. A repo with missing or contradictory metadata is stored with
what could be read and a note of what could not; it never stops the scrape.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.fingerprint import folder_revision
from scraper.adapters import attach_local_adapters
from scraper.repo_metadata import (
    WEIGHT_SUFFIXES,
    as_list,
    card_claims,
    config_fields,
    find_references,
    parse_card,
    read_json_object,
)
from tasks.base import task_for_architectures


def read_repo(folder: Path, name: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """One model document (and its references) from one repo folder."""
    notes: list[str] = []
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]

    def text_of(filename: str) -> str | None:
        path = folder / filename
        return path.read_text(errors="replace") if path.is_file() else None

    config_text = text_of("config.json")
    if config_text is None:
        notes.append("config.json is missing")
    config = read_json_object(config_text, "config.json", notes)
    setfit = read_json_object(text_of("config_setfit.json"), "config_setfit.json", notes)
    card_meta: dict[str, Any] = {}
    refs: list[dict[str, str]] = []
    readme = folder / "README.md"
    if readme.is_file():
        text = readme.read_text(errors="replace")
        card_meta, body, card_notes = parse_card(text)
        notes += card_notes
        refs = find_references(text)
    stored_config = config_fields(config, setfit)
    archs = stored_config["architectures"]
    task = card_meta.get("pipeline_tag")
    if not task:
        task = task_for_architectures(archs)
        if not task and (str(card_meta.get("library_name") or "").lower() == "timm" or stored_config.get("pretrained_cfg")):
            task = "image-classification"  # what timm's Hub repos are (timm publishes only image classifiers/backbones)
        if not task:
            notes.append("no pipeline_tag and no recognised architecture: task unknown")
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in files):
        notes.append("no weight files")
    revision = folder_revision(folder, files)
    doc = {
        "_id": f"local/{name}",
        "name": name,
        "source": "local",
        "path": str(folder.resolve()),
        "task": task,
        "datasets": as_list(card_meta.get("datasets")),
        "tags": as_list(card_meta.get("tags")),
        "library": card_meta.get("library_name"),
        "license": card_meta.get("license"),
        "base_model": card_meta.get("base_model"),
        "files": {str(p.relative_to(folder)): p.stat().st_size for p in files},
        "config": stored_config,
        "revision": revision,
        "references": [r["name"] for r in refs],
        "notes": notes,
        **card_claims(card_meta, revision),
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
            doc, r = {"_id": f"local/{name}", "name": name, "source": "local", "path": str(folder),
                      "notes": [f"unreadable: {exc}"]}, []
        docs.append(doc)
        refs.update({x["name"]: x for x in r})
    attach_local_adapters(docs, store)  # PEFT adapters: pin their base model's revision
    counts = store.upsert_models(docs)
    store.upsert_named("references", refs.values())
    root_str = str(Path(root).resolve())
    keep = {d["_id"] for d in docs}
    removed = store.update_models_where(
        {"source": "local", "status": "active", "path": {"$regex": f"^{re.escape(root_str)}/"}, "_id": {"$nin": list(keep)}},
        {"status": "removed"})
    counts.update(seen=len(docs), removed=removed)
    log(f"local scrape of {root}: {len(docs)} repos, {counts['new']} new, {counts['changed']} changed, {removed} removed")
    return counts
