"""The commands' tables, and how they write numbers.

A table is a header, a rule of dashes and one line per row, its columns two spaces apart; each row stays on one
line whatever its width, so the output can be read back with grep or split into columns.

Written here rather than with rich.table, on a measurement (benchmarks/bench_tables.py, recorded in
benchmarks/README.md): rich lays out the same table, each cell plain text, about 170-210x slower (0.66-0.80 ms a row
of nine cells), so `zooeval models --limit 0` on a store of 100,000 Hub models would spend over a minute drawing it."""
from __future__ import annotations

from typing import Any, Iterable

import click


def fixed(v: Any, digits: int = 4) -> str:
    """A number with ``digits`` decimals, "-" for None."""
    return "-" if v is None else f"{v:.{digits}f}"


def table_lines(headers: list[str], rows: Iterable[list[Any]]) -> list[str]:
    """The table's lines (none without rows); None cells are empty."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    if not cells:
        return []
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in [headers, ["-" * w for w in widths], *cells]]


def print_table(headers: list[str], rows: Iterable[list[Any]]) -> None:
    """Print the table to standard output, "(none)" when there are no rows."""
    click.echo("\n".join(table_lines(headers, rows)) or "(none)")
