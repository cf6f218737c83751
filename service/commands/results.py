"""The results commands: ``results`` (one model's stored results and failures), ``stats`` (each metric's
distribution across models) and ``export`` (every current value, one row each, as CSV or JSON lines); and the demo's
summary table."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from processors.base import processor_label
from service.commands.cards import claims_table, print_model_claims
from service.commands.context import Ctx, pass_ctx
from service.commands.tables import fixed, print_table
from service.export import EXPORT_FIELDS, export_rows


@click.command()
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
    print_failures(c.store, doc["_id"])
    print_model_claims(c.store, doc)


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
        other = ", ".join(f"{k}={fixed(v) if isinstance(v, float) else v}" for k, v in o.items()
                          if k not in keys and isinstance(v, (int, float)) and r["processor"] not in kind.default_processors)
        rows.append([r["dataset"], r["split"], r["variant"], r["module"].split("/")[0], processor_label(r),
                     *(fixed(o.get(c.key), c.decimals) for c in kind.columns), fixed(r["runtime"].get("instances_per_second"), 1),
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
        click.echo(f"\n{r['dataset']}/{r['split']} variant={r['variant']} ({processor_label(r)})")
        print_table(["class", *cols], [[name, *(fixed(v.get(k)) if isinstance(v.get(k), float) else v.get(k) for k in cols)]
                                       for name, v in groups])


def print_failures(store, model_key: str) -> None:
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

@click.command()
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
        print_table(COLUMNS, [[r[k] if isinstance(r[k], (str, int)) or r[k] is None else fixed(r[k]) for k in COLUMNS]
                              for r in rows])



@click.command()
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



def summary_table(store) -> None:
    """The demo's summary: per task kind, each model's headline numbers per dataset and variant (the kind's
    first processor and first columns), then the failures."""
    for i, (kind, results) in enumerate(_by_task(store.latest_results()).items()):
        head = [c for c in kind.columns if c.key != "n" and c.key != "n_images"][:3]
        rows = [[r["model_name"], r["dataset"], r["variant"], *(fixed(r["overall"].get(c.key), c.decimals) for c in head),
                 fixed(r["runtime"].get("instances_per_second"), 1)]
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


COMMANDS = [results, stats, export]
