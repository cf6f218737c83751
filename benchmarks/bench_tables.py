"""The commands' table writer (service/commands/tables.py) against rich.table, the library it would otherwise use.

Rows shaped as `zooeval models` prints them (nine cells: model, source, task, trained on, revision, results,
failures, status, notes). rich's side is a ``rich.table.Table`` laid out as zooeval's (no frame, a rule of dashes
under the header, columns two spaces apart, every cell a plain ``Text``, so nothing is read as markup) and printed by
a ``Console`` on a wide, non-terminal stream, as when the output goes to a pipe; zooeval's side is
``table_lines``. Both render into memory, alternately, ``--repeats`` times; the ratio is the median of rich's time
over zooeval's. Before any timing counts, both tables are checked to hold the same cells in the same lines.

Target: zooeval's writer at least as fast as rich's (>= 1.0), the condition for keeping a writer of its own.
Usage: python benchmarks/bench_tables.py [--quick] [--repeats N]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import report, target  # noqa: E402
from service.commands.tables import table_lines  # noqa: E402

HEADERS = ["model", "source", "task", "trained on", "revision", "results", "failures", "status", "notes"]


def model_rows(n: int) -> list[list[object]]:
    return [[f"org-{i % 997}/model-{i}", "huggingface", "text-classification" if i % 2 else "image-classification",
             "imdb (inferred)" if i % 3 else "-", f"{i * 2654435761 % 16**12:012x}", i % 7, i % 3,
             "active", "gated: needs an HF_TOKEN with access" if i % 11 == 0 else ""] for i in range(n)]


def rich_lines(headers: list[str], rows: list[list[object]]) -> list[str]:
    from rich.box import Box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True), show_edge=False,
                  pad_edge=False, padding=(0, 1, 0, 0))
    for header in headers:
        table.add_column(Text(header))
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    out = io.StringIO()
    Console(file=out, width=1_000_000, highlight=False, color_system=None).print(table)
    return out.getvalue().splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 rows instead of 20,000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = model_rows(1_000 if args.quick else 20_000)

    ours, theirs = table_lines(HEADERS, rows), rich_lines(HEADERS, rows)
    assert len(ours) == len(theirs) == len(rows) + 2, (len(ours), len(theirs))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if i != 1:  # (the rules differ: rich's dashes also run under the gap between columns)
            assert a.split() == b.split(), (i, a, b)

    times: dict[str, list[float]] = {"zooeval": [], "rich": []}
    for _ in range(args.repeats):
        for name, render in (("zooeval", table_lines), ("rich", rich_lines)):
            t0 = time.perf_counter()
            render(HEADERS, rows)
            times[name].append(time.perf_counter() - t0)
    ratio = statistics.median(times["rich"]) / statistics.median(times["zooeval"])
    report("tables", {
        "rows": len(rows), "repeats": args.repeats,
        "zooeval_s": [round(t, 4) for t in times["zooeval"]], "rich_s": [round(t, 4) for t in times["rich"]],
        "rich_ms_per_row": round(statistics.median(times["rich"]) / len(rows) * 1e3, 4),
        "targets": [target("rich time / zooeval time", ratio, 1.0, applies=not args.quick)],
    })


if __name__ == "__main__":
    main()
