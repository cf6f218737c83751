"""Run every benchmark (bench_*.py) in its own process, one after the other; each prints its JSON figures
and writes benchmarks/out/<name>.json. Usage: python benchmarks/run_all.py [--quick]"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    extra = sys.argv[1:]
    here = Path(__file__).parent
    failed = []
    for script in sorted(here.glob("bench_*.py")):
        print(f"== {script.name} {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *extra])
        print(f"== {script.name}: exit {code} in {time.perf_counter() - t0:.0f} s", flush=True)
        if code:
            failed.append(script.name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
