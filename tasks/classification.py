"""Single-label classification: image classification and text classification.

Datasets are LocalDataset folders (core.data) whose rows carry an integer ``label`` indexing ``classes``.
A model's labels map to the classes by core.labels' rules. The runner keeps, for every sample, the top-k
dataset classes and their probabilities (a dataset class takes the best probability of the model labels
mapped to it); the stored form is that table, chunked; processors get it as ClassificationPredictions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from core.data import DataError, LocalDataset, check_class_groups, dataset_metadata
from core.labels import map_labels
from tasks.base import Column, Mapping, TaskKind, register_task

if TYPE_CHECKING:
    from modules.base import EvaluationModule, LoadedModel
    from perturbations.base import Perturbation

TOP_K = 5
PREDICTION_CHUNK = 5000  # samples per stored chunk
EXAMPLES_PER_CLASS = 20


@dataclass
class ClassificationPredictions:
    """Classification outputs, already mapped to dataset class indices.

    ``topk_labels[i, 0]`` is the predicted class of sample i; ``topk_scores`` are its probabilities.
    """

    sample_ids: list[str]
    y_true: np.ndarray  # (n,) int64 dataset class indices
    topk_labels: np.ndarray  # (n, k) int64 dataset class indices, best first
    topk_scores: np.ndarray  # (n, k) float64, best first

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def y_pred(self) -> np.ndarray:
        if len(self.sample_ids) == 0:
            return np.zeros(0, dtype=np.int64)
        return self.topk_labels[:, 0]


def dataset_scores(logits: Any, index: Any, n_classes: int) -> Any:
    """Softmax over model labels, then each dataset class takes the best probability of its model labels."""
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    out = torch.zeros(probs.shape[0], n_classes, dtype=probs.dtype, device=probs.device)
    return out.scatter_reduce(1, index.expand(probs.shape[0], -1), probs, reduce="amax", include_self=True)


def check_finite(logits: Any, rows: list[dict[str, Any]]) -> None:
    """InferenceError when a sample's outputs are NaN or infinite (the weights are probably corrupt)."""
    import torch

    from modules.base import InferenceError

    finite = torch.isfinite(logits.float()).reshape(logits.shape[0], -1).all(dim=-1)
    if not finite.all():
        bad = [str(r["id"]) for r, ok in zip(rows, finite.tolist()) if not ok]
        raise InferenceError(
            f"the model produced NaN or infinite outputs for {len(bad)} of the {len(rows)} samples of a batch "
            f"(first: {bad[0]!r}); its weights are probably corrupt (NaN), so no result is stored"
        )


#: Beside dataset.json, the dataset's groups of classes ({"group": ["class", ...]}): kept out of the content
#: revision, so declaring groups re-scores stored predictions (the processors' dataset_params) with no inference.
CLASS_GROUPS_FILE = "class_groups.json"


def read_class_groups(root: Path, classes: list[str]) -> dict[str, list[str]] | None:
    """The dataset folder's class groups, checked against its classes; None when it declares none. DataError
    naming the file and what is wrong."""
    import json

    path = Path(root) / CLASS_GROUPS_FILE
    if not path.is_file():
        return None
    try:
        return check_class_groups(json.loads(path.read_text(encoding="utf-8")), classes)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: {exc}") from None


@dataclass(eq=False)
class ClassificationTask(TaskKind):
    """Single-label classification of one input per sample (an image, a text)."""

    def __post_init__(self) -> None:
        self.default_processors = self.default_processors or ("classification",)
        self.columns = self.columns or (Column("n", "n", 0), Column("accuracy", "accuracy"),
                                        Column("macro-P", "macro_precision"), Column("macro-R", "macro_recall"),
                                        Column("macro-F1", "macro_f1"), Column("weighted-F1", "weighted_f1"))

    # -- datasets -----------------------------------------------------------------------------------
    def open_dataset(self, path: str | Path) -> LocalDataset:
        return LocalDataset.open(path)

    def load_input(self, dataset: LocalDataset, row: dict[str, Any]) -> Any:
        """A sample's model input (an image, a text)."""
        return dataset.load_input(row)

    def sample_inputs(self, dataset: LocalDataset, split: str, n: int) -> list[Any]:
        return [self.load_input(dataset, row) for row in dataset.rows(split)[:n]]

    def dataset_doc(self, dataset: LocalDataset) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        meta = dataset.meta
        classes = dataset.classes
        extra = meta.get("class_extra") or {}
        splits = []
        examples: list[dict[str, Any]] = []
        per_class = {i: 0 for i in range(len(classes))}
        for split in dataset.splits:
            rows = dataset.rows(split)
            counts = {c: 0 for c in classes}
            for row in rows:
                label = row["label"]
                if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(classes):
                    raise DataError(f"dataset {dataset.name!r} split {split!r}: sample {row['id']!r} has label {label!r}; "
                                    f"a {self.name} label is a class index 0..{len(classes) - 1}")
                counts[classes[label]] += 1
                if (split == "train" or "train" not in dataset.splits) and per_class[label] < EXAMPLES_PER_CLASS:
                    per_class[label] += 1
                    examples.append({"class_id": label, "example": self.example(row)})
            splits.append({"name": split, "total": len(rows), "class_counts": counts})
        doc = {
            "name": dataset.name,
            "task": self.name,
            "datatype": dataset.datatype,
            **dataset_metadata(meta),
            "classes": [{"id": i, "label": c, "extra": extra.get(c, {})} for i, c in enumerate(classes)],
            "splits": splits,
            "revision": dataset.revision(),
            "path": str(dataset.root.resolve()),
        }
        groups = read_class_groups(dataset.root, classes)
        if groups:
            doc["class_groups"] = groups
        return doc, examples

    def example(self, row: dict[str, Any]) -> Any:
        """What `zooeval dataset` shows of a sample: its text, or its image file."""
        return row.get("file") or row.get("text")

    def open_variant(self, dataset: LocalDataset, revision: str, perturbation: "Perturbation | None", seed: int,
                     cache_root: Path) -> LocalDataset:
        from perturbations.cache import ensure_variant

        return ensure_variant(dataset, revision, perturbation, seed, cache_root)

    # -- models -------------------------------------------------------------------------------------
    def map_labels(self, id2label: dict[int, str], doc: dict[str, Any], trained_on_dataset: bool) -> Mapping:
        classes = [c["label"] for c in doc["classes"]]
        mapping = map_labels(id2label, classes, doc.get("synonyms"), trained_on_dataset=trained_on_dataset)
        return Mapping(mapping.model_to_dataset, mapping.to_doc(classes, id2label))

    def run(self, module: "EvaluationModule", loaded: "LoadedModel", dataset: LocalDataset, split: str,
            mapping: Mapping, batch_size: int, on_batch: Callable[[int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[ClassificationPredictions, dict[str, Any]]:
        """Predict every sample of ``split``: the top-k dataset classes and their probabilities."""
        import torch

        from modules.base import InferenceError
        from tasks.batching import length_order, restore_order, runtime_record, timed_pass

        rows = dataset.rows(split)
        order = length_order(rows)  # text: batches of similar length (little padding); restored below
        ordered = [rows[i] for i in order] if order is not None else rows
        n_classes = len(dataset.classes)
        k = min(TOP_K, n_classes)
        device = loaded.device
        index = torch.as_tensor(mapping.index, dtype=torch.long, device=device).unsqueeze(0)
        if index.shape[1] != len(loaded.id2label):
            raise InferenceError(f"label mapping covers {index.shape[1]} labels but the model has {len(loaded.id2label)}")
        top_labels: list[np.ndarray] = []
        top_scores: list[np.ndarray] = []

        def keep(part: list[dict[str, Any]], logits: Any, _read: list[Any]) -> None:
            if logits.shape[-1] != index.shape[1]:
                raise InferenceError(f"model returned {logits.shape[-1]} scores per sample, "
                                     f"config declares {index.shape[1]} labels")
            check_finite(logits, part)
            scores = dataset_scores(logits, index, n_classes)
            if not torch.isfinite(scores).all():
                raise InferenceError("the model's scores are NaN or infinite after the softmax; no result is stored")
            vals, idx = torch.topk(scores, k, dim=-1)
            top_labels.append(idx.cpu().numpy())
            top_scores.append(vals.cpu().numpy().astype(np.float64))

        warmup_s, total = timed_pass(module, loaded, ordered, batch_size, lambda row: self.load_input(dataset, row), keep,
                                     on_batch, should_stop)
        preds = ClassificationPredictions(
            [str(r["id"]) for r in rows], np.asarray([int(r["label"]) for r in rows], dtype=np.int64),
            restore_order(np.concatenate(top_labels), order) if top_labels else np.zeros((0, k), dtype=np.int64),
            restore_order(np.concatenate(top_scores), order) if top_scores else np.zeros((0, k)))
        return preds, runtime_record(len(rows), total, batch_size, device, warmup_s)

    # -- stored predictions ---------------------------------------------------------------------------
    def encode(self, predictions: ClassificationPredictions) -> list[dict[str, Any]]:
        """Chunks of PREDICTION_CHUNK samples: sample ids, true classes, top-k classes and probabilities."""
        p = predictions
        n = len(p)
        return [{"sample_ids": list(p.sample_ids[s : s + PREDICTION_CHUNK]),
                 "y_true": np.asarray(p.y_true[s : s + PREDICTION_CHUNK]).astype(int).tolist(),
                 "topk_labels": np.asarray(p.topk_labels[s : s + PREDICTION_CHUNK]).astype(int).tolist(),
                 "topk_scores": np.asarray(p.topk_scores[s : s + PREDICTION_CHUNK]).astype(float).tolist()}
                for s in range(0, max(n, 1), PREDICTION_CHUNK)]

    def decode(self, chunks: list[dict[str, Any]]) -> ClassificationPredictions:
        ids = [i for c in chunks for i in c["sample_ids"]]
        k = max((len(row) for c in chunks for row in c["topk_labels"]), default=1)
        return ClassificationPredictions(
            ids, np.asarray([y for c in chunks for y in c["y_true"]], dtype=np.int64),
            np.asarray([row for c in chunks for row in c["topk_labels"]], dtype=np.int64).reshape(len(ids), k),
            np.asarray([row for c in chunks for row in c["topk_scores"]], dtype=np.float64).reshape(len(ids), k))

    def processor_input(self, predictions: ClassificationPredictions, dataset: Callable[[], Any], split: str):
        return predictions


IMAGE_CLASSIFICATION = register_task(ClassificationTask(
    "image-classification", "image", zoo_tags={"huggingface": ("image-classification",), "fiftyone": ("classification",)},
    architecture_suffixes=("ForImageClassification",), default_for_datatype=True))
TEXT_CLASSIFICATION = register_task(ClassificationTask(
    "text-classification", "text", zoo_tags={"huggingface": ("text-classification",)},
    architecture_suffixes=("ForSequenceClassification",), default_for_datatype=True))
