"""What every runner shares: a prefetching loader ("double buffering": a background thread reads and
prepares batch i+1 while the model runs batch i), device transfer, a timed warm-up batch, the timed pass over a
split (``timed_pass``) and the runtime record stored with every inference."""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterator

import torch

from modules.base import EvaluationModule, LoadedModel


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


def batches(rows: list[Any], batch_size: int, load: Callable[[Any], Any], prepare: Callable[[list[Any]], Any],
            device: str = "cpu") -> Iterator[tuple[list[Any], list[Any], Any]]:
    """(rows, what ``load`` read for each, prepared batch) for consecutive slices of ``rows``: ``prepare`` turns
    what was read into tensors, pinned when they go to a CUDA ``device`` (run it under :func:`prefetch` to
    overlap the model: reading, preparing and pinning then happen in the prefetch thread)."""
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        read = [load(r) for r in part]
        yield part, read, pin_memory(prepare(read), device)


def pin_memory(batch: Any, device: str) -> Any:
    """``batch`` (a tensor, or a dict / list / tuple of them) with its CPU tensors in page-locked memory when
    it goes to a CUDA device, so that :func:`to_device`'s non-blocking copy overlaps the computation; unchanged
    for any other device."""
    if not device.startswith("cuda"):
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory() if batch.device.type == "cpu" else batch
    if isinstance(batch, dict):
        return {k: pin_memory(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(pin_memory(v, device) for v in batch)
    return batch


def text_length(row: dict[str, Any]) -> int | None:
    """How long a text sample is (both texts of a pair), for length-bucketed batches; None for a row that is not
    text (an image: every input is resized to the same shape, so there is no padding to save)."""
    if "file" in row or not isinstance(row.get("text"), str):
        return None
    return len(row["text"]) + len(row.get("text_pair") or "")


def length_order(rows: list[dict[str, Any]]) -> list[int] | None:
    """The positions of ``rows`` sorted by text length (stable), so each batch pads little; None when the rows
    are not all text. Runners predict in this order and put every prediction back at its sample's position."""
    lengths = [text_length(r) for r in rows]
    if not rows or any(n is None for n in lengths):
        return None
    return sorted(range(len(rows)), key=lambda i: lengths[i])


def restore_order(values: Any, order: list[int] | None) -> Any:
    """Predictions made in ``order`` (length_order) put back in sample order (a numpy array, first axis)."""
    if order is None:
        return values
    import numpy as np

    out = np.empty_like(values)
    out[np.asarray(order, dtype=np.int64)] = values
    return out


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    non_blocking = device.startswith("cuda")
    return {k: (v.to(device, non_blocking=non_blocking) if hasattr(v, "to") else v) for k, v in batch.items()}


#: Inputs of the warm-up pass: enough for lazy initialisation and caches, small enough that a small model on a
#: small split does not pay a second pass over it (a whole first batch cost 3x the bare script's fixed time per
#: model in benchmarks/bench_many_models.py).
WARMUP_SAMPLES = 2


def warm_up(module: EvaluationModule, loaded: LoadedModel, inputs: list[Any]) -> float:
    """One forward pass kept out of the throughput (lazy initialisation, kernel selection, caches) on the first
    WARMUP_SAMPLES inputs; returns its seconds, recorded apart from the throughput."""
    t0 = time.perf_counter()
    first = module.prepare(loaded, inputs)
    module.forward(loaded, to_device(first, loaded.device))
    sync(loaded.device)
    return time.perf_counter() - t0


def timed_pass(module: EvaluationModule, loaded: LoadedModel, rows: list[Any], batch_size: int,
               load: Callable[[Any], Any], on_outputs: Callable[[list[Any], Any, list[Any]], None],
               on_batch: Callable[[int], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               model_input: Callable[[Any], Any] | None = None) -> tuple[float, float]:
    """Every runner's loop: a warm-up pass on the first WARMUP_SAMPLES inputs, then every batch of ``rows``
    (read with ``load`` and prepared by the module in the prefetch thread, moved to the model's device) through
    ``module.forward``, under ``torch.inference_mode``. ``model_input`` picks the module's input from what
    ``load`` read (all of it by default; a runner that reads a target with each input, such as a mask or an
    image's size, reads both at once). ``on_outputs(the batch's rows, the outputs, what load read for them)``
    checks and keeps each batch's outputs. Progress goes to ``on_batch``; a stop request raises
    KeyboardInterrupt after the current batch. Returns (warm-up seconds, seconds of the timed pass)."""
    device = loaded.device
    pick = model_input or (lambda read: read)
    warmup_s = 0.0
    with torch.inference_mode():
        if rows:
            warmup_s = warm_up(module, loaded, [pick(load(r)) for r in rows[:WARMUP_SAMPLES]])
        t0 = time.perf_counter()
        for part, read, prepared in prefetch(batches(rows, batch_size, load,
                                                     lambda read: module.prepare(loaded, [pick(x) for x in read]),
                                                     device)):
            on_outputs(part, module.forward(loaded, to_device(prepared, device)), read)
            if on_batch:
                on_batch(len(part))
            if should_stop and should_stop():
                raise KeyboardInterrupt("stop requested")
        sync(device)
        total = time.perf_counter() - t0
    return warmup_s, total


def single_stream(module: EvaluationModule, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
    """The single-stream scenario (MLPerf / AI-BMT): each input alone (batch 1), one after the other, after the
    task's warm-up; a latency is the input's preparation (decoding is not, tokenising or resizing is), forward
    pass and device sync. Percentiles are numpy's (linear interpolation), in milliseconds."""
    import numpy as np

    latencies = []
    with torch.inference_mode():
        for x in inputs:
            t0 = time.perf_counter()
            module.forward(loaded, to_device(module.prepare(loaded, [x]), loaded.device))
            sync(loaded.device)
            latencies.append((time.perf_counter() - t0) * 1000.0)
    ms = np.asarray(latencies, dtype=np.float64)
    if not len(ms):
        return {"n": 0}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"n": len(ms), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(ms.mean()),
            "max_ms": float(ms.max())}


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


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
