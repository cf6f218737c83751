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
