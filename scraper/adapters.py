"""PEFT adapters (LoRA and the other peft methods) at scrape time: read a repo's ``adapter_config.json`` and
pin the base model the adapter is applied to.

An adapter's scores depend on its base's weights as much as on its own, so the base's revision is stored
with it and is part of its task identity (``core.identity.model_identity``): a new commit of the base
makes the adapter's results stale. The stored record is::

    adapter: {"base_model": "org/base", "base_revision": "<sha>", "peft_type": "LORA", "task_type": "SEQ_CLS"}

``base_revision`` is the base's commit sha on the Hub at scrape time (the adapter config's ``revision``
when it pins one, resolved to a sha), or a local base repo's stored revision (then ``base_path`` says
where its folder is). A base that cannot be resolved is stored with ``base_revision: None`` and a
``note`` saying why; modules.peft_adapter refuses such an adapter with that reason.

The base is named by the adapter config's ``base_model_name_or_path`` (what peft itself uses); when that is
a path on the author's machine, the card's ``base_model`` is used instead.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.fingerprint import folder_state
from scraper.repo_metadata import parse_card

ADAPTER_CONFIG = "adapter_config.json"


def _card_base(card_base: Any) -> str | None:
    """The card's base_model (a string or a list of them; the first one)."""
    if isinstance(card_base, list):
        card_base = card_base[0] if card_base else None
    if card_base is None:
        return None
    return str(card_base).strip() or None


def _is_repo_id(name: str) -> bool:
    """A Hub repo id (``name`` or ``org/name``), not a file system path."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def parse_adapter_config(text: str | None) -> tuple[dict[str, Any], str | None]:
    """The adapter config as a dict, or ({}, why it cannot be read)."""
    if text is None:
        return {}, f"{ADAPTER_CONFIG} is missing"
    try:
        config = json.loads(text)
    except ValueError as exc:
        return {}, f"{ADAPTER_CONFIG} is not valid JSON: {exc}"
    if not isinstance(config, dict):
        return {}, f"{ADAPTER_CONFIG} is not a JSON object"
    return config, None


def _record(config: dict[str, Any], base: str | None, note: str | None) -> dict[str, Any]:
    record = {"base_model": base, "base_revision": None, "peft_type": config.get("peft_type"),
              "task_type": config.get("task_type")}
    if note:
        record["note"] = note
    return record


# -- the Hugging Face Hub ------------------------------------------------------------------------------
def hub_adapter(client, name: str, revision: str | None, files: dict[str, Any], card_text: str | None) -> dict[str, Any]:
    """``{"adapter": {...}}`` for a Hub repo with an adapter config (read at the adapter's ``revision``,
    the base resolved to its current commit sha with ``client``, a scraper.hub_client.HubClient), else
    ``{"adapter": None}`` (so a new revision that is no longer an adapter loses its old record). A base that is
    not on the Hub is stored with a note; a Hub request that keeps failing raises (the caller records the
    details as not fetched, so the next sync tries again)."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError


    if ADAPTER_CONFIG not in files:
        return {"adapter": None}
    config, problem = parse_adapter_config(client.read_text(name, ADAPTER_CONFIG, revision))
    card_base = _card_base(parse_card(card_text)[0].get("base_model")) if card_text else None
    if problem:
        return {"adapter": _record(config, card_base, f"{problem}; the base model cannot be pinned")}
    named = str(config.get("base_model_name_or_path") or "").strip() or None
    base, note = named, None
    if named is None or not _is_repo_id(named):
        base = card_base if card_base and _is_repo_id(card_base) else None
        what = f"names {named!r}, not a Hub repo id" if named else "names no base_model_name_or_path"
        note = (f"{ADAPTER_CONFIG} {what}; the card's base_model {base!r} is used" if base
                else f"{ADAPTER_CONFIG} {what} and the card names no Hub base_model: the base model is unknown")
    elif card_base and card_base != named:
        note = f"the card's base_model {card_base!r} differs from {ADAPTER_CONFIG}'s {named!r}, which is used"
    record = _record(config, base, note)
    if base is None:
        return {"adapter": record}
    pinned = config.get("revision") or None  # the base revision the adapter's author pinned, if any
    try:
        record["base_revision"] = client.model_info(base, pinned).sha
    except RevisionNotFoundError:
        record["note"] = f"base model {base!r} has no revision {pinned!r} on the Hub (pinned by {ADAPTER_CONFIG})"
    except RepositoryNotFoundError:  # also gated and private repos
        record["note"] = f"base model {base!r} is not on the Hub (or not accessible)"
    return {"adapter": record}


# -- local folders -------------------------------------------------------------------------------------
def attach_local_adapters(docs: list[dict[str, Any]], store) -> None:
    """Set ``adapter`` on every local model document of ``docs``: None, or for a repo with an adapter config
    the record of the module docstring. The base is
    found by name among ``docs`` (the same scrape), then among the store's local models, then as a folder
    (the adapter config's path, absolute or relative to the adapter); its stored revision is pinned."""
    by_name = {d["name"]: d for d in docs if d.get("path") and d.get("revision")}
    for doc in docs:
        if ADAPTER_CONFIG not in (doc.get("files") or {}):
            doc["adapter"] = None  # (a repo that was an adapter at its last scrape loses its old record)
            continue
        folder = Path(doc["path"])
        try:
            text = (folder / ADAPTER_CONFIG).read_text()
        except OSError as exc:
            text, problem = None, f"{ADAPTER_CONFIG} is unreadable: {exc}"
        else:
            problem = None
        config, parse_problem = parse_adapter_config(text)
        problem = problem or parse_problem
        card_base = _card_base(doc.get("base_model"))
        if problem:
            doc["adapter"] = _record(config, card_base, f"{problem}; the base model cannot be pinned")
            continue
        doc["adapter"] = _local_base(config, card_base, folder, by_name, store)


def _local_base(config: dict[str, Any], card_base: str | None, folder: Path, by_name: dict[str, dict[str, Any]],
                store) -> dict[str, Any]:
    named = str(config.get("base_model_name_or_path") or "").strip() or None
    candidates = [n for n in (named, card_base) if n]
    for name in candidates:
        base_doc = by_name.get(name) or store.get_model(f"local/{name}")
        if base_doc and base_doc.get("source") == "local" and base_doc.get("path") and base_doc.get("revision"):
            record = _record(config, base_doc["name"], None if name == named else
                             f"{ADAPTER_CONFIG} names {named!r}, not a local repo; the card's base_model is used")
            record.update(base_revision=base_doc["revision"], base_path=base_doc["path"])
            return record
    if named:
        path = Path(named) if Path(named).is_absolute() else folder / named
        if (path / "config.json").is_file():
            path = path.resolve()
            for base_doc in by_name.values():
                if Path(base_doc["path"]) == path:
                    record = _record(config, base_doc["name"], None)
                    record.update(base_revision=base_doc["revision"], base_path=base_doc["path"])
                    return record
            record = _record(config, str(path), None)
            record.update(base_revision=folder_state(path)[1], base_path=str(path))
            return record
    if not candidates:
        return _record(config, None, f"{ADAPTER_CONFIG} names no base_model_name_or_path and the card no base_model")
    return _record(config, candidates[0], f"base model {candidates[0]!r} is not a local repo of this scrape nor in "
                                          "the store, nor a folder with a config.json: scrape its folder too")
