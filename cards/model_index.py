"""Performance claims of a model card: its ``model-index`` flattened into one record per metric value.

A card's metadata (the YAML front matter as a dict: ``huggingface_hub.metadata_load`` or
``ModelCard.load(...).data.to_dict()``) holds ``model-index: [{name, results: [{task, dataset, metrics,
source}]}]`` (https://github.com/huggingface/hub-docs/blob/main/modelcard.md). :func:`parse_claims` never
raises on what a card says: every metric entry becomes a claim, and whatever is wrong with it is kept in
its ``note``. A structure broken above the metrics (a ``results`` that is not a list, a result with no
``metrics``) becomes one claim with ``metric_type`` None and a note, so nothing is silently dropped.

Values (``value`` is a float or None; the original is kept as ``value_raw``):

* an int or float -> itself (NaN / infinity -> None, noted). A boolean is not a number (None, noted).
* a string holding a number (``"0.93"``) -> that number, noted.
* a percentage string (``"95%"``, ``"95.1 %"``) -> the fraction (0.95, 0.951), noted: the percent sign
  says unambiguously which scale is meant. A bare number is never rescaled here; ``verdicts`` decides the
  scale of a bare number above 1 against the metric's range and says so.
* ``"20.0 ± 1.2"`` (also ``+/-``, ``+-``; the form huggingface_hub's EvalResult documents) -> 20.0 with
  ``value_uncertainty`` 1.2, noted.
* anything else (``"n/a"``, ``"-"``, ``"0,95"``, a list, a missing value) -> None, noted.

Every field holds plain data a database can store (:func:`plain`): YAML's dates, sets, integer keys and
integers beyond 64 bits, which a card may carry in its args or values, become strings.

``verified`` is True only when the entry says ``verified: true`` *and* carries a ``verifyToken`` (the pair
Hugging Face's evaluation service writes; a bare ``verified: true`` is typed by hand, so it is noted and
counted as self-reported). The token itself is not kept (``has_verify_token`` says whether there was one).

Self-contradictions: claims that agree on (dataset, config, split, metric type, metric config, metric args)
but whose values differ are flagged: each gets ``contradiction_group`` (``"c1"``, ``"c2"``, ...) and
``contradiction_of`` (the ``position`` of the others). Equal values are duplicates: ``duplicate_group``
(``"d1"``, ...). Dataset is the ``type`` (the Hub dataset id), or the ``name`` when there is no type;
metric types compare case-insensitively.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from huggingface_hub.repocard_data import model_index_to_eval_results

#: Tolerance under which two parsed values count as the same value (not a contradiction).
SAME_VALUE_TOLERANCE = 1e-9

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PERCENT_RE = re.compile(rf"^({_NUMBER})\s*%$")
_PLUS_MINUS_RE = re.compile(rf"^({_NUMBER})\s*(?:±|\+/-|\+-)\s*({_NUMBER})\s*(%?)$")
_NUMBER_RE = re.compile(rf"^{_NUMBER}$")


def _shown(raw: Any, limit: int = 60) -> str:
    """``repr(raw)`` cut to ``limit`` characters, for a note."""
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(number: Any) -> float | None:
    """``number`` as a finite float, or None (NaN, infinity, or an integer too large for a float)."""
    try:
        value = float(number)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def parse_value(raw: Any) -> tuple[float | None, float | None, str | None]:
    """``(value, uncertainty, note)`` of a metric value as a card states it (rules in the module doc)."""
    if raw is None:
        return None, None, "no value"
    if isinstance(raw, bool):
        return None, None, f"the value {_shown(raw)} is a boolean, not a number"
    if isinstance(raw, (int, float)):
        value = _finite(raw)
        if value is None:
            return None, None, f"the value {_shown(raw)} is not a finite number"
        return value, None, None
    if not isinstance(raw, str):
        return None, None, f"the value is a {type(raw).__name__}, not a number"
    text = raw.strip()
    if _NUMBER_RE.match(text):
        value = _finite(text)
        if value is None:
            return None, None, f"the value {_shown(raw)} is not a finite number"
        return value, None, f"the value {_shown(raw)} is a string; read as the number {value!r}"
    match = _PERCENT_RE.match(text)
    if match and _finite(match.group(1)) is not None:
        value = _finite(match.group(1)) / 100.0
        return value, None, f"the value {_shown(raw)} is a percentage; read as the fraction {value!r}"
    match = _PLUS_MINUS_RE.match(text)
    if match and _finite(match.group(1)) is not None and _finite(match.group(2)) is not None:
        value, spread = _finite(match.group(1)), _finite(match.group(2))
        if match.group(3):
            value, spread = value / 100.0, spread / 100.0
        return value, spread, (f"the value {_shown(raw)} has an uncertainty; read as {value!r} "
                               f"(uncertainty {spread!r} kept apart)")
    return None, None, f"the value {_shown(raw)} is not a number"


_INT64 = 2 ** 63


def plain(value: Any) -> Any:
    """``value`` as plain storable data: mappings with string keys, lists, str, bool, finite-or-not floats,
    64-bit ints and None; anything else YAML may produce (dates, sets, bytes, huge ints) as a string."""
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    return str(value)


def _text(value: Any) -> str | None:
    """A scalar field as a string (YAML may give ints or floats for names and splits); None stays None."""
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _as_list(value: Any, what: str, notes: list[str]) -> list[Any]:
    """``value`` as a list; a single mapping is wrapped (noted), anything else is an empty list (noted)."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        notes.append(f"{what} is a mapping, not a list; read as a list of one")
        return [value]
    notes.append(f"{what} is missing" if value is None else f"{what} is a {type(value).__name__}, not a list")
    return []


def _mapping(value: Any, what: str, notes: list[str]) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if value is None:
        notes.append(f"no {what}")
    else:
        notes.append(f"{what} is a {type(value).__name__}, not a mapping")
    return {}


def _claim(model_name: str | None, position: str, result: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """A claim with the fields shared by every metric of one result block (metric fields empty)."""
    task = _mapping(result.get("task"), "task", notes)
    dataset = _mapping(result.get("dataset"), "dataset", notes)
    source_raw = result.get("source")
    source = None
    if isinstance(source_raw, Mapping):
        source = {"name": _text(source_raw.get("name")), "url": _text(source_raw.get("url"))}
    elif source_raw is not None:
        notes.append(f"source is a {type(source_raw).__name__}, not a mapping")
    if not task.get("type") and isinstance(result.get("task"), Mapping):
        notes.append("no task type")
    if isinstance(result.get("dataset"), Mapping) and not dataset.get("type") and not dataset.get("name"):
        notes.append("the dataset has neither type nor name")
    args = dataset.get("args")
    return {
        "model_name": model_name,
        "position": position,
        "task": _text(task.get("type")),
        "task_name": _text(task.get("name")),
        "dataset_type": _text(dataset.get("type")),
        "dataset_name": _text(dataset.get("name")),
        "config": _text(dataset.get("config")),
        "split": _text(dataset.get("split")),
        "revision": _text(dataset.get("revision")),
        "dataset_args": plain(args) if isinstance(args, (Mapping, str)) else None,
        "metric_type": None,
        "metric_name": None,
        "metric_config": None,
        "metric_args": None,
        "value": None,
        "value_raw": None,
        "value_uncertainty": None,
        "verified": False,
        "has_verify_token": False,
        "source": source,
        "note": None,
        "contradiction_group": None,
        "contradiction_of": [],
        "duplicate_group": None,
    }


def _with_metric(base: dict[str, Any], metric: Any, position: str, notes: list[str]) -> dict[str, Any]:
    claim = dict(base, position=position, contradiction_of=[])
    if not isinstance(metric, Mapping):
        notes.append(f"the metric entry is a {type(metric).__name__}, not a mapping")
        claim["value_raw"] = plain(metric) if isinstance(metric, (int, float, str)) else None
        return claim
    claim["metric_type"] = _text(metric.get("type"))
    if not claim["metric_type"]:
        notes.append("no metric type")
    claim["metric_name"] = _text(metric.get("name"))
    claim["metric_config"] = _text(metric.get("config"))
    args = metric.get("args")
    if args is not None and not isinstance(args, (Mapping, str)):
        notes.append(f"metric args is a {type(args).__name__}, not a mapping")
        args = None
    claim["metric_args"] = plain(args)
    raw = metric.get("value")
    claim["value_raw"] = plain(raw) if raw is None or isinstance(raw, (bool, int, float, str)) else repr(raw)
    value, spread, note = parse_value(raw)
    claim["value"], claim["value_uncertainty"] = value, spread
    if note:
        notes.append(note)
    token = metric.get("verifyToken")
    claim["has_verify_token"] = isinstance(token, str) and bool(token.strip())
    declared = metric.get("verified")
    if declared is True and not claim["has_verify_token"]:
        notes.append("says verified: true without a verifyToken; counted as self-reported")
    elif declared not in (None, True, False):
        notes.append(f"verified is {declared!r}, not a boolean; counted as self-reported")
    claim["verified"] = declared is True and claim["has_verify_token"]
    return claim


def _finish(claim: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    claim["note"] = "; ".join(notes) if notes else None
    return claim


def parse_claims(metadata: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every claim of a card's ``model-index`` as a flat record (see the module doc); never raises.

    A record: model_name, position (``model-index[0].results[1].metrics[2]``), task, task_name,
    dataset_type, dataset_name, config, split, revision, dataset_args, metric_type, metric_name,
    metric_config, metric_args, value (float or None), value_raw, value_uncertainty, verified,
    has_verify_token, source ({name, url} or None), note, contradiction_group, contradiction_of,
    duplicate_group. A card with no ``model-index`` gives an empty list.
    """
    if not isinstance(metadata, Mapping):
        return []
    model_index = metadata.get("model-index")
    if model_index is None:
        return []
    claims: list[dict[str, Any]] = []
    top_notes: list[str] = []
    entries = _as_list(model_index, "model-index", top_notes)
    if not entries:
        empty = model_index == []
        return [] if empty else [_finish(_claim(None, "model-index", {}, []), top_notes)]
    for i, entry in enumerate(entries):
        where = f"model-index[{i}]"
        entry_notes = list(top_notes)
        if not isinstance(entry, Mapping):
            entry_notes.append(f"{where} is a {type(entry).__name__}, not a mapping")
            claims.append(_finish(_claim(None, where, {}, []), entry_notes))
            continue
        model_name = _text(entry.get("name"))
        if model_name is None:
            entry_notes.append("the model-index entry has no name")
        results = _as_list(entry.get("results"), f"{where}.results", entry_notes)
        if not results:
            claims.append(_finish(_claim(model_name, where, {}, []), entry_notes))
            continue
        for j, result in enumerate(results):
            rwhere = f"{where}.results[{j}]"
            result_notes = list(entry_notes)
            if not isinstance(result, Mapping):
                result_notes.append(f"{rwhere} is a {type(result).__name__}, not a mapping")
                claims.append(_finish(_claim(model_name, rwhere, {}, []), result_notes))
                continue
            base = _claim(model_name, rwhere, result, result_notes)
            metrics = _as_list(result.get("metrics"), f"{rwhere}.metrics", result_notes)
            if not metrics:
                claims.append(_finish(base, result_notes))
                continue
            for k, metric in enumerate(metrics):
                metric_notes = list(result_notes)
                claim = _with_metric(base, metric, f"{rwhere}.metrics[{k}]", metric_notes)
                claims.append(_finish(claim, metric_notes))
    flag_self_contradictions(claims)
    return claims


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def claim_key(claim: Mapping[str, Any]) -> tuple[str, ...] | None:
    """What a claim is about: (dataset, config, split, metric type, metric config, metric args); None for a
    claim with no metric type or no dataset."""
    dataset = claim.get("dataset_type") or claim.get("dataset_name")
    metric = claim.get("metric_type")
    if not dataset or not metric:
        return None
    return (dataset, _canonical(claim.get("config")), _canonical(claim.get("split")), metric.strip().lower(),
            _canonical(claim.get("metric_config")), _canonical(claim.get("metric_args")))


def flag_self_contradictions(claims: list[dict[str, Any]]) -> None:
    """Mark, in place, claims about the same thing (:func:`claim_key`) with different values
    (``contradiction_group``, ``contradiction_of``) or the same value (``duplicate_group``)."""
    by_key: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for claim in claims:
        key = claim_key(claim)
        if key is not None and claim.get("value") is not None:
            by_key.setdefault(key, []).append(claim)
    n_contradictions = n_duplicates = 0
    for group in by_key.values():
        if len(group) < 2:
            continue
        values = [c["value"] for c in group]
        if max(values) - min(values) > SAME_VALUE_TOLERANCE:
            n_contradictions += 1
            gid = f"c{n_contradictions}"
            for claim in group:
                claim["contradiction_group"] = gid
                claim["contradiction_of"] = [c["position"] for c in group if c is not claim]
        else:
            n_duplicates += 1
            for claim in group:
                claim["duplicate_group"] = f"d{n_duplicates}"


def hub_parse_error(metadata: Mapping[str, Any] | None) -> str | None:
    """Why huggingface_hub's own ``model_index_to_eval_results`` rejects this card's model-index (what
    ``ModelCard.load`` would raise on), or None when it parses or there is none."""
    if not isinstance(metadata, Mapping) or metadata.get("model-index") is None:
        return None
    try:
        model_index_to_eval_results(metadata["model-index"])
    except Exception as error:  # the library raises KeyError, TypeError, ValueError, AttributeError...
        return f"{type(error).__name__}: {error}"
    return None
