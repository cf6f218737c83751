"""Infer a model's training dataset from its label set when the model declares none (thesis chapter 7).

A model card often names no dataset, but the config's ``id2label`` usually gives it away: a head whose
labels are exactly a known dataset's classes was almost certainly trained on that dataset (or on one with
the same classes). For each known dataset of the model's datatype, every model label must map to a class
by the same rules as evaluation uses (exact, normalised, synonym, numeric; pipeline.labels), and the
mapped labels must cover at least ``MIN_COVERAGE`` of the dataset's classes. The best-covering datasets
win (all of them on a tie: IMDB and Rotten Tomatoes both have the classes negative/positive).

The result is stored next to the declared datasets, never mixed into them:
``inferred_datasets`` (names) and ``dataset_evidence`` (method, per-dataset coverage, labels). Models
that stay unevaluable get ``unevaluated_reason``, shown by ``zooeval models``.
"""
from __future__ import annotations

from typing import Any

from pipeline.labels import LabelMappingError, map_labels

MIN_COVERAGE = 0.8
TASK_DATATYPE = {"image-classification": "image", "text-classification": "text", "object-detection": "image"}


def dataset_task(ds: dict[str, Any]) -> str:
    """A registered dataset's task: its own ``task`` (COCO folders: "object-detection"), else classification
    of its datatype."""
    return ds.get("task") or f"{ds.get('datatype')}-classification"


def infer_training_datasets(model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """(inferred dataset names, evidence). An empty list means no known dataset matches; evidence says why."""
    datatype = TASK_DATATYPE.get(model.get("task") or "")
    if datatype is None:
        return [], {"method": "label_set", "reason": f"task {model.get('task')!r} has no label-set inference"}
    raw = (model.get("config") or {}).get("id2label") or {}
    try:
        id2label = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        return [], {"method": "label_set", "reason": "config id2label has non-integer ids"}
    if model.get("task") == "object-detection":  # COCO's "N/A" gaps and "background" name no category
        from modules.detection import is_placeholder_label

        kept = [lab for _, lab in sorted(id2label.items()) if not is_placeholder_label(lab)]
        id2label = dict(enumerate(kept))
    if not id2label:
        return [], {"method": "label_set", "reason": "the model declares no training dataset and no labels (config id2label)"}
    candidates: list[tuple[float, str, int]] = []
    best_partial: tuple[int, str] | None = None
    for name, ds in sorted(datasets.items()):
        if ds.get("datatype") != datatype or dataset_task(ds) != model.get("task"):
            continue
        classes = [c["label"] for c in ds["classes"]]
        try:
            mapping = map_labels(id2label, classes, ds.get("synonyms"), trained_on_dataset=False)
        except LabelMappingError as exc:
            matched = len(id2label) - len(exc.unmapped) if exc.unmapped else 0
            if exc.unmapped and len(exc.unmapped) < len(id2label) and (best_partial is None or matched > best_partial[0]):
                best_partial = (matched, name)
            continue
        covered = len(set(mapping.model_to_dataset))
        candidates.append((covered / len(classes), name, covered))
    labels = [id2label[i] for i in sorted(id2label)]
    sample = labels[:10] + (["..."] if len(labels) > 10 else [])
    good = [c for c in candidates if c[0] >= MIN_COVERAGE]
    if not good:
        if candidates:
            cov, name, covered = max(candidates)
            why = f"labels {sample} cover only {covered} of the {len(datasets[name]['classes'])} classes of {name!r}"
        elif best_partial:
            why = f"labels {sample} match no known {model.get('task')} dataset (closest: {best_partial[1]!r}, {best_partial[0]} of {len(labels)} labels)"
        else:
            why = f"labels {sample} match no known {model.get('task')} dataset"
        return [], {"method": "label_set", "reason": why}
    top = max(c[0] for c in good)
    names = [name for cov, name, _ in good if cov == top]
    evidence = {
        "method": "label_set",
        "model_labels": len(labels),
        "coverage": {name: round(cov, 4) for cov, name, _ in good},
        "labels": sample,
    }
    return names, evidence


def infer_missing_training_datasets(store, source: str | None = None, log=print) -> dict[str, int]:
    """For active models that declare no training dataset, infer one from their labels; record the evidence
    or the reason they stay unevaluated. Models that declare a dataset are left alone."""
    datasets = store.datasets()
    query: dict[str, Any] = {"status": "active", "$or": [{"datasets": {"$exists": False}}, {"datasets": {"$size": 0}}]}
    if source:
        query["source"] = source
    inferred = unevaluated = 0
    from pymongo import UpdateOne

    ops = []
    for model in store.db.models.find(query, {"task": 1, "config.id2label": 1}):
        names, evidence = infer_training_datasets(model, datasets)
        if names:
            inferred += 1
            ops.append(UpdateOne({"_id": model["_id"]}, {"$set": {"inferred_datasets": names, "dataset_evidence": evidence},
                                                         "$unset": {"unevaluated_reason": ""}}))
        else:
            unevaluated += 1
            ops.append(UpdateOne({"_id": model["_id"]}, {"$set": {"inferred_datasets": [], "dataset_evidence": evidence,
                                                                  "unevaluated_reason": evidence["reason"]}}))
        if len(ops) >= 5000:
            store.db.models.bulk_write(ops, ordered=False)
            ops = []
    if ops:
        store.db.models.bulk_write(ops, ordered=False)
    log(f"training data inferred from labels for {inferred} models; {unevaluated} models match no known dataset")
    return {"inferred": inferred, "unmatched": unevaluated}
