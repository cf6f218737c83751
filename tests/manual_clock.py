"""A clock the test drives, to stand in for the ``time`` module a piece of code reads (monkeypatched on that module)."""
from __future__ import annotations


class ManualClock:
    """``monotonic`` and ``perf_counter`` both return ``now``, which only the test moves."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now
