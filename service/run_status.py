"""What `zooeval status` and the run pages show of a run: its tasks by state, per model and per dataset."""
from __future__ import annotations

from typing import Any


def run_breakdown(store, run: dict[str, Any]) -> dict[str, Any]:
    """Planned / done / failed / running / pending tasks of a run, in total, per model and per dataset."""
    run_id = run["_id"]
    out: dict[str, Any] = {"model": {}, "dataset": {}}
    cur = run.get("current") if run.get("status") == "running" else None
    for key, field in (("model", "model_key"), ("dataset", "dataset")):
        planned = {k.replace("\uff0e", "."): v for k, v in (run.get(f"planned_by_{key}") or {}).items()}
        done, failed = store.run_progress(run_id, field)
        for k in sorted(set(planned) | set(done) | set(failed)):
            running = 1 if cur and cur.get(key) == k else 0
            p, d, f = planned.get(k, 0), done.get(k, 0), failed.get(k, 0)
            out[key][k] = {"planned": p, "done": d, "failed": f, "running": running, "pending": max(p - d - f - running, 0)}
    out["total"] = {m: sum(v[m] for v in out["model"].values()) for m in ("planned", "done", "failed", "running", "pending")}
    return out
