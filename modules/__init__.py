"""EvaluationModules: loading and forward passes, one class per (model source x format x task)."""


def load_all() -> None:
    """Register every module class of this package (the ``zooeval.modules`` entry point of zooeval itself)."""
    from core.registry import import_submodules

    import_submodules(__name__)
