"""The ``zooeval`` command (click): the group and its options; the subcommands live in service/commands/ (and the web
commands in service/web/commands.py)."""
from __future__ import annotations

import os
from typing import Any

import click

from service.commands import cards, catalog, database, results, runs
from service.commands.context import Ctx


class _Commands(click.Group):
    """The command group: a plug-in that cannot be loaded is one clear line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from core.registry import PluginError

        try:
            return super().invoke(ctx)
        except PluginError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="ZOOEVAL_HOME", help="State folder (database, datasets, variants). Default ~/.zooeval.")
@click.option("--mongo-uri", envvar="ZOOEVAL_MONGO_URI", help="Use this MongoDB server instead of the embedded one.")
@click.option("--db", envvar="ZOOEVAL_DB", default="zooeval", show_default=True, help="Database name.")
@click.version_option(package_name="zooeval")
@click.pass_context
def main(ctx: click.Context, home: str | None, mongo_uri: str | None, db: str) -> None:
    """zooeval: evaluate the models of model zoos and store disaggregated results in MongoDB."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    ctx.obj = Ctx(home, mongo_uri, db)


def _add_commands() -> None:
    """The subcommands, by concern; ``serve``, ``report`` and ``fiftyone`` live with the web layer."""
    from service.web.commands import COMMANDS as WEB_COMMANDS

    for module_commands in (database.COMMANDS, catalog.COMMANDS, runs.COMMANDS, results.COMMANDS, cards.COMMANDS,
                            WEB_COMMANDS):
        for command in module_commands:
            main.add_command(command)


_add_commands()

if __name__ == "__main__":
    main()
