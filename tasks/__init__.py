"""Task kinds: one file per kind (classification, detection, ...), each owning what differs between tasks."""


def load_all() -> None:
    """Register every task kind of this package (the ``zooeval.tasks`` entry point of zooeval itself)."""
    from core.registry import import_submodules

    import_submodules(__name__)
