"""Run every benchmark (bench_*.py) in its own process, one after the other; each prints its JSON figures
and writes benchmarks/out/<name>.json. Then one table: every ratio a benchmark measured against its target
(the ``targets`` of its JSON), with pass / FAIL (or "-" for a --quick run, whose sizes the targets are not for).
Usage: python benchmarks/run_all.py [--quick]"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def print_targets(out: Path, since: float) -> None:
    """The targets recorded by the benchmarks that ran (their JSON written after ``since``)."""
    rows = []
    for path in sorted(out.glob("*.json")):
        if path.stat().st_mtime < since:
            continue
        for t in json.loads(path.read_text()).get("targets", []):
            verdict = {True: "pass", False: "FAIL", None: "-"}[t["pass"]]
            rows.append((path.stem, t["name"], str(t["value"]), t["target"], verdict))
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows + [("bench", "ratio", "value", "target", "")]) for i in range(5)]
    print()
    for r in [("bench", "ratio", "value", "target", ""), *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def main() -> int:
    extra = sys.argv[1:]
    here = Path(__file__).parent
    failed = []
    started = time.time()
    for script in sorted(here.glob("bench_*.py")):
        print(f"== {script.name} {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *extra])
        print(f"== {script.name}: exit {code} in {time.perf_counter() - t0:.0f} s", flush=True)
        if code:
            failed.append(script.name)
    print_targets(here / "out", started)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
