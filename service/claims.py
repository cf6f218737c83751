"""Verdicts on what the stored models' cards claim: every claim (scraper.repo_metadata.card_claims, kept on the
model document) judged against the model's latest results by cards.verdicts, and stored in ``claims``, one
document per model revision and claim position.

How a claim finds its measurement:

* **revision**: only results of the model revision whose card made the claims (``claims_revision``) count;
* **dataset**: the claim's ``dataset.type`` (the Hub id) or ``dataset.name`` equals the result's dataset as
  zooeval compares dataset names between zoos (modules.base.dataset_key: case, spaces, punctuation and a Hub
  namespace ignored, so ``cornell-movie-review-data/rotten_tomatoes`` is zooeval's ``rotten_tomatoes``). When
  neither names a registered dataset, the ``config`` is tried (``{type: glue, config: mrpc}`` is ``mrpc``).
  A result on a dataset registered as compatible with the claim's (``compatible_with``, either way) is never
  held against the claim: compatible datasets share their classes, not their data. The verdict is then
  "not comparable" and names them;
* **split, variant, metric**: cards.verdicts (the same split, aliases merged; the original variant unless the
  claim names one; a metric zooeval computes, with its averaging, from the processor that computes it).
"""
from __future__ import annotations

import fnmatch
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cards.verdicts import NOT_YET_MEASURED, judge_against_results
from core.store import Store
from modules.base import dataset_key
from tasks.base import task_for_result

#: The fields of a model document the verdicts need.
MODEL_FIELDS = {"name": 1, "source": 1, "claims": 1, "claims_revision": 1, "claims_error": 1, "revision": 1}


class DatasetMatcher:
    """Whether a claim and a result are on the same dataset, or on compatible ones (see the module doc)."""

    def __init__(self, datasets: Mapping[str, Mapping[str, Any]]) -> None:
        self.registered = {dataset_key(name) for name in datasets}
        self.compatible_keys = {name: {dataset_key(c) for c in doc.get("compatible_with") or []}
                                for name, doc in datasets.items()}

    def claim_keys(self, claim: Mapping[str, Any]) -> set[str]:
        """The dataset keys a claim names: its type and name, else (when neither is registered) its config."""
        named = {dataset_key(claim[f]) for f in ("dataset_type", "dataset_name") if claim.get(f)}
        if not named & self.registered and claim.get("config"):
            return {dataset_key(claim["config"])}
        return named

    def same(self, claim: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        return dataset_key(result.get("dataset")) in self.claim_keys(claim)

    def compatible(self, claim: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        keys = self.claim_keys(claim)
        return bool(keys & self.compatible_keys.get(result.get("dataset"), set())) or any(
            dataset_key(result.get("dataset")) in self.compatible_keys.get(name, set())
            for name in self.compatible_keys if dataset_key(name) in keys)

    def known(self, claim: Mapping[str, Any]) -> bool:
        return bool(self.claim_keys(claim) & self.registered)


def judge_model(model: Mapping[str, Any], results: Iterable[Mapping[str, Any]],
                matcher: DatasetMatcher) -> list[dict[str, Any]]:
    """The verdict documents on one model's claims against its results (those of ``claims_revision``)."""
    results = list(results)
    docs = []
    for order, claim in enumerate(model.get("claims") or []):
        verdict = judge_against_results(claim, results, matcher.same, compatible=matcher.compatible)
        if verdict["verdict"] == NOT_YET_MEASURED and verdict["result"] is None and not matcher.known(claim):
            named = claim.get("dataset_type") or claim.get("dataset_name") or claim.get("config")
            verdict["reason"] = (f"zooeval has no dataset registered as {named!r}" if named
                                 else "the claim names no dataset")
        docs.append({**verdict, "model_key": model["_id"], "model_revision": model.get("claims_revision") or "",
                     "position": claim.get("position") or f"claims[{order}]", "order": order, "claim": dict(claim),
                     "model_name": model.get("name"), "source": model.get("source"),
                     "result_id": (verdict.get("result") or {}).get("id")})
    return docs


def measured_results(store: Store, model_key: str, revision: str | None) -> list[dict[str, Any]]:
    """The newest results of one model revision, each naming its task kind (results stored before results
    named it get their module's)."""
    results = store.latest_results({"model_key": model_key, "model_revision": revision})
    for result in results:
        if not result.get("task"):
            kind = task_for_result(result)
            result["task"] = kind.name if kind is not None else None
    return results


def _results_of(store: Store, model: Mapping[str, Any]) -> list[dict[str, Any]]:
    return measured_results(store, model["_id"], model.get("claims_revision"))


def update_verdicts(store: Store, model_keys: Iterable[str] | None = None,
                    log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Judge and store the verdicts on the claims of the active models with claims (of ``model_keys`` only, when
    given). A model whose verdicts cannot be made is reported and skipped. Returns counts: models, claims, per
    verdict, errors, seconds."""
    started = time.perf_counter()
    query: dict[str, Any] = {"n_claims": {"$gt": 0}}
    if model_keys is not None:
        query["_id"] = {"$in": sorted(set(model_keys))}
    matcher = DatasetMatcher(store.datasets())
    counts: Counter[str] = Counter()
    for model in store.iter_models(query, MODEL_FIELDS):
        try:
            docs = judge_model(model, _results_of(store, model), matcher)
            store.save_verdicts(model["_id"], model.get("claims_revision") or "", docs)
        except Exception as exc:  # one model's broken claim must not cost the others their verdicts
            counts["errors"] += 1
            log(f"claims of {model.get('name')}: verdicts not updated: {type(exc).__name__}: {exc}")
            continue
        counts["models"] += 1
        counts["claims"] += len(docs)
        counts.update(d["verdict"] for d in docs)
    return {**counts, "seconds": round(time.perf_counter() - started, 3)}


def stale_models(store: Store) -> set[str]:
    """The active models with claims that have no stored verdicts for the revision the claims were read at
    (scraped since the last cycle, or a new revision)."""
    judged = store.judged_revisions()
    return {m["_id"] for m in store.iter_models({"n_claims": {"$gt": 0}}, {"claims_revision": 1})
            if (m["_id"], m.get("claims_revision") or "") not in judged}


def update_after_run(store: Store, run_id: str, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Update the verdicts of the models a run wrote results for (a new metric re-scored from stored predictions
    included) and of those never judged at their current claims; say what was done."""
    keys = set(store.result_model_keys({"run_id": run_id})) | stale_models(store)
    counts = update_verdicts(store, keys, log)
    if counts.get("models") or counts.get("errors"):
        shown = ", ".join(f"{counts[v]} {v}" for v in ("confirmed", "contradicted", "not comparable", "not yet measured")
                          if counts.get(v))
        log(f"claims: {counts.get('claims', 0)} verdicts on the cards of {counts.get('models', 0)} models updated in "
            f"{counts['seconds']:.2f}s ({shown or 'none'})"
            + (f"; {counts['errors']} models failed" if counts.get("errors") else ""))
    return counts


def current_verdicts(store: Store, models: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per model id, the verdicts on its current claims, in the card's order: the stored ones, and for claims
    with none stored yet (no cycle since the scrape), a verdict judged now and not stored."""
    models = [m for m in models if m.get("claims")]
    if not models:
        return {}
    stored = {doc["_id"]: doc for doc in store.verdicts({"model_key": {"$in": [m["_id"] for m in models]}})}
    matcher = None
    out: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        revision = model.get("claims_revision") or ""
        prefix = f"{model['_id']}@{revision}#"
        have = [stored.get(prefix + (c.get("position") or "")) for c in model["claims"]]
        if any(v is None for v in have):
            matcher = matcher or DatasetMatcher(store.datasets())
            fresh = judge_model(model, _results_of(store, model), matcher)
            have = [v if v is not None else f for v, f in zip(have, fresh)]
        out[model["_id"]] = have
    return out


def claimed_models(store: Store, model_glob: str | None = None) -> list[dict[str, Any]]:
    """The active models whose card was read (``n_claims`` set, with claims or without), optionally only those
    whose name matches ``model_glob``; by name."""
    models = store.find_models({"status": "active", "n_claims": {"$exists": True}}, MODEL_FIELDS,
                               sort=[("name", 1), ("_id", 1)])
    if model_glob:
        models = [m for m in models if fnmatch.fnmatchcase(m["name"], model_glob)]
    return models
