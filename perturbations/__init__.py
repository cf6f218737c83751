"""Named, versioned, deterministic dataset transforms and the on-disk variant cache."""
from __future__ import annotations

from perturbations.base import PERTURBATIONS, Perturbation, register_perturbation

#: Pseudo-variant name for the unperturbed dataset. It is not a registered Perturbation;
#: ``get_perturbation(ORIGINAL)`` returns None and ``cache.ensure_variant(..., None, ...)`` returns the
#: dataset itself.
ORIGINAL = "original"


def get_perturbation(name: str) -> Perturbation | None:
    """The registered perturbation called ``name``; None for the pseudo-variant "original".

    Raises KeyError (listing the known names) for an unknown name.
    """
    if name == ORIGINAL:
        return None
    return PERTURBATIONS.get(name)


def variant_names() -> list[str]:
    """Every variant name: "original" followed by the registered perturbations."""
    return [ORIGINAL, *PERTURBATIONS.names()]


def load_all() -> None:
    """Register every perturbation of this package (the ``zooeval.perturbations`` entry point of zooeval)."""
    from core.registry import import_submodules

    import_submodules(__name__)


__all__ = ["ORIGINAL", "PERTURBATIONS", "Perturbation", "get_perturbation", "register_perturbation", "variant_names"]
