"""Task identity. An inference identity is a chained fingerprint of plain data:
model (source, name, revision) -> module (name, version) + dataset (name, split, revision) + variant
(name, version, params, seed). A result identity adds the processor (name, version, and its parameters when it
takes any)."""
from __future__ import annotations

from typing import Any, Sequence

from core.fingerprint import canonical_string, chain, chain_children, chain_parents, fingerprint, fingerprint_of_json

ORIGINAL_VARIANT = {"name": "original", "version": 0, "params": {}, "seed": 0}


def model_identity(model: dict[str, Any]) -> dict[str, Any]:
    """Source, name and revision; for a PEFT adapter also its base model's name and pinned revision (the
    adapter's outputs depend on the base's weights: a new base commit makes its results stale)."""
    identity = {"source": model["source"], "name": model["name"], "revision": model.get("revision") or ""}
    adapter = model.get("adapter") or {}
    if adapter.get("base_model"):
        identity["base"] = {"name": adapter["base_model"], "revision": adapter.get("base_revision") or ""}
    return identity


def model_fingerprint(model: dict[str, Any]) -> str:
    identity = model_identity(model)
    name, revision, source = identity["name"], identity["revision"], identity["source"]
    if len(identity) == 3 and type(name) is str and type(revision) is str and type(source) is str:
        # canonical_json({"model": identity}) written out: planning computes one per model
        return fingerprint_of_json('{"model":{"name":%s,"revision":%s,"source":%s}}' % (
            canonical_string(name), canonical_string(revision), canonical_string(source)))
    return fingerprint({"model": identity})


def work_fingerprint(module: dict[str, Any], dataset: dict[str, Any], variant: dict[str, Any]) -> str:
    """The part of an inference identity that does not depend on the model."""
    return fingerprint({"module": module, "dataset": dataset, "variant": variant})


def inference_id(model_fp: str, work_fp: str) -> str:
    return chain(model_fp, work_fp)


def inference_ids(model_fp: str, work_fps: Sequence[str]) -> list[str]:
    """``inference_id(model_fp, w)`` for each of ``work_fps``, cheaper than one call each."""
    return chain_children(model_fp, work_fps)


def processor_fingerprint(name: str, version: int, params: dict[str, Any] | None = None) -> str:
    """A processor's part of a result identity: name, version and, when it takes any, its parameters."""
    data: dict[str, Any] = {"name": name, "version": version}
    if params:
        data["params"] = params
    return fingerprint({"processor": data})


def result_id(inference: str, processor_fp: str) -> str:
    return chain(inference, processor_fp)


def result_ids(inferences: Sequence[str], processor_fp: str) -> list[str]:
    """``result_id(i, processor_fp)`` for each of ``inferences``, cheaper than one call each."""
    return chain_parents(inferences, processor_fp)
