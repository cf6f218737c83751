"""The catalogue commands: ``scrape`` (bring the store in step with a zoo), ``models`` and ``model`` (browse the
stored models), ``datasets`` and ``dataset`` (show one, or add one from the Hugging Face Hub)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from service.commands.cards import print_model_claims
from service.commands.context import Ctx, pass_ctx, register_local
from service.commands.results import print_failures
from service.commands.tables import print_table


@click.command()
@click.option("--source", type=click.Choice(["local", "huggingface", "fiftyone"]), default="local", show_default=True)
@click.option("--path", "path", type=click.Path(file_okay=False, path_type=Path), help="Folder of model repos (source local).")
@click.option("--task", "tasks", multiple=True,
              help="Hugging Face task to list (repeatable; default: the tasks modules can evaluate).")
@click.option("--limit", default=None, type=int, help="List at most this many models per task (Hugging Face).")
@click.option("--full", is_flag=True, help="Hugging Face: list everything, not only what changed since the last sync; "
              "only a complete listing marks vanished models as removed.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.pass_obj
def scrape(c: Ctx, source: str, path: Path | None, tasks: tuple[str, ...], limit: int | None, full: bool, progress) -> None:
    """Bring the store in step with a zoo (and register the datasets under ZOOEVAL_HOME/datasets).

    Models that declare no training dataset get one inferred from their labels, with the evidence stored."""
    from scraper.training_data import infer_missing_training_datasets

    register_local(c)
    if progress is None:
        progress = sys.stderr.isatty()
    if source == "local":
        from scraper.local import scrape_local

        scrape_local(c.store, path or (c.home / "zoo"), log=click.echo)
    elif source == "huggingface":
        from scraper.hub_client import HubUnreachable
        from scraper.huggingface import sync_huggingface

        kwargs: dict[str, Any] = {"limit": limit, "full": full, "progress": progress, "log": click.echo}
        if tasks:
            kwargs["tasks"] = tasks
        try:
            counts = sync_huggingface(c.store, **kwargs)
        except HubUnreachable as exc:
            raise click.ClickException(str(exc)) from None
        if counts.get("failed_listings"):  # the summary line is already printed by the sync
            raise click.ClickException(
                f"{counts['failed_listings']} listing(s) failed after retries: what was listed is stored, nothing "
                "was marked removed, and the next sync lists from the last complete watermark again")
    else:
        from scraper.fiftyone import scrape_fiftyone

        scrape_fiftyone(c.store, log=click.echo)
    infer_missing_training_datasets(c.store, source=source, log=click.echo)


MODEL_SORTS = {"name": ("name", 1), "newest": ("last_modified", -1), "first-seen": ("first_seen", -1), "results": None}


@click.command("models")
@click.option("--name-contains", default=None, help="Case-insensitive substring of the model name.")
@click.option("--source", default=None, help="huggingface, fiftyone or local.")
@click.option("--task", default=None, help="e.g. text-classification.")
@click.option("--trained-on", default=None, help="Declared or inferred training dataset.")
@click.option("--evaluated-on", default=None, help="Has results on this dataset.")
@click.option("--has-metrics", is_flag=True, help="Only models with stored results.")
@click.option("--sort", type=click.Choice(sorted(MODEL_SORTS)), default="name", show_default=True)
@click.option("--limit", default=200, show_default=True, help="At most this many rows (0: all).")
@click.option("--all", "show_all", is_flag=True, help="Include removed models (private models the last Hub sync's "
              "token could not see are shown without it).")
@pass_ctx
def models_cmd(c: Ctx, name_contains, source, task, trained_on, evaluated_on, has_metrics, sort, limit, show_all) -> None:
    """Browse stored models: what they were trained on (declared or inferred from labels), results, failures,
    and why a model is not evaluated (e.g. a gated repo without an HF_TOKEN that has access)."""
    import re

    store = c.store
    q: dict[str, Any] = {} if show_all else {"$and": [{"$or": [{"status": "active"}, {"access": "private"}]}]}
    if name_contains:
        q["name"] = {"$regex": re.escape(name_contains), "$options": "i"}
    if source:
        q["source"] = source
    if task:
        q["task"] = task
    if trained_on:
        q["$or"] = [{"datasets": trained_on}, {"inferred_datasets": trained_on}]
    if evaluated_on or has_metrics:
        rq = {"dataset": evaluated_on} if evaluated_on else {}
        q["_id"] = {"$in": store.result_model_keys(rq)}
    n_results = store.count_by_model("results")
    n_fails = store.count_by_model("failures")
    docs = store.find_models(q, {"name": 1, "source": 1, "task": 1, "datasets": 1, "inferred_datasets": 1, "revision": 1,
                                    "notes": 1, "unevaluated_reason": 1, "access_note": 1, "status": 1, "last_modified": 1},
                            sort=[MODEL_SORTS[sort], ("_id", 1)] if MODEL_SORTS[sort] else None)
    if sort == "results":
        docs.sort(key=lambda m: (-n_results.get(m["_id"], 0), m["_id"]))
    total = len(docs)
    if limit:
        docs = docs[:limit]
    rows = []
    for m in docs:
        declared = _first_names(m.get("datasets") or [])
        inferred = _first_names(m.get("inferred_datasets") or [])
        trained = declared or (f"{inferred} (inferred)" if inferred else "-")
        notes = "; ".join(filter(None, [m.get("access_note"), *(m.get("notes") or []), _unevaluated_reason(m)]))
        rows.append([m["name"], m["source"], m.get("task") or "?", trained, (m.get("revision") or "")[:12],
                     n_results.get(m["_id"], 0), n_fails.get(m["_id"], 0), m.get("status"), notes[:90]])
    print_table(["model", "source", "task", "trained on", "revision", "results", "failures", "status", "notes"], rows)
    if limit and total > limit:
        click.echo(f"... {total - limit} more (use --limit 0 for all)")


@click.command("model")
@click.argument("name")
@click.option("--card", is_flag=True, help="Also fetch and print the model card (README.md) from the model's "
              "source at the stored revision; the card text is never stored.")
@pass_ctx
def model_cmd(c: Ctx, name: str, card: bool) -> None:
    """Show one model: metadata, training data (declared or inferred, with the evidence), references, files,
    results and failures."""
    doc = c.store.get_model(name)
    if doc is None:
        raise click.ClickException(f"no model {name!r} in the store; `zooeval models` lists them")
    config = doc.get("config") or {}
    files = doc.get("files") or {}
    fields = [
        ("name", doc["name"]), ("source", doc.get("source")), ("task", doc.get("task")), ("status", doc.get("status")),
        ("revision", doc.get("revision")), ("last modified", doc.get("last_modified")), ("license", doc.get("license")),
        ("library", doc.get("library")), ("base model", doc.get("base_model")), ("tags", ", ".join(doc.get("tags") or [])),
        ("architectures",
         ", ".join(config.get("architectures") or ([config["architecture"]] if config.get("architecture") else []))),
        ("labels", len(config.get("id2label") or {}) or None),
        ("declared datasets", ", ".join(doc.get("datasets") or [])),
        ("inferred datasets", ", ".join(doc.get("inferred_datasets") or [])),
        ("gated", doc.get("gated") or None), ("private", "yes" if doc.get("private") else None),
        ("not evaluated", doc.get("access_note") or doc.get("unevaluated_reason")),
        ("references", ", ".join(doc.get("references") or [])),
        ("files",
         f"{len(files)} files, {sum(v for v in files.values() if isinstance(v, (int, float))) / 1e6:.1f} MB" if files else None),
        ("notes", "; ".join(doc.get("notes") or [])),
    ]
    for key, value in fields:
        if value not in (None, "", []):
            click.echo(f"{key:>18}: {value}")
    evidence = doc.get("dataset_evidence") or {}
    if evidence.get("coverage"):
        cov = ", ".join(f"{ds} {v:.0%} of its classes" for ds, v in evidence["coverage"].items())
        click.echo(f"{'evidence':>18}: {evidence.get('method')}: {evidence.get('model_labels')} model labels, "
                   f"all mapped; cover {cov}")
    n_results = c.store.count("results", {"model_key": doc["_id"]})
    click.echo(f"{'results':>18}: {n_results} (zooeval results {doc['name']})")
    print_failures(c.store, doc["_id"])
    print_model_claims(c.store, doc)
    if card:
        click.echo("")
        click.echo(_model_card(doc))


def _first_names(names: list[str], shown: int = 3) -> str:
    """At most ``shown`` names, then how many more (a card may declare twenty training datasets; `zooeval model`
    lists them all)."""
    return ",".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


def _unevaluated_reason(model: dict[str, Any]) -> str | None:
    """Why training-data inference left the model unevaluated, unless its details could not be read at all
    (then ``access_note`` says why, and "declares no training dataset" would mislead)."""
    return None if model.get("access_note") else model.get("unevaluated_reason")


def _task_name(doc: dict[str, Any]) -> str:
    from tasks.base import task_for_dataset

    try:
        return task_for_dataset(doc).name
    except KeyError:
        return f"{doc.get('task') or doc.get('datatype')} (no task kind installed)"


def _model_card(doc: dict[str, Any]) -> str:
    """The model's card, read from where the model lives (never from the store)."""
    source = doc.get("source")
    if source == "huggingface":
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )

        from scraper.huggingface import GATED_NOTE

        try:
            path = hf_hub_download(doc["name"], "README.md", revision=doc.get("revision") or None)
        except EntryNotFoundError:
            return f"(model {doc['name']!r} has no README.md at revision {doc.get('revision')})"
        except GatedRepoError:
            raise click.ClickException(f"cannot fetch the card of {doc['name']!r}: {GATED_NOTE}") from None
        except RepositoryNotFoundError:
            raise click.ClickException(f"cannot fetch the card of {doc['name']!r}: the Hub says it does not exist (a private "
                                       "repo looks so without an HF_TOKEN with access)") from None
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
            raise click.ClickException(f"cannot fetch the card of {doc['name']!r} from the Hub: "
                                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        return Path(path).read_text(encoding="utf-8", errors="replace")
    if doc.get("path"):
        folder = Path(doc["path"])
        readme = (folder if folder.is_dir() else folder.parent) / "README.md"
        if readme.is_file():
            return readme.read_text(encoding="utf-8", errors="replace")
        return f"(no README.md in {readme.parent})"
    return doc.get("description") or f"(no model card for source {source!r})"


@click.command("datasets")
@pass_ctx
def datasets_cmd(c: Ctx) -> None:
    """List registered datasets with their classes and splits."""
    register_local(c)
    rows = []
    for d in c.store.datasets().values():
        splits = ", ".join(f"{s['name']}={s['total']}" for s in d["splits"])
        rows.append([d["name"], _task_name(d), len(d["classes"]), splits, ",".join(d.get("supported_variants") or []),
                     d["revision"][:12]])
    print_table(["dataset", "task", "classes", "splits", "variants", "revision"], rows)


class _DatasetCommands(click.Group):
    """`zooeval dataset NAME` shows a dataset (the `show` subcommand); `zooeval dataset add ...` adds one."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands:
            args = ["show", *args]
        return super().resolve_command(ctx, args)


@click.group("dataset", cls=_DatasetCommands, context_settings={"ignore_unknown_options": True})
def dataset_group() -> None:
    """One dataset: `zooeval dataset NAME` shows it; `zooeval dataset add hf:<org>/<name>` adds one from the Hub."""


@dataset_group.command("show")
@click.argument("name")
@click.option("--examples", default=3, show_default=True, help="Examples shown per class.")
@pass_ctx
def dataset_cmd(c: Ctx, name: str, examples: int) -> None:
    """Show one dataset: metadata, classes with counts per split, examples."""
    register_local(c)
    d = c.store.datasets().get(name)
    if d is None:
        raise click.ClickException(f"no dataset {name!r}; `zooeval datasets` lists them")
    for key in ("name", "version", "datatype", "task", "description", "homepage", "year", "reference", "revision", "path"):
        if d.get(key) is not None:
            click.echo(f"{key:>19}: {d[key]}")
    click.echo(f"{'compatible with':>19}: {', '.join(d.get('compatible_with') or []) or '-'}")
    click.echo(f"{'supported variants':>19}: {', '.join(d.get('supported_variants') or []) or '-'}")
    splits = ", ".join(f"{s['name']}={s['total']}" for s in d["splits"])
    click.echo(f"{'splits':>19}: {splits}")
    ex: dict[int, list[str]] = {}
    for e in c.store.dataset_examples(name):
        ex.setdefault(e["class_id"], []).append(str(e["example"]))
    split_names = [s["name"] for s in d["splits"]]
    rows = []
    for cl in d["classes"]:
        counts = [next(s for s in d["splits"] if s["name"] == sp)["class_counts"].get(cl["label"], 0) for sp in split_names]
        extra = ", ".join(f"{k}={v}" for k, v in (cl.get("extra") or {}).items())
        sample = " | ".join(x[:40] for x in ex.get(cl["id"], [])[:examples])
        rows.append([cl["id"], cl["label"], extra, *counts, sample])
    click.echo("")
    print_table(["id", "class", "extra", *split_names, "examples"], rows)


@dataset_group.command("add")
@click.argument("source")
@click.option("--config", default=None, help="The dataset's config (subset), when it has several.")
@click.option("--split", default=None, help="Only this split (kept with the splits added before); default: every split.")
@click.option("--revision", default=None, help="Branch, tag or commit sha of the dataset repo; default: main.")
@pass_ctx
def dataset_add(c: Ctx, source: str, config: str | None, split: str | None, revision: str | None) -> None:
    """Add a dataset from the Hugging Face Hub: SOURCE is hf:<org>/<name> (HF_ENDPOINT, HF_TOKEN are honoured).

    It is loaded with the datasets library at the repo's current commit (or --revision), stored under
    ZOOEVAL_HOME/datasets/hf/ and registered with its task kind and classes; the commit sha is its content
    revision, so adding it again after the repo changed makes its results stale. Adding the same revision
    again does nothing."""
    from core.data import DataError
    from scraper.hub_datasets import HF_PREFIX, add_hub_dataset

    if not source.startswith(HF_PREFIX):
        raise click.ClickException(f"unknown dataset source {source!r}: give hf:<org>/<name>, a dataset repo on the "
                                   "Hugging Face Hub (local datasets are folders under ZOOEVAL_HOME/datasets)")
    try:
        name = add_hub_dataset(c.store, c.home, source, config=config, split=split, revision=revision, log=click.echo)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"`zooeval dataset {name}` shows it; `zooeval run` evaluates the models of its task on it")



COMMANDS = [scrape, models_cmd, model_cmd, datasets_cmd, dataset_group]
