"""Infer a model's training dataset from its label set when the model declares none (thesis chapter 7).

A model card often names no dataset, but the config's ``id2label`` usually gives it away: a head whose
labels are exactly a known dataset's classes was almost certainly trained on that dataset (or on one with
the same classes). For each known dataset of the model's datatype, every model label must map to a class
by the same rules as evaluation uses (exact, normalised, synonym, numeric; core.labels), and the
mapped labels must cover at least ``MIN_COVERAGE`` of the dataset's classes. The best-covering datasets
win (all of them on a tie: IMDB and Rotten Tomatoes both have the classes negative/positive).

A timm model whose config names no labels (no ``label_names``: only ``num_classes``) is matched by its
pretrained tag instead (``pretrained_tag``): timm tags name the dataset the head was trained on last
("a1_in1k", "in21k_ft_in1k" -> ImageNet-1k), and timm ships that dataset's class order (its WordNet synset
list). A known dataset qualifies when it has as many classes as the model has outputs and its synonyms map
synset i to its class i for every i, so the model's output i is the dataset's class i (the module then maps
the generic output names by index).

The result is stored next to the declared datasets, never mixed into them:
``inferred_datasets`` (names) and ``dataset_evidence`` (method, per-dataset coverage, labels). Models
that stay unevaluable get ``unevaluated_reason``, shown by ``zooeval models``.
"""
from __future__ import annotations

import functools
import re
from typing import Any

from core.labels import LabelMappingError, map_labels
from core.store import Update
from modules.base import MODULES, evaluated_zero_shot
from tasks.base import TaskKind, task_for_dataset

MIN_COVERAGE = 0.8
PRETRAINED_TAG = "pretrained_tag"  # dataset_evidence method of the timm tag rule
#: the dataset tokens of timm pretrained tags -> timm's ImageNet subset (timm.data.ImageNetInfo) whose
#: ordered synset list is the class order of such a head
TIMM_TAG_SUBSETS = {"in1k": "imagenet-1k", "in12k": "imagenet-12k"}
_TAG_DATASET_TOKEN = re.compile(r"^in\d+k$")


def candidate_datasets(model_task: str | None, datasets: dict[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], TaskKind]]:
    """The registered datasets a model of this (Hub) task could have been trained on: those of the task kinds
    whose modules take such models, with their kind."""
    kinds = {cls.task for cls in MODULES if model_task in (cls.model_tasks or (cls.task,))}
    out = {}
    for name, ds in sorted(datasets.items()):
        try:
            kind = task_for_dataset(ds)
        except KeyError:
            continue
        if kind.name in kinds and ds.get("classes"):
            out[name] = (ds, kind)
    return out


def infer_training_datasets(model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """(inferred dataset names, evidence). An empty list means no known dataset matches; evidence says why
    (no reason: a zero-shot model, evaluated whatever it was trained on)."""
    if evaluated_zero_shot(model.get("task")):
        return [], {"method": "zero-shot", "reason": None}
    candidates_ds = candidate_datasets(model.get("task"), datasets)
    if not candidates_ds:
        return [], {"method": "label_set",
                    "reason": f"no registered dataset of task {model.get('task')!r} to match its labels with"}
    raw = (model.get("config") or {}).get("id2label") or {}
    try:
        id2label = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        return [], {"method": "label_set", "reason": "config id2label has non-integer ids"}
    if not id2label:
        if ((model.get("config") or {}).get("pretrained_cfg") or {}).get("tag"):
            return infer_from_pretrained_tag(model, datasets)
        return [], {"method": "label_set", "reason": "the model declares no training dataset and no labels (config id2label)"}
    candidates: list[tuple[float, str, int]] = []
    best_partial: tuple[int, str] | None = None
    for name, (ds, kind) in candidates_ds.items():
        classes = [c["label"] for c in ds["classes"]]
        named = kind.model_labels(id2label)  # a detector's placeholders (COCO's "N/A") name no class
        if not named:
            continue
        try:
            mapping = _map_for_inference(named, classes, ds.get("synonyms"))
        except LabelMappingError as exc:
            matched = len(named) - len(exc.unmapped) if exc.unmapped else 0
            if exc.unmapped and len(exc.unmapped) < len(named) and (best_partial is None or matched > best_partial[0]):
                best_partial = (matched, name)
            continue
        covered = len(set(mapping.model_to_dataset))
        candidates.append((covered / len(classes), name, covered))
    labels = [lab for _, lab in sorted(id2label.items())]
    sample = labels[:10] + (["..."] if len(labels) > 10 else [])
    good = [c for c in candidates if c[0] >= MIN_COVERAGE]
    if not good:
        if candidates:
            cov, name, covered = max(candidates)
            why = f"labels {sample} cover only {covered} of the {len(datasets[name]['classes'])} classes of {name!r}"
        elif best_partial:
            why = (f"labels {sample} match no known {model.get('task')} dataset "
                   f"(closest: {best_partial[1]!r}, {best_partial[0]} of {len(labels)} labels)")
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


def _map_for_inference(id2label: dict[int, str], classes: list[str], synonyms: dict[str, str] | None):
    """Map by name; where the only refused labels are names the model repeats at outputs whose dataset class
    is one the name can mean (every ImageNet-1k head's two "crane"s at 134 and 517), the head's order is the
    dataset's: map them by index, as for a model trained on it."""
    try:
        return map_labels(id2label, classes, synonyms, trained_on_dataset=False)
    except LabelMappingError as exc:
        if not exc.unmapped or sorted(exc.unmapped) != sorted(exc.duplicates):
            raise
        return map_labels(id2label, classes, synonyms, trained_on_dataset=True)


def tag_subset(tag: str | None) -> str | None:
    """The timm ImageNet subset a pretrained tag says the head was trained on last (its last dataset token:
    "a1_in1k", "in21k_ft_in1k", "in1k_384" -> "imagenet-1k"), or None for a tag naming no known one."""
    tokens = [t for t in re.split(r"[_.\-]", str(tag or "").lower()) if _TAG_DATASET_TOKEN.match(t)]
    return TIMM_TAG_SUBSETS.get(tokens[-1]) if tokens else None


@functools.lru_cache(maxsize=None)
def _subset_synsets(subset: str) -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo(subset).label_names())


_CLASS_ORDER_SEEN: dict[tuple[str, str, str], bool] = {}  # (subset, dataset, dataset revision) -> _in_class_order


def _in_class_order(name: str, ds: dict[str, Any], subset: str) -> bool:
    """Whether the dataset's synonyms map the subset's synset i to its class i, for every class (remembered per
    dataset revision: a scrape asks once per dataset, not once per model)."""
    key = (subset, name, str(ds["revision"])) if ds.get("revision") else None
    if key in _CLASS_ORDER_SEEN:
        return _CLASS_ORDER_SEEN[key]
    synsets = _subset_synsets(subset)
    classes = [c["label"] for c in ds["classes"]]
    try:
        same = len(classes) == len(synsets) and map_labels(dict(enumerate(synsets)), classes, ds.get("synonyms"),
                                                           trained_on_dataset=False).model_to_dataset == list(range(len(classes)))
    except LabelMappingError:
        same = False
    if key is not None:
        _CLASS_ORDER_SEEN[key] = same
    return same


def infer_from_pretrained_tag(model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """(dataset names, evidence) for a timm model with no label names, from its pretrained tag and output count
    (the module docstring says when a dataset qualifies)."""
    config = model.get("config") or {}
    tag = (config.get("pretrained_cfg") or {}).get("tag")
    num_classes = config.get("num_classes")
    evidence: dict[str, Any] = {"method": PRETRAINED_TAG, "tag": tag, "num_classes": num_classes}
    subset = tag_subset(tag)
    if subset is None:
        return [], {**evidence, "reason": f"the model names no labels and its timm tag {tag!r} names no dataset whose "
                                          f"class order is known ({', '.join(sorted(TIMM_TAG_SUBSETS))})"}
    try:
        synsets = _subset_synsets(subset)
    except ImportError as exc:
        return [], {**evidence, "reason": f"timm is needed to read the class order of {subset} ({exc})"}
    evidence["class_order"] = subset
    if num_classes != len(synsets):
        return [], {**evidence, "reason": f"the timm tag {tag!r} says {subset} ({len(synsets)} classes), but the model "
                                          f"has {num_classes} outputs"}
    names = [name for name, (ds, _) in candidate_datasets(model.get("task"), datasets).items()
             if _in_class_order(name, ds, subset)]
    if not names:
        return [], {**evidence, "reason": f"the timm tag {tag!r} says {subset}, but no known {model.get('task')} dataset "
                                          f"has its {num_classes} classes in its order (as synset synonyms)"}
    return names, evidence


def infer_missing_training_datasets(store, source: str | None = None, log=print) -> dict[str, int]:
    """For active models that declare no training dataset, infer one from their labels; record the evidence
    or the reason they stay unevaluated. Models that declare a dataset are left alone."""
    datasets = store.datasets()
    query: dict[str, Any] = {"status": "active", "$or": [{"datasets": {"$exists": False}}, {"datasets": {"$size": 0}}]}
    if source:
        query["source"] = source
    inferred = unevaluated = 0
    updates: list[Update] = []
    projection = {"task": 1, "config.id2label": 1, "config.num_classes": 1, "config.pretrained_cfg.tag": 1}
    for model in store.find_models(query, projection):
        names, evidence = infer_training_datasets(model, datasets)
        if names:
            inferred += 1
            updates.append(Update({"_id": model["_id"]}, set={"inferred_datasets": names, "dataset_evidence": evidence},
                                  unset=["unevaluated_reason"]))
        elif evidence["reason"] is None:  # zero-shot: evaluated on every dataset of its task
            updates.append(Update({"_id": model["_id"]}, set={"inferred_datasets": [], "dataset_evidence": evidence},
                                  unset=["unevaluated_reason"]))
        else:
            unevaluated += 1
            updates.append(Update({"_id": model["_id"]}, set={"inferred_datasets": [], "dataset_evidence": evidence,
                                                               "unevaluated_reason": evidence["reason"]}))
        if len(updates) >= 5000:
            store.update_models(updates)
            updates = []
    store.update_models(updates)
    log(f"training data inferred from labels for {inferred} models; {unevaluated} models match no known dataset")
    return {"inferred": inferred, "unmatched": unevaluated}
