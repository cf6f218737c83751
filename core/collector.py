"""Python's cyclic garbage collector paused around work that makes many objects without reference cycles."""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (process-wide) for the block, and switch it back on only if it was on.

    Each 700 new containers start a collection, and the rarer full ones walk every object of the process; for
    objects that reference counting frees anyway they find nothing. Measured: the 140,000 triples of a 1,000-class
    confusion matrix took 55-150 ms with the collector running and 18-27 ms paused
    (benchmarks/bench_processor.py); a planning pass over 1.2 million candidates spent 4-6 s in 19 full
    collections that freed nothing (benchmarks/bench_planning.py)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
