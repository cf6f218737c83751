"""The store's schema set-up is safe to run from several processes at once (two cycles, a scheduler and a CLI
command can all open a fresh database together): collections created meanwhile by another are adopted."""
from __future__ import annotations

import multiprocessing as mp
import traceback
import uuid

from pymongo import MongoClient

from core.store import VALIDATORS, Store


def _open(uri: str, db: str, results) -> None:
    try:
        Store(uri, db).close()
        results.put("ok")
    except Exception as exc:  # reported to the test
        results.put("".join(traceback.format_exception_only(type(exc), exc)))


def test_concurrent_schema_setup_on_a_fresh_database(mongo_uri):
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    names = []
    try:
        for _ in range(5):  # a race: several rounds, so one that was lost would show
            name = "zt_race_" + uuid.uuid4().hex[:8]
            names.append(name)
            procs = [ctx.Process(target=_open, args=(mongo_uri, name, results)) for _ in range(3)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(120)
            outcomes = [results.get(timeout=10) for _ in procs]
            assert outcomes == ["ok"] * 3, outcomes
            with MongoClient(mongo_uri) as client:
                assert set(VALIDATORS) <= set(client[name].list_collection_names())
    finally:
        with MongoClient(mongo_uri) as client:
            for name in names:
                client.drop_database(name)
