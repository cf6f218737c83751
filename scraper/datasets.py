"""Dataset metadata (thesis 3.2.2): register local datasets, their classes, splits and examples."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data import DataError, read_dataset_json
from tasks.base import TASKS, task_for_dataset


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


def read_dataset_meta(folder: Path) -> dict[str, Any]:
    """A dataset folder's dataset.json as a dict; DataError when it is missing or not a JSON object."""
    meta, _ = read_dataset_json(folder)
    return {"name": folder.name, **meta}


def dataset_document(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A dataset folder's registered document and examples, read by its task kind (the dataset.json's ``task``,
    or the kind that takes its ``datatype``: tasks.base.task_for_dataset); DataError (KeyError naming the task
    kinds) when it cannot be read."""
    kind = task_for_dataset(read_dataset_meta(folder))
    doc, examples = kind.dataset_doc(kind.open_dataset(folder))
    check_class_names(doc)
    return doc, examples


def register_datasets(store, root: str | Path, log=print) -> list[str]:
    """Register every dataset folder (holding dataset.json) under root, read by its task kind (the
    dataset.json's ``task``, or the kind that takes its ``datatype``: tasks.base.task_for_dataset). Unreadable
    ones are reported and skipped; the others are registered."""
    root = Path(root)
    names = []
    if not root.is_dir():
        return names
    for folder in sorted(p for p in root.iterdir() if (p / "dataset.json").is_file()):
        try:
            doc, examples = dataset_document(folder)
        except Exception as exc:  # one unreadable dataset is reported and skipped; the others are registered
            reason = exc if isinstance(exc, (DataError, KeyError)) else f"{type(exc).__name__}: {exc}"
            log(f"dataset {folder.name}: skipped: {reason}")
            continue
        store.upsert_dataset(doc, examples)
        names.append(doc["name"])
    return names


#: The runtime figure every task's results carry (each processor lists the metrics it computes: Processor.metrics).
RUNTIME_METRICS = [
    {"name": "instances_per_second", "description": "Inference throughput, model load and warm-up excluded",
     "calculation": "n / inference seconds", "values": ">= 0, higher is faster"},
]


def register_catalogue(store) -> None:
    """Tasks, metrics and variants (thesis tables 3.2e, 3.3d)."""
    from perturbations import PERTURBATIONS
    from processors.base import PROCESSORS

    store.upsert_named("tasks", [{"name": t.name, "datatype": t.datatype, "default_processors": list(t.default_processors)}
                                 for t in TASKS])
    all_tasks = TASKS.names()
    metrics: dict[str, dict[str, Any]] = {m["name"]: {**m, "tasks": all_tasks} for m in RUNTIME_METRICS}
    for proc in PROCESSORS:
        for m in proc.metrics:
            entry = metrics.setdefault(m["name"], {**m, "tasks": []})
            entry["tasks"] = sorted(set(entry["tasks"]) | set(proc.tasks))
    store.upsert_named("metrics", list(metrics.values()))
    variants = [{"name": "original", "version": 0, "description": "The unmodified dataset", "method": "none", "datatype": "any"}]
    for p in PERTURBATIONS:
        variants.append({"name": p.name, "version": p.version, "description": p.description, "method": p.method,
                         "datatype": p.datatype, "params": p.params})
    store.upsert_named("variants", variants)
