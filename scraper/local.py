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

from tasks.base import task_for_architectures

ARXIV = re.compile(r"arxiv[:./\s]*(?:abs/)?(\d{4}\.\d{4,5})", re.IGNORECASE)
DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>)\]]+)")
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
    refs = {f"arxiv:{m}": {"name": f"arxiv:{m}", "type": "arxiv", "arxiv_id": m, "url": f"https://arxiv.org/abs/{m}"}
            for m in ARXIV.findall(text)}
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


#: pretrained_cfg entries never stored: timm's label lists (label_names becomes config.id2label) and weights
PRETRAINED_CFG_DROPPED = ("label_names", "label_descriptions", "labels", "state_dict")
#: a pretrained_cfg value whose JSON is longer than this is not stored (only short settings are useful to keep)
PRETRAINED_CFG_MAX_CHARS = 256


def _label_map(labels: Any) -> dict[str, str]:
    """Index -> name as stored: from a dict (Transformers' id2label, timm's label_names with gaps) or a list
    (timm's label_names: the name of output i at position i)."""
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    if isinstance(labels, list):
        return {str(i): str(v) for i, v in enumerate(labels)}
    return {}


def read_json_object(text: str | None, name: str, notes: list[str]) -> dict[str, Any]:
    """A repo's JSON file as a dict; {} with a note when it is missing, not JSON or not an object."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        notes.append(f"{name} is not valid JSON: {exc}")
        return {}
    if not isinstance(value, dict):
        notes.append(f"{name} is not a JSON object")
        return {}
    return value


def config_fields(config: dict[str, Any], setfit: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config.json fields stored with a model: Transformers' ``architectures``, ``model_type``,
    ``id2label`` and ``auto_map``; for a timm config also ``architecture``, ``num_classes`` and the short
    settings of ``pretrained_cfg`` (tag, preprocessing, license; never its label lists). timm's
    ``label_names`` (synset ids or names, by output index) are stored as ``id2label`` when the config has none;
    a SetFit repo's labels (``config_setfit.json`` ``labels``, its head's outputs) replace the body's."""
    pretrained = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    fields: dict[str, Any] = {
        "architectures": _as_list(config.get("architectures")),
        "model_type": config.get("model_type"),
        "id2label": _label_map(config.get("id2label") or config.get("label_names") or pretrained.get("label_names")),
        "auto_map": config.get("auto_map"),
    }
    if setfit and isinstance(setfit.get("labels"), list):
        fields["id2label"] = _label_map(setfit["labels"])
    if isinstance(config.get("architecture"), str):
        fields["architecture"] = config["architecture"]
    num_classes = config.get("num_classes", pretrained.get("num_classes"))
    if isinstance(num_classes, int) and not isinstance(num_classes, bool):
        fields["num_classes"] = num_classes
    if pretrained:
        fields["pretrained_cfg"] = {k: v for k, v in pretrained.items() if k not in PRETRAINED_CFG_DROPPED
                                    and len(json.dumps(v, default=str)) <= PRETRAINED_CFG_MAX_CHARS}
    return fields


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
        "config": stored_config,
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
    from scraper.adapters import attach_local_adapters

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
