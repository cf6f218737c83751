"""Batched classification inference with a prefetching loader ("double buffering").

A background thread reads and prepares batch i+1 (image decoding, tokenisation) while the model runs
batch i under ``torch.inference_mode``. Model outputs are mapped to dataset classes and the top-k kept.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch

from modules.base import EvaluationModule, LoadedModel
from core.data import LocalDataset

TOP_K = 5


class InferenceError(Exception):
    error_class = "inference_error"


def prefetch(iterator: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``iterator`` in a thread, ``depth`` items ahead; re-raise its exceptions in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", done))
        except BaseException as exc:  # handed to the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=worker, daemon=True, name="zooeval-prefetch")
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()


def batches(module: EvaluationModule, loaded: LoadedModel, dataset: LocalDataset, rows: list[dict], batch_size: int):
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        inputs = [dataset.load_input(r) for r in part]
        prepared = module.prepare(loaded, inputs)
        yield part, prepared


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    non_blocking = device.startswith("cuda")
    return {k: (v.to(device, non_blocking=non_blocking) if hasattr(v, "to") else v) for k, v in batch.items()}


def dataset_scores(logits: torch.Tensor, index: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Softmax over model labels, then each dataset class takes the best probability of its model labels."""
    probs = torch.softmax(logits.float(), dim=-1)
    out = torch.zeros(probs.shape[0], n_classes, dtype=probs.dtype, device=probs.device)
    return out.scatter_reduce(1, index.expand(probs.shape[0], -1), probs, reduce="amax", include_self=True)


def warm_up(module: EvaluationModule, loaded: LoadedModel, inputs: list[Any]) -> float:
    """One untimed-for-throughput forward pass on the first batch (lazy initialisation, kernel selection,
    caches); returns its seconds, recorded apart from the throughput."""
    t0 = time.perf_counter()
    first = module.prepare(loaded, inputs)
    module.forward(loaded, to_device(first, loaded.device))
    _sync(loaded.device)
    return time.perf_counter() - t0


def run_classification(
    module: EvaluationModule,
    loaded: LoadedModel,
    dataset: LocalDataset,
    split: str,
    model_to_dataset: list[int],
    batch_size: int = 32,
    warmup: bool = True,
    on_batch: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Predict every sample of ``split``. Returns (predictions, runtime)."""
    rows = dataset.rows(split)
    n_classes = len(dataset.classes)
    k = min(TOP_K, n_classes)
    device = loaded.device
    index = torch.as_tensor(model_to_dataset, dtype=torch.long, device=device).unsqueeze(0)
    if index.shape[1] != len(loaded.id2label):
        raise InferenceError(f"label mapping covers {index.shape[1]} labels but the model has {len(loaded.id2label)}")
    ids: list[str] = []
    y_true: list[int] = []
    top_labels: list[np.ndarray] = []
    top_scores: list[np.ndarray] = []
    warmup_s = 0.0
    with torch.inference_mode():
        if warmup and rows:
            warmup_s = warm_up(module, loaded, [dataset.load_input(r) for r in rows[: min(batch_size, len(rows))]])
        t0 = time.perf_counter()
        for part, prepared in prefetch(batches(module, loaded, dataset, rows, batch_size)):
            logits = module.forward(loaded, to_device(prepared, device))
            if logits.shape[-1] != index.shape[1]:
                raise InferenceError(f"model returned {logits.shape[-1]} scores per sample, config declares {index.shape[1]} labels")
            finite = torch.isfinite(logits.float()).all(dim=-1)
            if not finite.all():
                bad = [str(r["id"]) for r, ok in zip(part, finite.tolist()) if not ok]
                raise InferenceError(
                    f"the model produced NaN or infinite outputs for {len(bad)} of the {len(part)} samples of a batch "
                    f"(first: {bad[0]!r}); its weights are probably corrupt (NaN), so no result is stored"
                )
            scores = dataset_scores(logits, index, n_classes)
            if not torch.isfinite(scores).all():
                raise InferenceError("the model's scores are NaN or infinite after the softmax; no result is stored")
            vals, idx = torch.topk(scores, k, dim=-1)
            top_labels.append(idx.cpu().numpy())
            top_scores.append(vals.cpu().numpy().astype(np.float64))
            ids.extend(str(r["id"]) for r in part)
            y_true.extend(int(r["label"]) for r in part)
            if on_batch:
                on_batch(len(part))
            if should_stop and should_stop():
                raise KeyboardInterrupt("stop requested")
        _sync(device)
        total = time.perf_counter() - t0
    n = len(ids)
    preds = {
        "sample_ids": ids,
        "y_true": np.asarray(y_true, dtype=np.int64),
        "topk_labels": np.concatenate(top_labels) if top_labels else np.zeros((0, k), dtype=np.int64),
        "topk_scores": np.concatenate(top_scores) if top_scores else np.zeros((0, k)),
    }
    return preds, runtime_record(n, total, batch_size, device, warmup_s)


def runtime_record(n: int, total: float, batch_size: int, device: str, warmup_s: float) -> dict[str, Any]:
    """The stored runtime of an inference: throughput over the timed loop only (model load and the warm-up
    batch are recorded apart)."""
    return {
        "n": n,
        "batch_size": batch_size,
        "device": device,
        "warmup_s": warmup_s,
        "time_in_seconds": total,
        "time_per_instance": total / n if n else 0.0,
        "instances_per_second": n / total if total > 0 else 0.0,
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
