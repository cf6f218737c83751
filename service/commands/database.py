"""``zooeval db``: the embedded MongoDB server (its status, stopping it)."""
from __future__ import annotations

import click

from service.commands.context import Ctx, pass_ctx


@click.group()
def db() -> None:
    """Manage the embedded MongoDB server."""


@db.command("status")
@pass_ctx
def db_status(c: Ctx) -> None:
    """Show whether the embedded mongod runs, its port, version and data size."""
    from service.mongo import EmbeddedMongo, redact_uri

    if c.mongo_uri:
        click.echo(f"using an external server: {redact_uri(c.mongo_uri)}")
        return
    st = EmbeddedMongo(c.home).status()
    for key, value in st.items():
        click.echo(f"{key:>12}: {redact_uri(value) if key == 'uri' and value else value}")


@db.command("stop")
@pass_ctx
def db_stop(c: Ctx) -> None:
    """Stop the embedded mongod (the next command that needs it starts it again)."""
    from service.mongo import EmbeddedMongo

    stopped = EmbeddedMongo(c.home).stop()
    click.echo("stopped" if stopped else "not running")


COMMANDS = [db]
