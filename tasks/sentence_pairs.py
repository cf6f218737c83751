"""Sentence-pair tasks: pair classification (QNLI/MNLI/RTE/MRPC-style: does the second text follow from, or
paraphrase, the first) and graded similarity (STS-B-style regression: a score per pair; Pearson and Spearman).

Datasets are LocalDataset folders whose rows carry ``text`` and ``text_pair`` (a class index as ``label`` for
pair classification, a float for similarity), or folders in a real GLUE layout (TSV files or Hugging Face's
parquet files: core.glue) whose dataset.json says ``"format": "glue"`` and names the GLUE task
(``"glue_task": "stsb"``) and the splits to read. A text perturbation changes both texts of a pair.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from core.data import DataError, LocalDataset, dataset_metadata
from core.glue import GlueFormatError, read_glue_split
from tasks.base import Column, Mapping, TaskKind, register_task
from tasks.classification import ClassificationTask

if TYPE_CHECKING:
    from modules.base import EvaluationModule, LoadedModel
    from perturbations.base import Perturbation

PREDICTION_CHUNK = 50_000  # pairs per stored chunk: 50,000 x 2 float64 = 800 kB of scores


class GlueDataset(LocalDataset):
    """A dataset folder in a real GLUE layout, read with core.glue: the dataset.json names the GLUE task
    (``glue_task``) and the splits (Hugging Face's names: train, validation, test, validation_matched, ...)."""

    @classmethod
    def open(cls, root: str | Path) -> "GlueDataset":
        root = Path(root)
        try:
            meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"dataset metadata {root / 'dataset.json'} is unreadable: {exc}") from None
        for key in ("name", "glue_task", "splits"):
            if key not in meta:
                raise DataError(f"GLUE dataset {root}: dataset.json has no {key!r}")
        ds = cls(root, {**meta, "datatype": "text-pair"})
        ds._rows = {}
        for split in meta["splits"]:
            try:
                read = read_glue_split(root, meta["glue_task"], split)
            except GlueFormatError as exc:
                raise DataError(str(exc)) from None
            ds._rows[split] = [{**r, "text_pair": r["text_pair"] or ""} for r in read.rows]
            ds.meta["classes"] = read.classes or []
        return ds

    def rows(self, split: str) -> list[dict[str, Any]]:
        if split not in self._rows:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; it has {self.splits}")
        return self._rows[split]

    def revision(self) -> str:
        h = hashlib.sha256(json.dumps(self.meta, sort_keys=True).encode())
        for split in sorted(self._rows):
            h.update(json.dumps(self._rows[split], sort_keys=True).encode())
        return h.hexdigest()[:16]


def open_pair_dataset(path: str | Path) -> LocalDataset:
    """A sentence-pair dataset folder: a GLUE layout (dataset.json ``"format": "glue"``) or a LocalDataset."""
    meta_path = Path(path) / "dataset.json"
    try:
        glue = json.loads(meta_path.read_text(encoding="utf-8")).get("format") == "glue"
    except (OSError, ValueError, AttributeError):
        glue = False
    return GlueDataset.open(path) if glue else LocalDataset.open(path)


def check_pairs(dataset: LocalDataset) -> None:
    """DataError naming the sample when a row lacks one of its two texts."""
    for split in dataset.splits:
        for row in dataset.rows(split):
            if not isinstance(row.get("text"), str) or not isinstance(row.get("text_pair"), str):
                raise DataError(f"dataset {dataset.name!r} split {split!r}: sample {row.get('id')!r} is not a text pair "
                                f"(it has {sorted(row)}; a pair needs 'text' and 'text_pair')")


def text_perturbations_only(kind: TaskKind, perturbation: "Perturbation") -> str | None:
    """A pair kind takes text perturbations (applied to both texts of a pair: perturbations.cache)."""
    return None if perturbation.datatype == "text" else f"it perturbs {perturbation.datatype} data, not text pairs"


@dataclass(eq=False)
class PairClassificationTask(ClassificationTask):
    """Classification of text pairs: a ClassificationTask whose input is (text, text_pair)."""

    supports_variant = text_perturbations_only

    def open_dataset(self, path: str | Path) -> LocalDataset:
        return open_pair_dataset(path)

    def load_input(self, dataset: LocalDataset, row: dict[str, Any]) -> tuple[str, str]:
        return row["text"], row["text_pair"]

    def example(self, row: dict[str, Any]) -> str:
        return f"{row.get('text')} ||| {row.get('text_pair')}"

    def dataset_doc(self, dataset: LocalDataset) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        check_pairs(dataset)
        return super().dataset_doc(dataset)


@dataclass
class ScorePredictions:
    """One predicted and one true score per sample (what regression processors read)."""

    sample_ids: list[str]
    y_true: np.ndarray  # (n,) float64
    y_pred: np.ndarray  # (n,) float64

    def __len__(self) -> int:
        return len(self.sample_ids)


@dataclass(eq=False)
class SentenceSimilarityTask(TaskKind):
    """Graded similarity of text pairs: the model gives a score per pair (a regression head, or the cosine
    of two embeddings), compared with the true score by correlation. No label mapping: a score has no labels."""

    unit = "pair"
    supports_variant = text_perturbations_only

    def __post_init__(self) -> None:
        self.default_processors = self.default_processors or ("regression",)
        self.columns = self.columns or (Column("n", "n", 0), Column("pearson", "pearson"), Column("spearman", "spearman"),
                                        Column("MSE", "mse"))

    def open_dataset(self, path: str | Path) -> LocalDataset:
        return open_pair_dataset(path)

    def dataset_doc(self, dataset: LocalDataset) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        check_pairs(dataset)
        splits, examples = [], []
        for split in dataset.splits:
            rows = dataset.rows(split)
            scores = []
            for row in rows:
                label = row.get("label")
                if isinstance(label, bool) or not isinstance(label, (int, float)) or not np.isfinite(label):
                    raise DataError(f"dataset {dataset.name!r} split {split!r}: sample {row['id']!r} has score {label!r}; "
                                    f"a {self.name} label is a finite number")
                scores.append(float(label))
            stats = {"min": min(scores), "max": max(scores), "mean": float(np.mean(scores))} if scores else {}
            splits.append({"name": split, "total": len(rows), "class_counts": {}, "scores": stats})
            examples += [{"class_id": None, "example": f"{r['text']} ||| {r['text_pair']} -> {r['label']}"} for r in rows[:5]]
        doc = {"name": dataset.name, "task": self.name, "datatype": self.datatype, **dataset_metadata(dataset.meta),
               "classes": [], "target": dataset.meta.get("target") or {"type": "float"}, "splits": splits,
               "revision": dataset.revision(), "path": str(dataset.root.resolve())}
        return doc, examples

    def open_variant(self, dataset: LocalDataset, revision: str, perturbation: "Perturbation | None", seed: int,
                     cache_root: Path) -> LocalDataset:
        from perturbations.cache import ensure_variant

        return ensure_variant(dataset, revision, perturbation, seed, cache_root)

    def map_labels(self, id2label: dict[int, str], doc: dict[str, Any], trained_on_dataset: bool) -> Mapping:
        return Mapping(None, {"method": "none", "why": "a similarity score has no labels to map"})

    def sample_inputs(self, dataset: LocalDataset, split: str, n: int) -> list[tuple[str, str]]:
        return [(row["text"], row["text_pair"]) for row in dataset.rows(split)[:n]]

    def run(self, module: "EvaluationModule", loaded: "LoadedModel", dataset: LocalDataset, split: str, mapping: Mapping,
            batch_size: int, on_batch: Callable[[int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[ScorePredictions, dict[str, Any]]:
        """A score for every pair of ``split`` (the module's forward returns one number per pair)."""
        import torch

        from modules.base import InferenceError
        from tasks.batching import length_order, restore_order, runtime_record, timed_pass

        rows = dataset.rows(split)
        order = length_order(rows)  # batches of similar length (little padding); restored below
        ordered = [rows[i] for i in order] if order is not None else rows
        scores: list[np.ndarray] = []

        def keep(part: list[dict[str, Any]], outputs: Any, _read: list[Any]) -> None:
            out = torch.as_tensor(outputs).float().reshape(len(part), -1)
            if out.shape[1] != 1:
                raise InferenceError(f"{module.name} returned {out.shape[1]} scores per pair; a similarity model "
                                     "gives one")
            if not torch.isfinite(out).all():
                raise InferenceError(f"{module.name} produced NaN or infinite scores; no result is stored")
            scores.append(out[:, 0].cpu().numpy().astype(np.float64))

        warmup_s, total = timed_pass(module, loaded, ordered, batch_size, lambda row: (row["text"], row["text_pair"]),
                                     keep, on_batch, should_stop)
        preds = ScorePredictions([str(r["id"]) for r in rows], np.asarray([float(r["label"]) for r in rows]),
                                 restore_order(np.concatenate(scores), order) if scores else np.zeros(0))
        return preds, runtime_record(len(rows), total, batch_size, loaded.device, warmup_s)

    def encode(self, predictions: ScorePredictions) -> list[dict[str, Any]]:
        """Chunks of PREDICTION_CHUNK pairs: sample ids, and the true and predicted scores as float64 bytes."""
        p = predictions
        return [{"kind": "scores", "sample_ids": list(p.sample_ids[s : s + PREDICTION_CHUNK]),
                 "y_true": np.asarray(p.y_true[s : s + PREDICTION_CHUNK], dtype="<f8").tobytes(),
                 "y_pred": np.asarray(p.y_pred[s : s + PREDICTION_CHUNK], dtype="<f8").tobytes()}
                for s in range(0, max(len(p), 1), PREDICTION_CHUNK)]

    def decode(self, chunks: list[dict[str, Any]]) -> ScorePredictions:
        return ScorePredictions([i for c in chunks for i in c["sample_ids"]],
                                np.concatenate([np.frombuffer(c["y_true"], dtype="<f8") for c in chunks] or [np.zeros(0)]),
                                np.concatenate([np.frombuffer(c["y_pred"], dtype="<f8") for c in chunks] or [np.zeros(0)]))

    def processor_input(self, predictions: ScorePredictions, dataset: Callable[[], Any], split: str) -> ScorePredictions:
        return predictions


PAIR_CLASSIFICATION = register_task(PairClassificationTask(
    "text-pair-classification", "text-pair", zoo_tags={"huggingface": ("text-classification",)}))
SENTENCE_SIMILARITY = register_task(SentenceSimilarityTask(
    "sentence-similarity", "text-pair", zoo_tags={"huggingface": ("sentence-similarity",)}))
