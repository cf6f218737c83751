"""Helpers shared by the benchmarks: a throw-away embedded mongod and result reporting."""
from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any, Iterator

OUT = Path(__file__).parent / "out"


@contextlib.contextmanager
def temp_mongo() -> Iterator[str]:
    from service.mongo import EmbeddedMongo, free_port

    with tempfile.TemporaryDirectory(prefix="zooeval-bench-") as home:
        server = EmbeddedMongo(Path(home), port=free_port(), cache_gb=1.0)
        uri = server.ensure_running()
        try:
            yield uri
        finally:
            server.stop()


def report(name: str, data: dict[str, Any]) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=2))
    print(json.dumps({name: data}, indent=2))


def target(name: str, value: float, goal: float, applies: bool = True, higher_is_better: bool = True) -> dict[str, Any]:
    """One measured ratio against its target; ``applies`` False (e.g. a --quick run) records it without a verdict."""
    met = value >= goal if higher_is_better else value <= goal
    return {"name": name, "value": round(value, 3), "target": (">= " if higher_is_better else "<= ") + str(goal),
            "pass": met if applies else None}


def pipeline_seconds(store, module, model: dict[str, Any], home, batch_size: int) -> float:
    """One Executor.run of ``module`` on ``model`` from nothing stored (offline scenario only: the single-stream
    latencies are a separate measurement), in seconds, minus its model load and planning: the pipeline's side of
    a throughput comparison with a bare loop whose model is loaded beforehand."""
    import time

    from pipeline.executor import Executor

    store.delete_results({})  # and the planning watermarks, so the run plans its task again
    for collection in ("inferences", "predictions"):
        store.db[collection].delete_many({})
    ex = Executor(store, [module], home, batch_size=batch_size, device="cpu", progress=False, echo=lambda s: None,
                  scenarios=("offline",))
    plan = ex.plan({"_id": model["_id"]})
    t0 = time.perf_counter()
    summary = ex.run({"_id": model["_id"]})
    wall = time.perf_counter() - t0
    assert summary.inferences == 1 and summary.results_written == 1 and not summary.failures, summary
    return wall - store.db.inferences.find_one()["runtime"]["load_s"] - plan.seconds
