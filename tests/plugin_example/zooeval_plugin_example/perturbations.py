"""The "shout" text variant: the text in capitals with an exclamation mark."""
from __future__ import annotations

from typing import Any

from perturbations.base import Perturbation, register_perturbation


class Shout(Perturbation):
    name = "shout"
    datatype = "text"
    description = "The text is upper-cased and ends with an exclamation mark"
    method = 'str.upper() + "!"'

    def transform(self, inpt: str, params: dict[str, Any]) -> str:
        return inpt.upper() + "!"


def register() -> None:
    """Register the plug-in's perturbations (its zooeval.perturbations entry point)."""
    register_perturbation(Shout())
