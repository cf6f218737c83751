"""Object detection on COCO-format datasets (core.coco): the task kind, its label mapping, its runner and
the stored form of its predictions.

A model's labels map to the dataset's categories by core.labels' rules; placeholder labels (COCO's "N/A" gaps,
"__background__") are dropped. The runner batches images through a module's ``prepare``/``forward`` (a
background thread decodes and prepares batch i+1 while the model runs batch i; a warm-up batch is timed
apart); a module returns per image xyxy boxes in original pixels, scores and its own label ids (see
modules.detection), which become per-image predictions with COCO ``[x, y, w, h]`` boxes and dataset category
ids. Perturbed variants move their ground-truth boxes with the image (perturbations.boxes; the box
arithmetic's version is part of the variant identity); a perturbation with no box rule does not apply.
"""
from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from core.coco import CocoDataset
from core.data import DataError
from core.labels import LabelMappingError, map_labels, normalise
from modules.base import EvaluationModule, InferenceError, LoadedModel
from tasks.base import Column, Mapping, TargetsMovedWithImages, TaskKind, register_task
from tasks.batching import runtime_record, timed_pass

if TYPE_CHECKING:
    from perturbations.base import Perturbation

#: Images per stored chunk, and at most this many detections per chunk: 100,000 x (4 boxes + score +
#: category) x 8 bytes is about 4.8 MB, well under MongoDB's 16 MB document limit (an image never spans two).
PREDICTION_CHUNK = 5000
DETECTION_CHUNK_DETECTIONS = 100_000
#: Detection batches are capped at this many images (detectors run on full-size images); halved on out of memory.
MAX_BATCH = 8

#: Model labels that name no class (COCO's gaps "N/A", the background class); never mapped, always dropped.
PLACEHOLDER_LABEL = re.compile(r"^(n a|na|background|no object|unlabeled|unlabelled)( \d+)?$")


def is_placeholder_label(label: str) -> bool:
    return bool(PLACEHOLDER_LABEL.match(normalise(label)))


# ---------------------------------------------------------------------------------------------- records
@dataclass
class DetectionPredictions:
    """A batch of images with their ground truth and detections, in flat arrays.

    Boxes are ``[x, y, width, height]`` in pixels; labels are dataset class indices; ``gt_image`` and
    ``det_image`` index ``image_ids``. ``gt_areas`` is COCO's annotation ``area`` (the segment's area,
    which decides the small/medium/large range); None means the box area. ``gt_iscrowd`` None means no
    crowd regions. ``widths``/``heights`` (optional, one per image) travel with the boxes for geometric
    perturbations (``perturbations.boxes``); the metrics do not use them. Within an image, detections of
    equal score are ranked in the order given here, and so are the ground truth boxes.
    """

    image_ids: list[Hashable]
    gt_image: np.ndarray  # (G,) int64
    gt_boxes: np.ndarray  # (G, 4) float64 xywh
    gt_labels: np.ndarray  # (G,) int64
    det_image: np.ndarray  # (D,) int64
    det_boxes: np.ndarray  # (D, 4) float64 xywh
    det_scores: np.ndarray  # (D,) float64
    det_labels: np.ndarray  # (D,) int64
    gt_areas: np.ndarray | None = None  # (G,) float64
    gt_iscrowd: np.ndarray | None = None  # (G,) bool
    widths: np.ndarray | None = None  # (n,) image widths in pixels
    heights: np.ndarray | None = None  # (n,) image heights in pixels

    def __len__(self) -> int:
        return len(self.image_ids)

    @classmethod
    def from_coco(cls, images: Sequence[dict], annotations: Sequence[dict], results: Sequence[dict],
                  category_ids: Sequence[int]) -> "DetectionPredictions":
        """Build a batch from COCO-format dicts.

        ``images`` are COCO image entries (``id``, optional ``width``/``height``), ``annotations`` COCO
        ground truth (``image_id``, ``category_id``, ``bbox``, ``area``, ``iscrowd``), ``results`` COCO
        detection results (``image_id``, ``category_id``, ``bbox``, ``score``); ``category_ids[i]`` is
        the COCO category id of dataset class i. Raises ValueError for an unknown image or category.
        """
        image_index = {img["id"]: i for i, img in enumerate(images)}
        class_index = {int(c): i for i, c in enumerate(category_ids)}

        def lookup(table: dict, key: Any, what: str) -> int:
            try:
                return table[key]
            except KeyError:
                raise ValueError(f"unknown {what} id {key!r}") from None

        def boxes(entries: Sequence[dict]) -> np.ndarray:
            return np.asarray([e["bbox"] for e in entries], dtype=np.float64).reshape(-1, 4)

        def column(entries: Sequence[dict], key: str, table: dict, what: str) -> np.ndarray:
            return np.asarray([lookup(table, e[key], what) for e in entries], dtype=np.int64)

        sizes_known = bool(images) and all("width" in i and "height" in i for i in images)
        return cls(
            image_ids=[img["id"] for img in images],
            gt_image=column(annotations, "image_id", image_index, "image"),
            gt_boxes=boxes(annotations),
            gt_labels=column(annotations, "category_id", class_index, "category"),
            gt_areas=np.asarray([a["area"] for a in annotations], dtype=np.float64),
            gt_iscrowd=np.asarray([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool),
            det_image=column(results, "image_id", image_index, "image"),
            det_boxes=boxes(results),
            det_scores=np.asarray([r["score"] for r in results], dtype=np.float64),
            det_labels=column(results, "category_id", class_index, "category"),
            widths=np.asarray([i["width"] for i in images], dtype=np.float64) if sizes_known else None,
            heights=np.asarray([i["height"] for i in images], dtype=np.float64) if sizes_known else None,
        )


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

    Placeholder labels (COCO's "N/A" gaps, "__background__"; is_placeholder_label) are
    always dropped. Any other label that matches no class raises LabelMappingError, unless ``drop_unmapped``
    (a detector trained on more classes than the dataset has, e.g. a COCO model on a COCO subset): then it
    is dropped and recorded in ``dropped``. At least one label must map.
    """
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
def _read_image(dataset: Any, img: dict[str, Any]) -> Any:
    """An image of the split, checked against the size its entry gives (a mismatch would misplace every box)."""
    pil = dataset.load_image(img)
    if (img.get("width"), img.get("height")) not in ((pil.width, pil.height), (None, None)):
        raise DataError(f"image {img.get('id')!r} is {pil.width}x{pil.height} pixels but its entry says "
                        f"{img.get('width')}x{img.get('height')}")
    return pil


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
    n_labels = max(loaded.id2label) + 1 if loaded.id2label else 0
    if len(label_mapping) != n_labels:
        raise InferenceError(f"label mapping covers {len(label_mapping)} label ids but the model has {n_labels}")
    lookup = np.array([-1 if c is None else int(c) for c in label_mapping], dtype=np.int64)
    predictions: list[dict[str, Any]] = []

    def keep(part: list[dict[str, Any]], outputs: Any, pictures: list[Any]) -> None:
        if len(outputs) != len(part):
            raise InferenceError(f"{module.name} returned {len(outputs)} results for {len(part)} images")
        for img, picture, out in zip(part, pictures, outputs):
            boxes, scores = out["boxes"], out["scores"]
            labels = out["labels"].detach().to("cpu", torch.int64).reshape(-1).numpy()
            if not (torch.isfinite(boxes).all() and torch.isfinite(scores).all()):
                raise InferenceError(f"{module.name} produced NaN or infinite boxes or scores (image {img['id']!r})")
            if labels.size and (labels.min() < 0 or labels.max() >= len(lookup)):
                bad = int(labels[(labels < 0) | (labels >= len(lookup))][0])
                raise InferenceError(f"{module.name} returned label id {bad}, outside the model's {len(lookup)} labels")
            cats = lookup[labels]
            mapped = cats >= 0
            xywh = _to_xywh(boxes, picture.width, picture.height)[mapped]
            sc = scores.detach().to("cpu", torch.float64).reshape(-1).numpy()[mapped]
            order = np.argsort(-sc, kind="stable")
            predictions.append({"image_id": img["id"], "boxes": xywh[order], "scores": sc[order],
                                "labels": cats[mapped][order]})

    warmup_s, total = timed_pass(module, loaded, images, batch_size, lambda img: _read_image(dataset, img), keep,
                                 on_batch, should_stop)
    runtime = runtime_record(len(predictions), total, batch_size, loaded.device, warmup_s)
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


def to_detection_batch(dataset: Any, split: str, predictions: list[dict[str, Any]]) -> DetectionPredictions:
    """The predictions with their ground truth as a DetectionPredictions batch (what processors update with)."""
    by_id = {img["id"]: img for img in dataset.images(split)}
    annotations = dataset.annotations(split)
    images = [by_id[p["image_id"]] for p in predictions]
    gt = [a for img in images for a in annotations.get(img["id"], [])]
    return DetectionPredictions.from_coco(images, gt, to_coco_results(predictions), dataset.category_ids)


def encode_detections(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-image predictions as stored chunks of whole images (at most PREDICTION_CHUNK images and
    DETECTION_CHUNK_DETECTIONS detections each): image ids, detections per image, and the detections of all
    its images concatenated as little-endian binary (float64 xywh boxes and scores, int64 category ids)."""
    def cat(key: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        arrays = [np.asarray(p[key], dtype=dtype).reshape(shape) for p in predictions]
        return np.concatenate(arrays) if arrays else np.zeros((0, *shape[1:]), dtype=dtype)

    image_ids = [p["image_id"] for p in predictions]
    counts = np.asarray([len(p["scores"]) for p in predictions], dtype=np.int64)
    boxes, scores, cats = cat("boxes", (-1, 4), "<f8"), cat("scores", (-1,), "<f8"), cat("labels", (-1,), "<i8")
    if not (int(counts.sum()) == len(boxes) == len(scores) == len(cats)):
        raise ValueError(f"detection predictions: {len(image_ids)} images with {int(counts.sum())} detections, "
                         f"{len(boxes)} boxes, {len(scores)} scores, {len(cats)} categories")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    chunks, start = [], 0
    while True:
        end = start
        while end < len(image_ids) and (end == start or (end - start < PREDICTION_CHUNK
                                                         and offsets[end + 1] - offsets[start] <= DETECTION_CHUNK_DETECTIONS)):
            end += 1
        a, b = int(offsets[start]), int(offsets[end])
        chunks.append({
            "kind": "detection",
            "image_ids": [i.item() if isinstance(i, np.generic) else i for i in image_ids[start:end]],
            "counts": counts[start:end].tolist(),
            "boxes": boxes[a:b].tobytes(),
            "scores": scores[a:b].tobytes(),
            "category_ids": cats[a:b].tobytes(),
        })
        if end >= len(image_ids):
            return chunks
        start = end


def decode_detection_chunk(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """One stored detection chunk as per-image prediction dicts (the shape ``run_detection`` returns)."""
    if chunk.get("kind") != "detection":
        raise ValueError(f"prediction chunk {chunk.get('_id')!r} is not a detection chunk")
    boxes = np.frombuffer(chunk["boxes"], dtype="<f8").reshape(-1, 4).astype(np.float64)
    scores = np.frombuffer(chunk["scores"], dtype="<f8").astype(np.float64)
    cats = np.frombuffer(chunk["category_ids"], dtype="<i8").astype(np.int64)
    out, at = [], 0
    for image_id, k in zip(chunk["image_ids"], chunk["counts"]):
        out.append({"image_id": image_id, "boxes": boxes[at : at + k], "scores": scores[at : at + k],
                    "labels": cats[at : at + k]})
        at += k
    return out


@dataclass(eq=False)
class DetectionTask(TargetsMovedWithImages, TaskKind):
    """Object detection: COCO-format datasets, boxes, COCO metrics."""

    moved_targets_key = "boxes_version"

    unit = "image"

    def __post_init__(self) -> None:
        self.default_processors = self.default_processors or ("detection",)
        self.columns = self.columns or (Column("images", "n_images", 0), Column("AP", "AP"), Column("AP50", "AP50"),
                                        Column("AP75", "AP75"), Column("AR100", "AR100"), Column("P@.5", "precision"),
                                        Column("R@.5", "recall"))

    def reads(self, meta: dict[str, Any]) -> bool:
        return meta.get("task") == self.name or meta.get("format") == "coco"

    def open_dataset(self, path: str | Path) -> CocoDataset:
        dataset = CocoDataset.open(path)
        if dataset.meta.get("task", self.name) != self.name:
            raise DataError(f"dataset metadata {Path(path) / 'dataset.json'}: a COCO dataset has task {self.name!r}, "
                            f"not {dataset.meta['task']!r}")
        return dataset

    def dataset_doc(self, dataset: CocoDataset) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        doc, examples = dataset.dataset_doc()
        return {**doc, "task": self.name}, examples

    def target_transform(self, variant: str) -> Any:
        from perturbations.boxes import box_transform

        return box_transform(variant)

    def moved_targets_version(self) -> int:
        from perturbations.boxes import BOXES_VERSION

        return BOXES_VERSION

    def open_variant(self, dataset: CocoDataset, revision: str, perturbation: "Perturbation | None", seed: int,
                     cache_root: Path) -> CocoDataset:
        from perturbations.cache import ensure_coco_variant

        return ensure_coco_variant(dataset, revision, perturbation, seed, cache_root)

    def model_labels(self, id2label: dict[int, str]) -> dict[int, str]:
        kept = [lab for _, lab in sorted(id2label.items()) if not is_placeholder_label(lab)]
        return dict(enumerate(kept))

    def map_labels(self, id2label: dict[int, str], doc: dict[str, Any], trained_on_dataset: bool) -> Mapping:
        classes = [c["label"] for c in doc["classes"]]
        category_ids = [int(c["extra"]["category_id"]) for c in doc["classes"]]
        mapping = detection_label_mapping(id2label, classes, category_ids, doc.get("synonyms"),
                                          trained_on_dataset=trained_on_dataset)
        return Mapping(mapping.model_to_category, mapping.to_doc(classes, category_ids, id2label))

    def run(self, module: EvaluationModule, loaded: LoadedModel, dataset: Any, split: str, mapping: Mapping,
            batch_size: int, on_batch: Callable[[int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return run_detection(module, loaded, dataset, split, mapping.index, batch_size, on_batch=on_batch,
                             should_stop=should_stop)

    def sample_inputs(self, dataset: Any, split: str, n: int) -> list[Any]:
        return [dataset.load_image(img) for img in dataset.images(split)[:n]]

    def encode(self, predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return encode_detections(predictions)

    def decode(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for chunk in chunks for p in decode_detection_chunk(chunk)]

    def processor_input(self, predictions: list[dict[str, Any]], dataset: Callable[[], Any], split: str):
        return to_detection_batch(dataset(), split, predictions)


DETECTION = register_task(DetectionTask(
    "object-detection", "image", zoo_tags={"huggingface": ("object-detection",), "fiftyone": ("detection",)},
    architecture_suffixes=("ForObjectDetection",), max_batch_size=MAX_BATCH))
