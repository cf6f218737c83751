"""The ``fiftyone`` source: every model of the installed FiftyOne model zoo manifests.

FiftyOne lists its zoo offline from the manifests inside the wheel (336 models in fiftyone 1.22), plus the
custom manifests named by ``FIFTYONE_MODEL_ZOO_MANIFEST_PATHS`` (comma-separated JSON files of the same
format) and any registered remote sources. Each model becomes one model document shaped like the local
scraper's (``_id`` ``fiftyone/<name>``). Its ``revision`` is a hash of the whole manifest entry, so a
changed entry (new weights URL, config, labels, ...) is evaluated again. Models that vanished from the
manifests are marked removed.

Task: from the manifest tags (see :data:`TAG_TASKS`); a model whose tags name no task gets ``task`` None and
a note. Training data: the manifest's ``training_data`` names are kept as given (``training_data``) and
normalised to dataset names (``datasets``: "ImageNet-1K" -> "imagenet-1k", "MS COCO 2017" -> "coco-2017",
or the name of a registered dataset when it is that very dataset). Registered datasets that declare one of
them in ``compatible_with`` are listed in ``compatible_datasets`` (these are the datasets modules evaluate
the model on; "trained on" stays the truth: a model trained on ImageNet-1K was not trained on a 20-image
test subset).
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Any

from core.fiftyone_support import fiftyone_zoo, manifest_revision
from core.labels import normalise

SOURCE = "fiftyone"

#: (manifest tag, task), first match wins: a Mask R-CNN is tagged "instances", a Keypoint R-CNN "keypoints".
TAG_TASKS = [
    ("keypoints", "keypoint-detection"),
    ("panoptic", "panoptic-segmentation"),
    ("instances", "instance-segmentation"),
    ("segment-anything", "mask-generation"),
    ("segmentation", "semantic-segmentation"),
    ("detection", "object-detection"),
    ("classification", "image-classification"),
    ("depth", "depth-estimation"),
]
#: Zero-shot models need class prompts: they are not closed-set classifiers or detectors.
ZERO_SHOT_TASKS = {"image-classification": "zero-shot-image-classification", "object-detection": "zero-shot-object-detection"}

#: Normalised training-data names (core.labels.normalise) that have a common short dataset name.
TRAINING_DATA_ALIASES = {
    "imagenet 1k": "imagenet-1k",
    "imagenet": "imagenet-1k",
    "imagenet 22k": "imagenet-22k",
    "ms coco 2017": "coco-2017",
    "coco 2017": "coco-2017",
    "coco 2017 panoptic": "coco-2017-panoptic",
    "objects365v1": "objects365",
    "open images v7": "open-images-v7",
    "openimages v6": "open-images-v6",
}


def task_from_tags(tags: list[str]) -> tuple[str | None, str | None]:
    """(task, note): the task the manifest tags name, or None and why."""
    tagset = set(tags or [])
    for tag, task in TAG_TASKS:
        if tag in tagset:
            if "zero-shot" in tagset and task in ZERO_SHOT_TASKS:
                return ZERO_SHOT_TASKS[task], None
            return task, None
    return None, f"task unknown: the manifest tags {sorted(tagset)} name no task zooeval knows"


def dataset_slug(name: str) -> str:
    """A training-data name as a dataset name: normalised, spaces as hyphens, common aliases applied."""
    n = normalise(name)
    return TRAINING_DATA_ALIASES.get(n, n.replace(" ", "-"))


def match_datasets(training_names: list[str], datasets: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(dataset names the model was trained on, registered datasets compatible with them).

    A training-data name that is a registered dataset's own name (after normalisation) becomes that name;
    other names become their slug. Registered datasets whose ``compatible_with`` lists one of them (or its
    slug) are the compatible ones."""
    by_norm = {normalise(name): name for name in datasets}
    declared: list[str] = []
    for raw in training_names:
        slug = dataset_slug(raw)
        name = by_norm.get(normalise(raw)) or by_norm.get(normalise(slug)) or slug
        if name not in declared:
            declared.append(name)
    keys = {normalise(d) for d in declared} | {normalise(dataset_slug(r)) for r in training_names}
    compatible = sorted(
        name for name, doc in datasets.items()
        if name not in declared and keys & {normalise(c) for c in doc.get("compatible_with") or []}
    )
    return declared, compatible


def _as_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, str):
        try:
            return _as_datetime(dt.datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _plain(value: Any) -> Any:
    """OrderedDicts and other mappings as plain dicts (MongoDB documents), recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def model_doc(zoo_model, datasets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One model document from one zoo model (a fiftyone.zoo.models.ZooModel)."""
    notes: list[str] = []
    tags = [str(t) for t in (zoo_model.tags or [])]
    task, note = task_from_tags(tags)
    if note:
        notes.append(note)
    training = []
    for item in zoo_model.training_data or []:
        if isinstance(item, dict) and item.get("name"):
            training.append({"name": str(item["name"]), "url": item.get("url")})
        elif isinstance(item, str):
            training.append({"name": item, "url": None})
    if not training:
        notes.append("the manifest names no training data")
    declared, compatible = match_datasets([t["name"] for t in training], datasets)
    manager = zoo_model.manager
    weights_url = None
    if manager is not None:
        weights_url = (getattr(manager, "config", None) and getattr(manager.config, "url", None)) or None
    deploy = _plain(zoo_model.default_deployment_config_dict or {})
    deploy_cfg = deploy.get("config") or {}
    base_filename = zoo_model.base_filename
    date_added = _as_datetime(getattr(zoo_model, "date_added", None))
    return {
        "_id": f"{SOURCE}/{zoo_model.name}",
        "name": zoo_model.name,
        "source": SOURCE,
        "task": task,
        "datasets": declared,
        "training_data": training,
        "compatible_datasets": compatible,
        "tags": tags,
        "library": "fiftyone",
        "license": zoo_model.license,
        "author": zoo_model.author,
        "description": zoo_model.description,
        "source_url": zoo_model.source,
        "version": zoo_model.version,
        "base_name": zoo_model.base_name,
        "base_filename": base_filename,
        "weights_url": weights_url,
        "size_bytes": zoo_model.size_bytes,
        "files": {base_filename: zoo_model.size_bytes} if base_filename else {},
        "requirements": _plain(zoo_model.requirements.serialize()) if zoo_model.requirements is not None else None,
        "date_added": date_added,
        "last_modified": date_added,
        "config": {
            "type": deploy.get("type"),
            "entrypoint_fcn": deploy_cfg.get("entrypoint_fcn"),
            "entrypoint_args": deploy_cfg.get("entrypoint_args"),
            "labels_path": deploy_cfg.get("labels_path"),
            "output_processor_cls": deploy_cfg.get("output_processor_cls"),
        },
        "revision": manifest_revision(zoo_model),
        "references": [],
        "status": "active",
        "notes": notes,
    }


def scrape_fiftyone(store, log=print, home: str | os.PathLike | None = None, names: list[str] | None = None) -> dict[str, int]:
    """Store every model of the installed FiftyOne zoo manifests (built-in, ``FIFTYONE_MODEL_ZOO_MANIFEST_PATHS``
    and registered remote sources); mark FiftyOne models that are no longer listed as removed. With ``names``,
    store only those zoo models and mark nothing removed (a partial listing).

    Returns ``{"new", "changed", "seen", "removed", "unreadable"}`` (as scrape_local, plus entries that could
    not be read). Reads the datasets registered in the store, to name compatible ones."""
    try:
        fozm = fiftyone_zoo(home, refresh_manifest=True)
    except ImportError as exc:
        raise RuntimeError(f"the fiftyone source needs the fiftyone package (pip install fiftyone): {exc}") from exc
    listed = fozm.list_zoo_models()
    if names is not None:
        unknown = sorted(set(names) - set(listed))
        if unknown:
            raise ValueError(f"not in the FiftyOne zoo: {', '.join(unknown)}")
    partial = names is not None
    names = list(names) if partial else listed
    datasets = store.datasets()
    docs: list[dict[str, Any]] = []
    unreadable = 0
    for name in names:
        try:
            docs.append(model_doc(fozm.get_zoo_model(name), datasets))
        except Exception as exc:  # one odd manifest entry never stops the scrape
            unreadable += 1
            docs.append({"_id": f"{SOURCE}/{name}", "name": name, "source": SOURCE, "status": "active", "task": None,
                         "revision": None, "notes": [f"unreadable manifest entry: {type(exc).__name__}: {exc}"]})
    counts = store.upsert_models(docs)
    if partial:
        removed = 0
    elif docs:
        removed = store.mark_removed(SOURCE, {d["_id"] for d in docs})
    else:  # an empty listing means a broken installation, not an empty zoo: remove nothing
        removed = 0
        log("fiftyone scrape: the zoo lists no models (is fiftyone installed correctly?); nothing marked removed")
    counts.update(seen=len(docs), removed=removed, unreadable=unreadable)
    custom = os.environ.get("FIFTYONE_MODEL_ZOO_MANIFEST_PATHS")
    log(f"fiftyone scrape: {len(docs)} zoo models{f' (custom manifests: {custom})' if custom else ''}, "
        f"{counts['new']} new, {counts['changed']} changed, {removed} removed"
        + (f", {unreadable} unreadable" if unreadable else ""))
    return counts
