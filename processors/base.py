"""Processor template: streaming state (update / merge) and compute() that derives every number."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from core.registry import Registry


@dataclass
class ClassificationPredictions:
    """A batch of stored classification outputs, already mapped to dataset class indices.

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


class Processor(ABC):
    """Turns predictions into standardised results.

    Subclasses set ``name``, ``version`` (bump it when the numbers it produces change) and ``tasks``.
    A processor instance holds the state of one evaluation; ``compute()`` returns a dict:
    ``{"overall": {metric: value}, "per_class": {label: {metric: value}}, ...extra JSON-able fields}``.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, classes: list[str]) -> None:
        self.classes = list(classes)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def identity(cls) -> dict[str, Any]:
        return {"name": cls.name, "version": cls.version}

    @abstractmethod
    def update(self, batch: Any) -> None:
        """Accumulate one batch of predictions."""

    @abstractmethod
    def merge(self, other: "Processor") -> None:
        """Add another instance's state (for sharded processing)."""

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """Derive every result from the accumulated state."""


PROCESSORS: Registry[type[Processor]] = Registry("processor")


def register_processor(cls: type[Processor]) -> type[Processor]:
    """Class decorator: add a processor to the registry under its name."""
    PROCESSORS.register(cls.name, cls)
    return cls
