"""What a model repo says about itself, read the same way for every source (local folders, the Hub, the stand-in):
its model card (YAML front matter, the performance claims of its model-index and the references in its text), its
config.json fields (Transformers', timm's, SetFit's), and which files are weights."""
from __future__ import annotations

import json
import re
from typing import Any

from cards.model_index import hub_parse_error, parse_claims

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


def card_claims(meta: dict[str, Any], revision: str | None) -> dict[str, Any]:
    """The model document's claim fields from a card's front matter: ``claims`` (every value its ``model-index``
    states, as cards.model_index.parse_claims reads them, malformed ones kept with a note; fields that are None
    left out), ``n_claims``, ``claims_error`` (why huggingface_hub's own parser rejects that model-index, or None)
    and ``claims_revision`` (the model revision the card was read at). Never raises: a scrape goes on."""
    try:
        claims = [{k: v for k, v in claim.items() if v is not None and v != []} for claim in parse_claims(meta)]
        error = hub_parse_error(meta)
    except Exception as exc:  # parse_claims promises not to raise; a card must not end a scrape if it does
        claims, error = [], f"the model-index could not be read: {type(exc).__name__}: {exc}"
    return {"claims": claims, "n_claims": len(claims), "claims_error": error, "claims_revision": revision}


def find_references(text: str) -> list[dict[str, str]]:
    refs = {f"arxiv:{m}": {"name": f"arxiv:{m}", "type": "arxiv", "arxiv_id": m, "url": f"https://arxiv.org/abs/{m}"}
            for m in ARXIV.findall(text)}
    for d in DOI.findall(text):
        d = d.rstrip(".,;")
        refs[f"doi:{d}"] = {"name": f"doi:{d}", "type": "doi", "doi": d, "url": f"https://doi.org/{d}"}
    return list(refs.values())


def as_list(value: Any) -> list[str]:
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
        "architectures": as_list(config.get("architectures")),
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
