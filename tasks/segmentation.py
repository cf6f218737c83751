"""Semantic segmentation on VOC-layout datasets (core.voc): the task kind, its runner and the stored form of its
predictions.

A model's labels map to the dataset's classes by core.labels' rules, as for classification (every label must
map; the map is stored with the result). A module's forward gives, per image, the model's label id at every pixel
of the ORIGINAL image (logits upsampled to the image size, then argmax: modules.segmentation); the runner turns
it into dataset class indices. The stored predictions are, per image, the true and the predicted class maps,
each zlib-compressed raw array bytes (uint8, or uint16 when a value exceeds 255), in chunks under MongoDB's
16 MB document limit, so every segmentation metric is computed again from them with no inference and no
dataset files. Perturbed variants move their masks with the image (perturbations.masks; the mask rules' version
is part of the variant identity); a perturbation with no mask rule does not apply.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from core.data import DataError
from core.labels import map_labels
from core.voc import VocDataset
from tasks.base import Column, Mapping, TargetsMovedWithImages, TaskKind, register_task

if TYPE_CHECKING:
    from modules.base import EvaluationModule, LoadedModel
    from perturbations.base import Perturbation

#: Compressed bytes per stored chunk (a chunk's image list is small beside them); an image larger than this is
#: continued in the next chunks, so no chunk nears MongoDB's 16 MB document limit.
CHUNK_BYTES = 8 * 1024 * 1024
#: at most this many images per stored chunk
CHUNK_IMAGES = 2000
#: Segmentation batches are capped at this many images (full-size images); halved on out of memory.
MAX_BATCH = 8


@dataclass
class SegmentationPredictions:
    """Per image: its id, the true class map (IGNORE_INDEX 255 where not scored) and the predicted class map,
    both (height, width) arrays of dataset class indices."""

    image_ids: list[str]
    y_true: list[np.ndarray]
    y_pred: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.image_ids)


# ---------------------------------------------------------------------------------------------- stored form
def _map_dtype(*maps: np.ndarray) -> str:
    """The stored dtype of class maps: uint8, or little-endian uint16 when a value exceeds 255."""
    top = max((int(m.max()) for m in maps if m.size), default=0)
    low = min((int(m.min()) for m in maps if m.size), default=0)
    if low < 0 or top > 65535:
        raise ValueError(f"a class map holds values outside 0..65535 ({low}..{top})")
    return "u1" if top <= 255 else "<u2"


def encode_segmentation(predictions: SegmentationPredictions) -> list[dict[str, Any]]:
    """The predictions as stored chunks: ``images`` (id, height, width, dtype and the byte lengths of its
    compressed true and predicted maps) and ``data``, a slice of the byte stream of every image's two maps in
    order. An image's entry is in the chunk where its bytes begin; a chunk holds at most CHUNK_BYTES bytes and
    CHUNK_IMAGES images (an image larger than CHUNK_BYTES goes on in the next chunks, whose ``images`` may be
    empty)."""
    p = predictions
    if not (len(p.image_ids) == len(p.y_true) == len(p.y_pred)):
        raise ValueError(f"segmentation predictions: {len(p.image_ids)} ids, {len(p.y_true)} true and "
                         f"{len(p.y_pred)} predicted maps")
    chunks: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    data = bytearray()

    def close() -> None:
        nonlocal images, data
        chunks.append({"kind": "segmentation", "images": images, "data": bytes(data[:CHUNK_BYTES])})
        images, data = [], data[CHUNK_BYTES:]

    for image_id, y_true, y_pred in zip(p.image_ids, p.y_true, p.y_pred):
        t, q = np.asarray(y_true), np.asarray(y_pred)
        if t.ndim != 2 or t.shape != q.shape:
            raise ValueError(f"image {image_id!r}: true map {t.shape} and predicted map {q.shape} are not one "
                             "(height, width) shape")
        dtype = _map_dtype(t, q)
        true_bytes = zlib.compress(t.astype(dtype).tobytes(), 6)
        pred_bytes = zlib.compress(q.astype(dtype).tobytes(), 6)
        if len(images) >= CHUNK_IMAGES:
            close()
        images.append({"id": str(image_id), "height": int(t.shape[0]), "width": int(t.shape[1]), "dtype": dtype,
                       "true_bytes": len(true_bytes), "pred_bytes": len(pred_bytes)})
        data += true_bytes + pred_bytes
        while len(data) > CHUNK_BYTES:
            close()
    close()
    return chunks


def decode_segmentation(chunks: list[dict[str, Any]]) -> SegmentationPredictions:
    """Stored chunks back to the predictions (exactly what was encoded)."""
    stream = b"".join(bytes(c["data"]) for c in chunks)
    out = SegmentationPredictions([], [], [])
    at = 0
    for chunk in chunks:
        if chunk.get("kind") != "segmentation":
            raise ValueError(f"prediction chunk {chunk.get('_id')!r} is not a segmentation chunk")
        for image in chunk["images"]:
            shape = (image["height"], image["width"])
            maps = []
            for key in ("true_bytes", "pred_bytes"):
                raw = zlib.decompress(stream[at : at + image[key]])
                maps.append(np.frombuffer(raw, dtype=image["dtype"]).reshape(shape).astype(np.int64))
                at += image[key]
            out.image_ids.append(image["id"])
            out.y_true.append(maps[0])
            out.y_pred.append(maps[1])
    if at != len(stream):
        raise ValueError(f"segmentation chunks hold {len(stream)} bytes but their images account for {at}")
    return out


# ---------------------------------------------------------------------------------------------- inference
def run_segmentation(module: "EvaluationModule", loaded: "LoadedModel", dataset: VocDataset, split: str,
                     label_mapping: list[int], batch_size: int = 4,
                     on_batch: Callable[[int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> tuple[SegmentationPredictions, dict[str, Any]]:
    """The class map of every image of ``split``: the module's per-pixel model label ids mapped to dataset class
    indices. Returns (predictions, runtime record, with the scored pixel count ``n_pixels``)."""
    import torch

    from modules.base import InferenceError
    from tasks.batching import runtime_record, timed_pass

    lookup = np.asarray(label_mapping, dtype=np.int64)
    if len(lookup) != len(loaded.id2label):
        raise InferenceError(f"label mapping covers {len(lookup)} labels but the model has {len(loaded.id2label)}")
    out = SegmentationPredictions([], [], [])

    def keep(part: list[str], label_maps: Any, samples: list[tuple[Any, np.ndarray]]) -> None:
        if len(label_maps) != len(part):
            raise InferenceError(f"{module.name} returned {len(label_maps)} class maps for {len(part)} images")
        for image_id, (_, mask), labels in zip(part, samples, label_maps):
            labels = labels.detach().to("cpu", torch.int64).numpy()
            if labels.shape != mask.shape:
                raise InferenceError(f"{module.name} returned a {labels.shape[1]}x{labels.shape[0]} class map for "
                                     f"image {image_id!r} of {mask.shape[1]}x{mask.shape[0]} pixels")
            if labels.size and (labels.min() < 0 or labels.max() >= len(lookup)):
                raise InferenceError(f"{module.name} returned label id {int(labels.max())} for image {image_id!r}, "
                                     f"outside the model's {len(lookup)} labels")
            out.image_ids.append(image_id)
            out.y_true.append(mask)
            out.y_pred.append(lookup[labels])

    warmup_s, total = timed_pass(module, loaded, dataset.ids(split), batch_size, dataset.load_sample, keep, on_batch,
                                 should_stop, model_input=lambda sample: sample[0])
    runtime = runtime_record(len(out), total, batch_size, loaded.device, warmup_s)
    runtime["n_pixels"] = int(sum(m.size for m in out.y_true))
    return out, runtime


# ---------------------------------------------------------------------------------------------- the task kind
@dataclass(eq=False)
class SegmentationTask(TargetsMovedWithImages, TaskKind):
    """Semantic segmentation: VOC-layout datasets, per-pixel class maps, IoU metrics."""

    moved_targets_key = "masks_version"

    unit = "image"

    def __post_init__(self) -> None:
        self.default_processors = self.default_processors or ("segmentation",)
        self.columns = self.columns or (Column("images", "n", 0), Column("mIoU", "mean_iou"),
                                        Column("pixel acc", "pixel_accuracy"), Column("mean acc", "mean_accuracy"),
                                        Column("FW IoU", "fw_iou"))

    def reads(self, meta: dict[str, Any]) -> bool:
        return meta.get("task") == self.name or meta.get("format") == "voc"

    def open_dataset(self, path: str | Path) -> VocDataset:
        dataset = VocDataset.open(path)
        if dataset.meta.get("task", self.name) != self.name:
            raise DataError(f"dataset metadata {Path(path) / 'dataset.json'}: a VOC dataset has task {self.name!r}, "
                            f"not {dataset.meta['task']!r}")
        return dataset

    def dataset_doc(self, dataset: VocDataset) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return dataset.dataset_doc(self.name)

    def target_transform(self, variant: str) -> Any:
        from perturbations.masks import mask_transform

        return mask_transform(variant)

    def moved_targets_version(self) -> int:
        from perturbations.masks import MASKS_VERSION

        return MASKS_VERSION

    def open_variant(self, dataset: VocDataset, revision: str, perturbation: "Perturbation | None", seed: int,
                     cache_root: Path) -> VocDataset:
        from perturbations.masks import ensure_voc_variant

        return ensure_voc_variant(dataset, revision, perturbation, seed, cache_root)

    def map_labels(self, id2label: dict[int, str], doc: dict[str, Any], trained_on_dataset: bool) -> Mapping:
        classes = [c["label"] for c in doc["classes"]]
        mapping = map_labels(id2label, classes, doc.get("synonyms"), trained_on_dataset=trained_on_dataset)
        return Mapping(mapping.model_to_dataset, mapping.to_doc(classes, id2label))

    def run(self, module: "EvaluationModule", loaded: "LoadedModel", dataset: VocDataset, split: str, mapping: Mapping,
            batch_size: int, on_batch: Callable[[int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[SegmentationPredictions, dict[str, Any]]:
        return run_segmentation(module, loaded, dataset, split, mapping.index, batch_size, on_batch, should_stop)

    def sample_inputs(self, dataset: VocDataset, split: str, n: int) -> list[Any]:
        return [dataset.load_image(i) for i in dataset.ids(split)[:n]]

    def encode(self, predictions: SegmentationPredictions) -> list[dict[str, Any]]:
        return encode_segmentation(predictions)

    def decode(self, chunks: list[dict[str, Any]]) -> SegmentationPredictions:
        return decode_segmentation(chunks)

    def processor_input(self, predictions: SegmentationPredictions, dataset: Callable[[], Any],
                        split: str) -> SegmentationPredictions:
        return predictions


SEGMENTATION = register_task(SegmentationTask(
    "semantic-segmentation", "image", zoo_tags={"huggingface": ("image-segmentation",)},
    architecture_suffixes=("ForSemanticSegmentation",), max_batch_size=MAX_BATCH))
