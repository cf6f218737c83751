"""Batched object-detection inference, mirroring pipeline.inference.run_classification.

A background thread decodes and prepares batch i+1 while the model runs batch i under
``torch.inference_mode``; a warm-up batch is timed separately. The module's per-image outputs (xyxy boxes in
original image pixels, scores, model label ids; see modules.detection) become per-image predictions with
COCO ``[x, y, w, h]`` boxes and dataset category ids, through a label mapping list:
``label_mapping[model label id]`` is a category id, or None for a model label that is dropped (a
placeholder such as COCO's "N/A", or, only when asked, a label with no class in the dataset).

``dataset`` is anything with the CocoDataset interface used here: ``images(split)`` (dicts with id, width,
height), ``load_image(image)`` and, for :func:`to_detection_batch`, ``annotations(split)`` and
``category_ids``. A perturbed variant only has to provide the same.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from modules.base import EvaluationModule, LoadedModel
from core.data import DataError
from pipeline.inference import InferenceError, _sync, prefetch, runtime_record, to_device, warm_up
from core.labels import LabelMappingError, map_labels


# ---------------------------------------------------------------------------------------------- labels
@dataclass
class DetectionLabelMapping:
    """``model_to_category[i]`` is the dataset category id of model label id i, or None (dropped)."""

    model_to_category: list[int | None]
    methods: dict[str, str] = field(default_factory=dict)  # model label -> rule used
    dropped: dict[str, str] = field(default_factory=dict)  # model label -> why it is dropped
    method: str = "name"

    def to_doc(self, classes: list[str], category_ids: list[int], id2label: dict[int, str]) -> dict[str, Any]:
        name_of = dict(zip(category_ids, classes))
        pairs = []
        for i, cat in enumerate(self.model_to_category):
            if i not in id2label:
                continue
            label = id2label[i]
            if cat is None:
                pairs.append({"model_label": label, "dataset_class": None, "rule": "dropped", "why": self.dropped.get(label)})
            else:
                pairs.append({"model_label": label, "dataset_class": name_of[cat], "category_id": cat,
                              "rule": self.methods.get(label, self.method)})
        return {"method": self.method, "pairs": pairs}


def detection_label_mapping(
    id2label: dict[int, str],
    classes: list[str],
    category_ids: list[int],
    synonyms: dict[str, str] | None = None,
    trained_on_dataset: bool = False,
    drop_unmapped: bool = False,
) -> DetectionLabelMapping:
    """Map a detector's labels to dataset category ids with core.labels.map_labels' rules.

    Placeholder labels (COCO's "N/A" gaps, "__background__"; modules.detection.is_placeholder_label) are
    always dropped. Any other label that matches no class raises LabelMappingError, unless ``drop_unmapped``
    (a detector trained on more classes than the dataset has, e.g. a COCO model on a COCO subset): then it
    is dropped and recorded in ``dropped``. At least one label must map.
    """
    from modules.detection import is_placeholder_label

    if not id2label:
        raise LabelMappingError("the model declares no labels", [])
    if len(classes) != len(category_ids):
        raise ValueError(f"{len(classes)} classes but {len(category_ids)} category ids")
    size = max(int(k) for k in id2label) + 1
    if min(int(k) for k in id2label) < 0:
        raise LabelMappingError("the model has negative label ids", [])
    mapping: list[int | None] = [None] * size
    dropped: dict[str, str] = {}
    real: list[tuple[int, str]] = []
    for i in sorted(int(k) for k in id2label):
        label = str(id2label[i])
        if is_placeholder_label(label):
            dropped[label] = "placeholder (no class)"
        else:
            real.append((i, label))
    if not real:
        raise LabelMappingError("the model declares only placeholder labels", [lab for lab in dropped])

    def attempt(pairs: list[tuple[int, str]]):
        return map_labels({j: lab for j, (_, lab) in enumerate(pairs)}, classes, synonyms, trained_on_dataset)

    try:
        result = attempt(real)
    except LabelMappingError as exc:
        if not drop_unmapped or not exc.unmapped:
            raise
        unmapped = set(exc.unmapped)
        kept = [(i, lab) for i, lab in real if lab not in unmapped]
        if not kept:
            raise LabelMappingError(f"none of the model's {len(real)} labels matches a dataset class", sorted(unmapped)) from None
        result = attempt(kept)
        for lab in unmapped:
            dropped[lab] = exc.reasons.get(lab, "no matching dataset class")
        real = kept
    for (i, _), class_index in zip(real, result.model_to_dataset):
        mapping[i] = int(category_ids[class_index])
    return DetectionLabelMapping(mapping, dict(result.methods), dropped, result.method)


# ---------------------------------------------------------------------------------------------- inference
def _batches(module: EvaluationModule, loaded: LoadedModel, dataset: Any, images: list[dict], batch_size: int) -> Iterator:
    for start in range(0, len(images), batch_size):
        part = images[start : start + batch_size]
        pil = [dataset.load_image(img) for img in part]
        sizes = [(im.width, im.height) for im in pil]
        for img, (w, h) in zip(part, sizes):
            if (img.get("width"), img.get("height")) not in ((w, h), (None, None)):
                raise DataError(f"image {img.get('id')!r} is {w}x{h} pixels but its entry says "
                                f"{img.get('width')}x{img.get('height')}")
        yield part, sizes, module.prepare(loaded, pil)


def _to_xywh(boxes: torch.Tensor, width: int, height: int) -> np.ndarray:
    """xyxy -> xywh (float64), clipped to the image."""
    b = boxes.detach().to("cpu", torch.float64).reshape(-1, 4).numpy().copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    b[:, 2:] = np.maximum(b[:, 2:] - b[:, :2], 0.0)
    return b


def run_detection(
    module: EvaluationModule,
    loaded: LoadedModel,
    dataset: Any,
    split: str,
    label_mapping: list[int | None],
    batch_size: int = 8,
    warmup: bool = True,
    on_batch: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Detect objects in every image of ``split``. Returns (predictions, runtime).

    ``predictions`` has one entry per image, in split order: ``{"image_id", "boxes": (k, 4) float64 xywh
    pixels, "scores": (k,) float64, "labels": (k,) int64 dataset category ids}``, best score first.
    ``runtime`` has the keys of run_classification's (n, batch_size, device, warmup_s, time_in_seconds,
    time_per_instance, instances_per_second) plus n_detections.
    """
    images = dataset.images(split)
    device = loaded.device
    n_labels = max(loaded.id2label) + 1 if loaded.id2label else 0
    if len(label_mapping) != n_labels:
        raise InferenceError(f"label mapping covers {len(label_mapping)} label ids but the model has {n_labels}")
    lookup = np.array([-1 if c is None else int(c) for c in label_mapping], dtype=np.int64)
    predictions: list[dict[str, Any]] = []
    warmup_s = 0.0
    with torch.inference_mode():
        if warmup and images:
            warmup_s = warm_up(module, loaded, [dataset.load_image(img) for img in images[: min(batch_size, len(images))]])
        t0 = time.perf_counter()
        for part, sizes, prepared in prefetch(_batches(module, loaded, dataset, images, batch_size)):
            outputs = module.forward(loaded, to_device(prepared, device))
            if len(outputs) != len(part):
                raise InferenceError(f"{module.name} returned {len(outputs)} results for {len(part)} images")
            for img, (width, height), out in zip(part, sizes, outputs):
                boxes, scores = out["boxes"], out["scores"]
                labels = out["labels"].detach().to("cpu", torch.int64).reshape(-1).numpy()
                if not (torch.isfinite(boxes).all() and torch.isfinite(scores).all()):
                    raise InferenceError(f"{module.name} produced NaN or infinite boxes or scores (image {img['id']!r})")
                if labels.size and (labels.min() < 0 or labels.max() >= len(lookup)):
                    bad = int(labels[(labels < 0) | (labels >= len(lookup))][0])
                    raise InferenceError(f"{module.name} returned label id {bad}, outside the model's {len(lookup)} labels")
                cats = lookup[labels]
                keep = cats >= 0
                xywh = _to_xywh(boxes, width, height)[keep]
                sc = scores.detach().to("cpu", torch.float64).reshape(-1).numpy()[keep]
                order = np.argsort(-sc, kind="stable")
                predictions.append({"image_id": img["id"], "boxes": xywh[order], "scores": sc[order],
                                    "labels": cats[keep][order]})
            if on_batch:
                on_batch(len(part))
            if should_stop and should_stop():
                raise KeyboardInterrupt("stop requested")
        _sync(device)
        total = time.perf_counter() - t0
    n = len(predictions)
    runtime = runtime_record(n, total, batch_size, device, warmup_s)
    runtime["n_detections"] = int(sum(len(p["scores"]) for p in predictions))
    return predictions, runtime


# ---------------------------------------------------------------------------------------------- outputs
def to_coco_results(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predictions as a COCO results list (``image_id``, ``category_id``, ``bbox``, ``score``), the input
    of pycocotools' ``COCO.loadRes``."""
    return [
        {"image_id": p["image_id"], "category_id": int(c), "bbox": [float(v) for v in box], "score": float(s)}
        for p in predictions
        for box, s, c in zip(p["boxes"], p["scores"], p["labels"])
    ]


def to_detection_batch(dataset: Any, split: str, predictions: list[dict[str, Any]]):
    """The predictions with their ground truth as a processors.detection.DetectionPredictions batch."""
    from processors.detection import DetectionPredictions

    by_id = {img["id"]: img for img in dataset.images(split)}
    annotations = dataset.annotations(split)
    images = [by_id[p["image_id"]] for p in predictions]
    gt = [a for img in images for a in annotations.get(img["id"], [])]
    return DetectionPredictions.from_coco(images, gt, to_coco_results(predictions), dataset.category_ids)
