"""zooeval pipeline: the Executor, task identity, the store, the embedded database and the CLI."""

__version__ = "0.1.0"
