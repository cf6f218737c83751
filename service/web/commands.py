"""The commands of the web layer: ``zooeval serve``, ``zooeval report`` and ``zooeval fiftyone``. They are
plain click commands using the ``zooeval`` group's context object (service.commands.context.Ctx: ``store``, ``home``);
service.cli adds them with ``main.add_command``."""
from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. On a loopback address the pages are open to the local user; on any other "
                   "they need the API token too (sign in at /login).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.pass_obj
def serve(c, host: str, port: int) -> None:
    """Serve the web pages and the service API (/api/v1, OpenAPI at /openapi.json) over the store.

    Every API request needs `Authorization: Bearer <token>`: ZOOEVAL_API_TOKEN, or the token generated on first
    start into ZOOEVAL_HOME/api-token (mode 0600)."""
    import uvicorn

    from service.web.app import create_app
    from service.web.auth import is_loopback, load_or_create_token

    try:
        token, where = load_or_create_token(c.home)
    except (ValueError, PermissionError) as exc:
        raise click.ClickException(str(exc)) from None
    open_views = is_loopback(host)
    click.echo("preparing the store's indexes for the pages (a few minutes once on a large store) ...")
    app = create_app(c.store, c.home, token=token, open_views=open_views)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"zooeval is serving at http://{shown}:{port}/  (API: http://{shown}:{port}/api/v1, "
               f"OpenAPI: /openapi.json; the API token is in {where})")
    if not open_views:
        click.echo(f"warning: listening on {host}, not a loopback address: the pages need the token (sign in at /login), "
                   "and plain HTTP carries it unencrypted; put a TLS proxy in front", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@click.command()
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the site into (created).")
@click.option("--max-models", default=1000, show_default=True, type=click.IntRange(1, 2000),
              help="Models listed (by name), each with its pages.")
@click.pass_obj
def report(c, output: Path, max_models: int) -> None:
    """Write the web pages as a static site (open DIR/index.html; publish it without a server)."""
    from service.web.site import write_site

    write_site(c.store, c.home, output, max_models=max_models, log=click.echo)
    click.echo(f"open {output / 'index.html'}")


@click.command()
@click.argument("model")
@click.option("--dataset", required=True, help="Dataset of the result (an image dataset).")
@click.option("--variant", default="original", show_default=True, help="Variant of the result.")
@click.option("--split", default=None, help="Split of the result (needed only when the model has several).")
@click.option("--port", default=5151, show_default=True, type=click.IntRange(1, 65535), help="Port of the App.")
@click.option("--launch/--no-launch", default=True, show_default=True,
              help="Launch the FiftyOne App on 127.0.0.1 (else only build the dataset).")
@click.pass_obj
def fiftyone(c, model: str, dataset: str, variant: str, split: str | None, port: int, launch: bool) -> None:
    """Build a FiftyOne dataset from MODEL's stored predictions on DATASET (no inference) and open the FiftyOne
    App on it, for browsing each sample with its true and predicted class (classification) or boxes (detection)."""
    from service.web.fiftyone_app import FiftyOneError, build_dataset
    from service.web.fiftyone_app import launch as launch_app

    store = c.store  # sets FIFTYONE_DATABASE_URI to zooeval's MongoDB server before fiftyone is imported
    try:
        fo_dataset, _, _ = build_dataset(store, c.home, model, dataset, variant, split, log=click.echo)
    except FiftyOneError as exc:
        raise click.ClickException(str(exc)) from None
    if launch:
        click.echo(f"the FiftyOne App is at http://127.0.0.1:{port}/ (Ctrl-C to stop)")
        launch_app(fo_dataset, port=port)


#: The commands service.cli adds to the ``zooeval`` group.
COMMANDS = [serve, report, fiftyone]
