"""Perturbation template: make_params draws randomness, transform is pure (as torchvision v2)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from core.registry import Registry


class Perturbation(ABC):
    """A named, versioned, deterministic transform of one sample's input.

    ``datatype`` is "image" (input is a PIL image) or "text" (input is a str). Randomness is drawn only in
    ``make_params`` from a generator seeded by (seed, sample index), so a variant is reproducible and can
    be built in shards.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    datatype: ClassVar[str]
    description: ClassVar[str]
    method: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params = params

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "params": self.params}

    def make_params(self, rng: np.random.Generator, inpt: Any) -> dict[str, Any]:
        return {}

    @abstractmethod
    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Pure function of the input and the drawn params."""

    def __call__(self, inpt: Any, seed: int, index: int) -> Any:
        rng = np.random.default_rng([seed, index])
        return self.transform(inpt, self.make_params(rng, inpt))


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation", "zooeval.perturbations")


def register_perturbation(p: Perturbation, name: str | None = None) -> Perturbation:
    PERTURBATIONS.register(name or p.name, p)
    return p
