"""Dataset metadata (thesis 3.2.2): register local datasets, their classes, splits and examples."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data import DataError, LocalDataset, dataset_metadata

EXAMPLES_PER_CLASS = 20


def dataset_doc(ds: LocalDataset) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    meta = ds.meta
    classes = ds.classes
    extra = meta.get("class_extra") or {}
    splits = []
    examples: list[dict[str, Any]] = []
    per_class = {i: 0 for i in range(len(classes))}
    for split in ds.splits:
        rows = ds.rows(split)
        counts = {c: 0 for c in classes}
        for row in rows:
            label = int(row["label"])
            if not 0 <= label < len(classes):
                raise DataError(f"dataset {ds.name!r} split {split!r}: sample {row['id']!r} has label {label}, classes are 0..{len(classes) - 1}")
            counts[classes[label]] += 1
            if split == "train" or "train" not in ds.splits:
                if per_class[label] < EXAMPLES_PER_CLASS:
                    per_class[label] += 1
                    examples.append({"class_id": label, "example": row.get("text") if ds.datatype == "text" else row.get("file")})
        splits.append({"name": split, "total": len(rows), "class_counts": counts})
    doc = {
        "name": ds.name,
        "datatype": ds.datatype,
        **dataset_metadata(meta),
        "classes": [{"id": i, "label": c, "extra": extra.get(c, {})} for i, c in enumerate(classes)],
        "splits": splits,
        "revision": ds.revision(),
        "path": str(ds.root.resolve()),
    }
    return doc, examples


def check_class_names(doc: dict[str, Any]) -> None:
    """Raise DataError when a class name is used twice: results are keyed by class name, so two classes of
    one name (ImageNet's "crane" 134 and 517) would merge. Name them apart (e.g. "crane (bird)")."""
    seen: dict[str, int] = {}
    dupes: list[str] = []
    for c in doc["classes"]:
        if c["label"] in seen:
            dupes.append(f"{c['label']!r} (classes {seen[c['label']]} and {c['id']})")
        seen.setdefault(c["label"], c["id"])
    if dupes:
        raise DataError(f"dataset {doc['name']!r} names two classes alike: {', '.join(dupes[:10])}; class names must "
                        "be unique (results are kept per class name): rename them, e.g. 'crane (bird)' and 'crane (machine)'")


def register_datasets(store, root: str | Path, log=print) -> list[str]:
    """Register every dataset folder (holding dataset.json) under root. Unreadable ones are reported, not fatal.

    A COCO-format detection folder (core.coco.is_coco_dataset: format "coco" or task "object-detection")
    is read with CocoDataset; its document has task "object-detection", format "coco" and per class
    ``extra = {"category_id", "supercategory"}``, which the executor's detection path reads."""
    from core.coco import CocoDataset, is_coco_dataset

    root = Path(root)
    names = []
    if not root.is_dir():
        return names
    for folder in sorted(p for p in root.iterdir() if (p / "dataset.json").is_file()):
        try:
            if is_coco_dataset(folder):
                ds = CocoDataset.open(folder)
                doc, examples = ds.dataset_doc()
            else:
                ds = LocalDataset.open(folder)
                doc, examples = dataset_doc(ds)
            check_class_names(doc)
        except Exception as exc:  # one unreadable dataset is reported and skipped; the others are registered
            log(f"dataset {folder.name}: skipped: {exc if isinstance(exc, DataError) else f'{type(exc).__name__}: {exc}'}")
            continue
        store.upsert_dataset(doc, examples)
        names.append(ds.name)
    return names


TASKS = [{"name": "image-classification"}, {"name": "text-classification"}, {"name": "object-detection"}]

METRICS = [
    {"name": "accuracy", "description": "Share of instances whose top-1 prediction is the true class", "calculation": "correct / n", "values": "0 to 1, higher is better", "tasks": ["image-classification", "text-classification"]},
    {"name": "precision", "description": "Of the instances predicted as a class, the share that are that class", "calculation": "TP / (TP + FP), 0 when TP + FP = 0", "values": "0 to 1, higher is better", "tasks": ["image-classification", "text-classification"]},
    {"name": "recall", "description": "Of the instances of a class, the share predicted as that class", "calculation": "TP / (TP + FN), 0 when TP + FN = 0", "values": "0 to 1, higher is better", "tasks": ["image-classification", "text-classification"]},
    {"name": "f1", "description": "Harmonic mean of precision and recall", "calculation": "2 TP / (2 TP + FP + FN)", "values": "0 to 1, higher is better", "tasks": ["image-classification", "text-classification"]},
    {"name": "macro_f1", "description": "Unweighted mean of per-class F1 over the classes present in the ground truth or the predictions (scikit-learn's default)", "calculation": "mean over present classes of f1", "values": "0 to 1", "tasks": ["image-classification", "text-classification"]},
    {"name": "macro_f1_all_classes", "description": "Unweighted mean of per-class F1 over all dataset classes (a class absent from the ground truth and the predictions counts 0)", "calculation": "mean over all C classes of f1", "values": "0 to 1", "tasks": ["image-classification", "text-classification"]},
    {"name": "micro_f1", "description": "F1 of the pooled TP/FP/FN counts (equals accuracy for single-label classification)", "calculation": "2 sum TP / (2 sum TP + sum FP + sum FN)", "values": "0 to 1", "tasks": ["image-classification", "text-classification"]},
    {"name": "weighted_f1", "description": "Per-class F1 averaged with support as weights", "calculation": "sum_c support_c f1_c / n", "values": "0 to 1", "tasks": ["image-classification", "text-classification"]},
    {"name": "AP", "description": "COCO average precision over IoU thresholds 0.50:0.05:0.95, all areas, up to 100 detections per image (processors.detection, equal to pycocotools)", "calculation": "mean over classes and IoU thresholds of 101-point interpolated precision", "values": "0 to 1 (-1: undefined), higher is better", "tasks": ["object-detection"]},
    {"name": "AP50", "description": "COCO average precision at IoU 0.50", "calculation": "as AP at the single IoU threshold 0.5", "values": "0 to 1 (-1: undefined), higher is better", "tasks": ["object-detection"]},
    {"name": "AP75", "description": "COCO average precision at IoU 0.75", "calculation": "as AP at the single IoU threshold 0.75", "values": "0 to 1 (-1: undefined), higher is better", "tasks": ["object-detection"]},
    {"name": "AR100", "description": "COCO average recall with up to 100 detections per image", "calculation": "mean over classes and IoU thresholds 0.50:0.05:0.95 of the recall reached", "values": "0 to 1 (-1: undefined), higher is better", "tasks": ["object-detection"]},
    {"name": "instances_per_second", "description": "Inference throughput, model load and warm-up excluded", "calculation": "n / inference seconds", "values": ">= 0, higher is faster", "tasks": ["image-classification", "text-classification", "object-detection"]},
]


def register_catalogue(store) -> None:
    """Tasks, metrics and variants (thesis tables 3.2e, 3.3d)."""
    from perturbations import PERTURBATIONS

    store.upsert_named("tasks", TASKS)
    store.upsert_named("metrics", METRICS)
    variants = [{"name": "original", "version": 0, "description": "The unmodified dataset", "method": "none", "datatype": "any"}]
    for p in PERTURBATIONS:
        variants.append({"name": p.name, "version": p.version, "description": p.description, "method": p.method, "datatype": p.datatype, "params": p.params})
    store.upsert_named("variants", variants)
