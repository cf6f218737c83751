"""What every ``zooeval`` command shares: its context object (the state folder and the store, opened on first use)."""
from __future__ import annotations

import os
from pathlib import Path

import click


class Ctx:
    """The `zooeval` group's options: ``home`` (ZOOEVAL_HOME), the MongoDB server and database; ``store`` opens it
    (the embedded mongod is started when no server is given)."""

    def __init__(self, home: str | None, mongo_uri: str | None, db: str) -> None:
        if home:
            os.environ["ZOOEVAL_HOME"] = str(Path(home).resolve())
        self.mongo_uri = mongo_uri
        self.db = db
        self._store = None

    @property
    def home(self) -> Path:
        from core.envinfo import zooeval_home

        return zooeval_home()

    @property
    def store(self):
        if self._store is None:
            from core.store import Store
            from service.mongo import MongoError, get_mongo_uri

            try:
                uri = get_mongo_uri(self.mongo_uri)
            except MongoError as exc:
                raise click.ClickException(str(exc)) from None
            self._store = Store(uri, self.db)
        return self._store


pass_ctx = click.make_pass_decorator(Ctx)


def register_local(c: Ctx, datasets_dir: Path | None = None) -> list[str]:
    """Register the built-in dataset catalogue and the datasets under ZOOEVAL_HOME/datasets (or ``datasets_dir``);
    returns their names. The commands that read or evaluate datasets call it first."""
    from scraper.datasets import register_catalogue, register_datasets

    register_catalogue(c.store)
    return register_datasets(c.store, datasets_dir or (c.home / "datasets"), log=click.echo)

