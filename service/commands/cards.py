"""What model cards claim and what zooeval writes into them: ``claims`` (each performance value a card's model-index
states, with zooeval's verdict) and ``card`` (an enriched card section from zooeval's measurements)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import click

from service.commands.context import Ctx, pass_ctx
from service.commands.tables import fixed, print_table


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
               fixed(v.get("measured")) if v.get("measured") is not None else "", _interval(v), _verdict_label(v),
               v.get("reason")]
        rows.append([v.get("model_name"), *row] if with_model else row)
    return rows


CLAIM_HEADERS = ["metric", "dataset", "split", "claimed", "source", "measured", "95% interval", "verdict", "why"]


def print_model_claims(store, doc: dict[str, Any]) -> None:
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


@click.command("claims")
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


@click.command("card")
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


COMMANDS = [claims_cmd, card_cmd]
