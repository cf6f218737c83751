"""Stored results and card verdicts as flat rows, one per value: what ``zooeval export`` writes (CSV or JSON lines)."""
from __future__ import annotations

from typing import Any, Iterator

from processors.base import processor_label

#: the columns of an exported row
EXPORT_FIELDS = ["model", "source", "revision", "dataset", "split", "variant", "processor", "class", "metric", "value"]


def export_rows(store, superseded: bool = False) -> Iterator[dict[str, Any]]:
    """Every value of the current results (with ``superseded``: of every stored result), one row per (model,
    revision, dataset, split, variant, class or overall, metric); then the card claims and their verdicts
    (:func:`claim_rows`)."""
    for r in (store.iter_results() if superseded else store.latest_results()):
        base = {"model": r["model_name"], "source": r["source"], "revision": r["model_revision"], "dataset": r["dataset"],
                "split": r["split"], "variant": r["variant"], "processor": processor_label(r)}
        for metric, value in r.get("overall", {}).items():
            yield {**base, "class": "overall", "metric": metric, "value": value}
        for label, metrics in (r.get("per_class") or {}).items():
            for metric, value in metrics.items():
                if isinstance(value, (str, list, dict)) or value is None:  # a detection class's supercategory
                    continue
                yield {**base, "class": label, "metric": metric, "value": value}
        # detection's supercategories; class groups; multiple choice's accuracy by the gold ending's position
        for key, prefix in (("per_supercategory", "supercategory"), ("per_group", "group"), ("per_gold_position", "gold")):
            for name, metrics in (r.get(key) or {}).items():
                for metric, value in metrics.items():
                    if isinstance(value, (int, float)):
                        yield {**base, "class": f"{prefix}:{name}", "metric": metric, "value": value}
        cm = r.get("confusion_matrix")
        if cm:  # every cell of a dense matrix; the non-zero cells of a sparse one (more than 100 classes)
            labels = cm["labels"]
            cells = ((labels[i], labels[j], n) for i, j, n in cm["entries"]) if cm.get("format") == "sparse" else (
                (t, p, n) for t, row in zip(labels, cm["matrix"]) for p, n in zip(labels, row))
            for true_label, pred_label, value in cells:
                yield {**base, "class": true_label, "metric": f"confusion:predicted={pred_label}", "value": value}
        for metric in ("time_in_seconds", "time_per_instance", "instances_per_second", "load_s", "warmup_s", "batch_size",
                       "n_detections"):
            if metric in r.get("runtime", {}):
                yield {**base, "class": "overall", "metric": f"runtime:{metric}", "value": r["runtime"][metric]}
        for metric, value in (r.get("runtime", {}).get("single_stream") or {}).items():
            yield {**base, "class": "overall", "metric": f"runtime:single_stream_{metric}", "value": value}
        for metric, value in (r.get("module_params") or {}).items():  # e.g. detection's score_threshold, nms_iou
            if isinstance(value, (int, float)):
                yield {**base, "class": "overall", "metric": f"param:{metric}", "value": value}
    yield from claim_rows(store, superseded)


#: The fields of a verdict exported as rows of its claim (class ``claim:<position>``), in this order.
CLAIM_EXPORT_FIELDS = ("metric_type", "claimed", "verified", "measured", "interval_low", "interval_high", "level",
                       "gap", "method", "verdict", "reason", "contradiction_group")


def claim_rows(store, superseded: bool = False) -> Iterator[dict[str, Any]]:
    """The card claims with their verdicts, in the export's shape: one row per field of ``CLAIM_EXPORT_FIELDS``,
    ``class`` ``claim:<position in the card's model-index>``, dataset and split as the card names them, the
    processor of the result judged against (or empty). Fields with no value are left out. With ``superseded``,
    also the stored verdicts on the claims of older revisions."""
    from cards.verdicts import claim_variant
    from service.claims import claimed_models, current_verdicts

    current = current_verdicts(store, claimed_models(store))
    verdicts = [v for vs in current.values() for v in vs]
    if superseded:
        shown = {(v["model_key"], v["model_revision"], v["position"]) for v in verdicts}
        verdicts += [v for v in store.verdicts() if (v["model_key"], v["model_revision"], v["position"]) not in shown]
    for v in verdicts:
        claim = v.get("claim") or {}
        interval = v.get("interval") or [None, None]
        value = {"metric_type": claim.get("metric_type"),
                 "claimed": claim.get("value", claim.get("value_raw")), "verified": bool(claim.get("verified")),
                 "measured": v.get("measured"), "interval_low": interval[0], "interval_high": interval[1],
                 "level": v.get("level"), "gap": v.get("gap"), "method": v.get("method"), "verdict": v.get("verdict"),
                 "reason": v.get("reason"), "contradiction_group": claim.get("contradiction_group")}
        base = {"model": v.get("model_name"), "source": v.get("source"),
                "revision": v.get("model_revision"),
                "dataset": claim.get("dataset_type") or claim.get("dataset_name"), "split": claim.get("split"),
                "variant": claim_variant(claim), "processor": (v.get("result") or {}).get("processor") or "",
                "class": f"claim:{v.get('position')}"}
        for field in CLAIM_EXPORT_FIELDS:
            if value[field] is not None:
                yield {**base, "metric": field, "value": value[field]}
