"""Shared fixtures: one real embedded mongod for the whole test session, and a throw-away database per test."""
from __future__ import annotations

import os
import time
import uuid

import pytest

from service.mongo import EmbeddedMongo, MongoStartError, free_port


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    """URI of one real mongod (replica set rs0, so transactions work) started for this test session."""
    home = tmp_path_factory.mktemp("zooeval-mongo-home")
    server = EmbeddedMongo(home, port=free_port())
    try:
        uri = server.ensure_running()
    except MongoStartError as e:
        pytest.fail(f"could not start the test MongoDB: {e}", pytrace=False)
    try:
        yield uri
    finally:
        server.stop()


@pytest.fixture
def db_name(mongo_uri):
    """A unique database name ("zt_<hex>") on the session mongod; the database is dropped after the test."""
    from pymongo import MongoClient

    name = "zt_" + uuid.uuid4().hex[:10]
    yield name
    with MongoClient(mongo_uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return 0.0


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory):
    """One quick demo build (demo.build.build_demo) for the session: its result, wall time and log lines."""
    from demo.build import build_demo

    home = tmp_path_factory.mktemp("demo-home")
    lines: list[str] = []
    load_before = _load()
    t0 = time.perf_counter()
    result = build_demo(home, quick=True, log=lines.append)
    result["wall_seconds"] = time.perf_counter() - t0
    result["machine_busy"] = max(load_before, _load()) > (os.cpu_count() or 1)
    result["log_lines"] = lines
    return result


@pytest.fixture(scope="session")
def demo_home(demo_build):
    return demo_build["home"]


@pytest.fixture(scope="session")
def demo_cycle(demo_home, mongo_uri):
    """One full quick demo cycle (`zooeval demo --quick --no-progress --scenarios offline`), run once for the
    session into a database of its own: ``{"db", "output"}``. Tests only read it; a test that writes works on a
    copy (tests.web_store.copy_database)."""
    from click.testing import CliRunner
    from pymongo import MongoClient

    from service.cli import main

    name = "zd_" + uuid.uuid4().hex[:10]
    env = {"ZOOEVAL_HOME": str(demo_home), "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": name,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # offline throughput only: the single-stream scenario (32 batch-1 passes per task, a quarter of this cycle's
    # time) is tested on its own in tests/test_runtime_scenarios.py and by the web store's cycle
    result = CliRunner().invoke(main, ["demo", "--quick", "--no-progress", "--scenarios", "offline"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    yield {"db": name, "output": result.output}
    with MongoClient(mongo_uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


@pytest.fixture
def env(demo_home, mongo_uri, db_name, monkeypatch):
    monkeypatch.setenv("ZOOEVAL_HOME", str(demo_home))
    monkeypatch.setenv("ZOOEVAL_MONGO_URI", mongo_uri)
    monkeypatch.setenv("ZOOEVAL_DB", db_name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return {"home": demo_home, "uri": mongo_uri, "db": db_name}


@pytest.fixture
def hub_online(monkeypatch):
    """huggingface_hub online for this test, whatever earlier tests set: other tests run offline
    (HF_HUB_OFFLINE=1, and the demo build sets it in the process), and huggingface_hub reads it once, at import."""
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def torch_one_thread():
    """One intra-op torch thread for the test: small detectors (MTCNN's many small ops) run much slower
    with two threads on the 2 busy cores of the CI machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fo(mongo_uri):
    """fiftyone, connected to the session's mongod in a database of its own (dropped afterwards)."""
    fiftyone = pytest.importorskip("fiftyone")
    from fiftyone.core.odm import database

    settings = {"database_uri": mongo_uri, "database_name": "fiftyone_" + uuid.uuid4().hex[:8],
                "database_validation": False}
    before = {key: getattr(fiftyone.config, key) for key in settings}
    database._disconnect()  # a connection made earlier in this process used other settings
    for key, value in settings.items():
        setattr(fiftyone.config, key, value)
    yield fiftyone
    database.drop_database()
    database._disconnect()
    for key, value in before.items():
        setattr(fiftyone.config, key, value)
