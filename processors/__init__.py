"""Reusable metric calculators. A processor never loads a model: it reads stored predictions."""


def load_all() -> None:
    """Register every processor of this package (the ``zooeval.processors`` entry point of zooeval itself)."""
    from core.registry import import_submodules

    import_submodules(__name__)
