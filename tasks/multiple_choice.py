"""Multiple choice (HellaSwag-style): a causal language model scores every ending of an item by the
log-likelihood of its tokens after the context; the best-scored ending is its answer (``acc``), or the best
per character of the ending (``acc_norm``), as lm-evaluation-harness's ``multiple_choice`` output type defines
them.

Datasets are core.hellaswag folders (plain rows ``context`` / ``endings`` / ``label``, or HellaSwag's own jsonl).
The endings are the classes of an item, so there is no label mapping. The stored prediction of an item is, per
ending, the summed log-likelihood and the ending's length in characters and in UTF-8 bytes, so acc and
acc_norm (and a byte-normalised accuracy) are recomputed from stored predictions with no inference.

Text perturbations (typos, lowercase, ...) change the context only: the endings are the answers being compared,
kept as written so that their lengths, and so acc_norm's normalisation, stay those of the original item.

Hub models: ``text-generation`` (the Hub's tag of causal LMs) and Transformers architectures ``...ForCausalLM``;
modules.causal_lm evaluates them zero-shot. Classification modules take only their own tags, so no
text-generation model becomes a classification candidate.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from core.data import dataset_metadata, write_dataset
from core.hellaswag import MultipleChoiceDataset
from tasks.base import Column, Mapping, TaskKind, register_task

if TYPE_CHECKING:
    from modules.base import EvaluationModule, LoadedModel
    from perturbations.base import Perturbation

PREDICTION_CHUNK = 20_000  # items per stored chunk (with 4 endings: 80,000 x 3 x 8 bytes, about 2 MB)
EXAMPLES = 5
#: The row field a text perturbation changes (the context; see the module docstring).
PERTURBED_FIELD = "context"


@dataclass
class MultipleChoicePredictions:
    """Per item its gold index and, per ending (flat, item after item), the summed log-likelihood and the
    ending's length in characters and in UTF-8 bytes."""

    sample_ids: list[str]
    y_true: np.ndarray  # (n,) int64 gold ending index
    n_endings: np.ndarray  # (n,) int64 endings per item
    loglik: np.ndarray  # (sum n_endings,) float64
    chars: np.ndarray  # (sum n_endings,) int64 len(ending)
    utf8_bytes: np.ndarray  # (sum n_endings,) int64 len(ending.encode("utf-8"))

    def __len__(self) -> int:
        return len(self.sample_ids)

    def offsets(self) -> np.ndarray:
        """Where each item's endings start in the flat arrays (n + 1,)."""
        return np.concatenate([[0], np.cumsum(self.n_endings)]).astype(np.int64)

    def choices(self, normalise_by: str | None = None) -> np.ndarray:
        """Each item's chosen ending: argmax of the log-likelihoods, or of log-likelihood / length ("chars" or
        "bytes"), the first ending on ties (numpy's argmax, as lm-evaluation-harness)."""
        lengths = {"chars": self.chars, "bytes": self.utf8_bytes}
        scores = self.loglik if normalise_by is None else self.loglik / lengths[normalise_by]
        starts = self.offsets()
        return np.asarray([int(np.argmax(scores[a:b])) for a, b in zip(starts[:-1], starts[1:])], dtype=np.int64)


def _binary(values: np.ndarray, dtype: str) -> bytes:
    return np.asarray(values, dtype=dtype).tobytes()


@dataclass(eq=False)
class MultipleChoiceTask(TaskKind):
    """Multiple choice by log-likelihood (HellaSwag, PIQA-, ARC-style items with endings)."""

    unit = "item"

    def __post_init__(self) -> None:
        self.default_processors = self.default_processors or ("multiple-choice",)
        self.columns = self.columns or (Column("n", "n", 0), Column("acc", "acc"), Column("acc_norm", "acc_norm"))

    # -- datasets -----------------------------------------------------------------------------------
    def open_dataset(self, path: str | Path) -> MultipleChoiceDataset:
        return MultipleChoiceDataset.open(path)

    def dataset_doc(self, dataset: MultipleChoiceDataset) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        splits, examples = [], []
        for split in dataset.splits:
            rows = dataset.rows(split)
            sizes = sorted({len(r["endings"]) for r in rows})
            gold = {str(i): sum(1 for r in rows if r["label"] == i) for i in range(max(sizes, default=0))}
            splits.append({"name": split, "total": len(rows), "class_counts": {}, "endings": sizes, "gold_counts": gold})
            examples += [{"class_id": None, "example": f"{r['context']} -> {r['endings'][r['label']]}"}
                         for r in rows[:EXAMPLES]]
        doc = {"name": dataset.name, "task": self.name, "datatype": self.datatype, **dataset_metadata(dataset.meta),
               "classes": [], "format": dataset.meta.get("format", "plain"), "splits": splits,
               "revision": dataset.revision(), "path": str(dataset.root.resolve())}
        return doc, examples

    # -- variants -----------------------------------------------------------------------------------
    def supports_variant(self, perturbation: "Perturbation") -> str | None:
        return None if perturbation.datatype == "text" else f"it perturbs {perturbation.datatype} data, not texts"

    def open_variant(self, dataset: MultipleChoiceDataset, revision: str, perturbation: "Perturbation | None", seed: int,
                     cache_root: Path) -> MultipleChoiceDataset:
        """The dataset with every item's context perturbed (item i of a split: ``perturbation(context, seed, i)``),
        built once into the variant cache as a plain multiple-choice folder."""
        from perturbations.cache import ensure_built, variant_fingerprint, variant_meta, variant_path, write_marker

        if perturbation is None:
            return dataset

        def build(out: Path) -> None:
            splits = {}
            for split in dataset.splits:
                splits[split] = [{**row, PERTURBED_FIELD: perturbation(row[PERTURBED_FIELD], seed, index=i)}
                                 for i, row in enumerate(dataset.rows(split))]
            meta = variant_meta(dataset.meta, perturbation, seed, revision, drop=("format", "files"))
            meta["variant"]["fields"] = [PERTURBED_FIELD]
            write_dataset(out, meta, splits)
            write_marker(out, variant_fingerprint(revision, perturbation, seed))

        return ensure_built(variant_path(cache_root, dataset, revision, perturbation, seed), build,
                             MultipleChoiceDataset.open)

    # -- models -------------------------------------------------------------------------------------
    def map_labels(self, id2label: dict[int, str], doc: dict[str, Any], trained_on_dataset: bool) -> Mapping:
        return Mapping(None, {"method": "none", "why": "the endings of each item are its choices; no labels to map"})

    def sample_inputs(self, dataset: MultipleChoiceDataset, split: str, n: int) -> list[tuple[str, list[str]]]:
        return [(row["context"], row["endings"]) for row in dataset.rows(split)[:n]]

    def run(self, module: "EvaluationModule", loaded: "LoadedModel", dataset: MultipleChoiceDataset, split: str,
            mapping: Mapping, batch_size: int, on_batch: Callable[[int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[MultipleChoicePredictions, dict[str, Any]]:
        """Every ending's log-likelihood for every item of ``split`` (batches of items of similar length)."""
        import torch

        from modules.base import InferenceError
        from tasks.batching import runtime_record, timed_pass

        rows = dataset.rows(split)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["context"]) + max(map(len, rows[i]["endings"])))
        ordered = [rows[i] for i in order]
        scores: list[np.ndarray] = []

        def keep(part: list[dict[str, Any]], outputs: Any, _read: list[Any]) -> None:
            out = torch.as_tensor(outputs).double().reshape(-1)
            expected = sum(len(r["endings"]) for r in part)
            if out.shape[0] != expected:
                raise InferenceError(f"{module.name} returned {out.shape[0]} scores for the {expected} endings of "
                                     f"{len(part)} items")
            if not torch.isfinite(out).all():
                raise InferenceError(f"{module.name} produced NaN or infinite log-likelihoods; no result is stored")
            scores.append(out.cpu().numpy())

        warmup_s, total = timed_pass(module, loaded, ordered, batch_size, lambda row: (row["context"], row["endings"]),
                                     keep, on_batch, should_stop)
        flat = np.concatenate(scores) if scores else np.zeros(0)
        per_item: list[np.ndarray] = [np.zeros(0)] * len(rows)
        start = 0
        for i in order:  # the flat scores are in the batches' order: each item's endings back at its position
            k = len(rows[i]["endings"])
            per_item[i], start = flat[start : start + k], start + k
        endings = [e for r in rows for e in r["endings"]]
        preds = MultipleChoicePredictions(
            [str(r["id"]) for r in rows], np.asarray([r["label"] for r in rows], dtype=np.int64),
            np.asarray([len(r["endings"]) for r in rows], dtype=np.int64),
            np.concatenate(per_item) if rows else np.zeros(0),
            np.asarray([len(e) for e in endings], dtype=np.int64),
            np.asarray([len(e.encode("utf-8")) for e in endings], dtype=np.int64))
        return preds, runtime_record(len(rows), total, batch_size, loaded.device, warmup_s)

    # -- stored predictions ---------------------------------------------------------------------------
    def encode(self, predictions: MultipleChoicePredictions) -> list[dict[str, Any]]:
        """Chunks of PREDICTION_CHUNK items: ids, gold indices, ending counts, and per ending the log-likelihood
        (float64) and lengths (int64), as little-endian bytes."""
        p = predictions
        starts = p.offsets()
        chunks = []
        for s in range(0, max(len(p), 1), PREDICTION_CHUNK):
            e = min(s + PREDICTION_CHUNK, len(p))
            a, b = int(starts[s]) if len(p) else 0, int(starts[e]) if len(p) else 0
            chunks.append({"kind": "multiple-choice", "sample_ids": list(p.sample_ids[s:e]),
                           "y_true": _binary(p.y_true[s:e], "<i8"), "n_endings": _binary(p.n_endings[s:e], "<i8"),
                           "loglik": _binary(p.loglik[a:b], "<f8"), "chars": _binary(p.chars[a:b], "<i8"),
                           "utf8_bytes": _binary(p.utf8_bytes[a:b], "<i8")})
        return chunks

    def decode(self, chunks: list[dict[str, Any]]) -> MultipleChoicePredictions:
        def cat(key: str, dtype: str) -> np.ndarray:
            return np.concatenate([np.frombuffer(c[key], dtype=dtype) for c in chunks] or [np.zeros(0, dtype=dtype)])

        return MultipleChoicePredictions([i for c in chunks for i in c["sample_ids"]], cat("y_true", "<i8").astype(np.int64),
                                         cat("n_endings", "<i8").astype(np.int64), cat("loglik", "<f8").astype(np.float64),
                                         cat("chars", "<i8").astype(np.int64), cat("utf8_bytes", "<i8").astype(np.int64))

    def processor_input(self, predictions: MultipleChoicePredictions, dataset: Callable[[], Any],
                        split: str) -> MultipleChoicePredictions:
        return predictions


MULTIPLE_CHOICE = register_task(MultipleChoiceTask(
    "multiple-choice", "multiple-choice", zoo_tags={"huggingface": ("text-generation",)},
    architecture_suffixes=("ForCausalLM",), max_batch_size=8))
