"""The service API (/api/v1) on a store built by one real cycle (tests/web_store.py): the token on every route,
filters, sorts and keyset pages equal to the store, diff and statistics equal to the numbers computed here,
runs started, stopped and refused with a 409 naming the lock holder, and bad parameters as 4xx."""
from __future__ import annotations

import os
import stat
import time
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.store import Store
from service.cycle import CycleOptions, save_options
from service.lock import CycleLock
from service.run_status import run_breakdown
from service.web.app import create_app
from service.web.auth import UNAUTHORIZED, load_or_create_token
from tests.web_store import DIGITS, copy_database, session_web_store

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, mongo_uri):
    return session_web_store(tmp_path_factory, mongo_uri)


def _copy(built, mongo_uri, name):
    copy_database(mongo_uri, built["db"], name)
    return Store(mongo_uri, name)


@pytest.fixture(scope="module")
def store(built, mongo_uri):
    """The built store, shared by the tests that only read (a copy, dropped afterwards)."""
    s = _copy(built, mongo_uri, "zr_" + uuid.uuid4().hex[:10])
    yield s
    s.client.drop_database(s.db_name)
    s.close()


@pytest.fixture(scope="module")
def client(store, built):
    app = create_app(store, built["home"], token=TOKEN)
    return TestClient(app, base_url="http://127.0.0.1:8000")


@pytest.fixture
def fresh_store(built, mongo_uri, db_name):
    """A copy of the built store of its own, for a test that writes (results, runs, the lock)."""
    s = _copy(built, mongo_uri, db_name)
    yield s
    s.close()


@pytest.fixture
def fresh_client(fresh_store, built):
    app = create_app(fresh_store, built["home"], token=TOKEN, build_indexes=False)
    return TestClient(app, base_url="http://127.0.0.1:8000")


def get(client, url, **params):
    r = client.get(url, params=params, headers=AUTH)
    assert r.status_code == 200, (url, params, r.status_code, r.text)
    return r.json()


def all_pages(client, url, **params):
    items, cursor = [], None
    while True:
        body = get(client, url, **params, **({"cursor": cursor} if cursor else {}))
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def api_routes(client):
    """(method, path) of every operation the OpenAPI document lists."""
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method in operations:
            yield method.upper(), path


def test_the_cycle_made_results_and_failures(store):
    keys = set(store.result_model_keys())
    assert keys == {"local/web/good", "local/web/second", "local/web/digits"}
    failed = {f["model_key"]: f["error_class"] for f in store.failures()}
    assert failed["local/web/corrupt"] == "model_load" and "local/web/nan" in failed


def test_every_api_route_needs_the_token_and_a_401_reveals_nothing(client):
    seen = 0
    for method, path in api_routes(client):
        url = path.replace("{model_key}", "local/web/good").replace("{run_id}", "x").replace("{name}", DIGITS)
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}):
            r = client.request(method, url, headers=headers)
            assert r.status_code == 401, (method, url, headers, r.status_code)
            assert r.json() == {"detail": UNAUTHORIZED}
            assert r.headers["www-authenticate"] == "Bearer"
        seen += 1
    assert seen >= 12
    # an unknown model and a known one look the same without the token
    unknown = client.get("/api/v1/models/local/no-such-model")
    assert unknown.status_code == 401 and unknown.json() == {"detail": UNAUTHORIZED}


def test_the_token_file_is_created_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOOEVAL_API_TOKEN", raising=False)
    token, where = load_or_create_token(tmp_path)
    path = tmp_path / "api-token"
    assert where == str(path) and stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 32
    assert load_or_create_token(tmp_path)[0] == token  # the same token on the next start
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_token(tmp_path)
    monkeypatch.setenv("ZOOEVAL_API_TOKEN", "from-the-environment-123")
    assert load_or_create_token(tmp_path) == ("from-the-environment-123", "the environment variable ZOOEVAL_API_TOKEN")
    monkeypatch.setenv("ZOOEVAL_API_TOKEN", "short")
    with pytest.raises(ValueError, match="too short"):
        load_or_create_token(tmp_path)


def test_models_pages_cover_the_store_in_order_without_repeats(client, store):
    expected = [m["_id"] for m in store.find_models({"status": "active"}, {"name": 1}, sort=[("name", 1), ("_id", 1)])]
    assert len(expected) == 5
    for limit in (1, 2, 3, 50):
        got = [row["key"] for row in all_pages(client, "/api/v1/models", limit=limit)]
        assert got == expected, limit
    got = [row["key"] for row in all_pages(client, "/api/v1/models", sort="-name", limit=2)]
    assert got == expected[::-1]
    first = get(client, "/api/v1/models", limit=2)
    assert first["total"] == 5 and len(first["items"]) == 2 and first["complete"]


def test_models_filters_equal_the_store(client, store):
    def keys(**params):
        return sorted(row["key"] for row in all_pages(client, "/api/v1/models", **params))

    results = set(store.result_model_keys())
    failures = {f["model_key"] for f in store.failures()}
    assert keys(evaluated_on=DIGITS) == sorted(store.result_model_keys({"dataset": DIGITS})) == ["local/web/digits"]
    assert keys(has_results="true") == sorted(results)
    assert keys(has_results="false") == sorted(failures - results) == ["local/web/corrupt", "local/web/nan"]
    assert keys(failed="true") == sorted(failures)
    assert keys(failed="false") == sorted(results - failures)
    assert keys(q="SECOND") == ["local/web/second"]
    assert keys(task="image-classification") == ["local/web/digits"]
    assert keys(license="mit") == ["local/web/digits"]
    assert keys(trained_on=DIGITS) == ["local/web/digits"]
    assert keys(source="huggingface") == []
    assert keys(task="text-classification", failed="false", q="web") == ["local/web/good", "local/web/second"]
    rows = {row["key"]: row for row in all_pages(client, "/api/v1/models")}
    assert rows["local/web/good"]["results"] == store.count("results", {"model_key": "local/web/good"})
    assert rows["local/web/corrupt"]["failures"] == store.count("failures", {"model_key": "local/web/corrupt"})


def test_leaderboard_sort_by_a_metric_equals_the_store(client, store):
    stored = {r["model_key"]: r["overall"]["accuracy"] for r in store.latest_results({"dataset": "tinysent",
                                                                                      "variant": "typos"})}
    rows = all_pages(client, "/api/v1/models", sort="metric", metric="accuracy", dataset="tinysent", variant="typos",
                     limit=1)
    assert {r["key"]: r["value"] for r in rows} == stored
    assert [r["value"] for r in rows] == sorted(stored.values(), reverse=True)
    rows = all_pages(client, "/api/v1/models", sort="-metric", metric="accuracy", dataset="tinysent", variant="typos")
    assert [r["value"] for r in rows] == sorted(stored.values())
    greyscale = store.latest_results({"dataset": DIGITS, "variant": "greyscale"})
    rows = all_pages(client, "/api/v1/models", sort="metric", metric="instances_per_second", dataset=DIGITS,
                     variant="greyscale")
    assert [r["value"] for r in rows] == [r["runtime"]["instances_per_second"] for r in greyscale]


def test_model_and_results_equal_the_store(client, store):
    body = get(client, "/api/v1/models/local/web/good")
    assert body["model"]["name"] == "web/good" and body["model"]["labels"] == 2
    stored = {r["_id"]: r for r in store.latest_results({"model_key": "local/web/good"})}
    assert {r["_id"]: r["overall"] for r in body["results"]} == {k: r["overall"] for k, r in stored.items()}
    assert get(client, "/api/v1/models/web/good")["model"]["_id"] == "local/web/good"  # by name too
    rows = all_pages(client, "/api/v1/results", model="web/good", details="true", limit=1)
    assert {r["_id"] for r in rows} == set(stored)
    for r in rows:
        assert r["per_class"] == stored[r["_id"]]["per_class"]
        assert r["confusion_matrix"] == stored[r["_id"]]["confusion_matrix"]
    light = get(client, "/api/v1/results", dataset=DIGITS)["items"]
    assert light and all("per_class" not in r and "confusion_matrix" not in r for r in light)


def test_results_show_only_current_results_unless_asked(fresh_client, fresh_store):
    current = fresh_store.latest_results({"model_key": "local/web/good", "variant": "original"})[0]
    older = {**current, "created_at": current["created_at"].replace(year=current["created_at"].year - 1),
             "model_revision": "an-older-revision", "overall": {**current["overall"], "accuracy": 0.0}}
    assert fresh_store.insert_result("older-" + current["_id"], older)
    ids = {r["_id"] for r in all_pages(fresh_client, "/api/v1/results", model="web/good")}
    assert current["_id"] in ids and "older-" + current["_id"] not in ids
    ids = {r["_id"] for r in all_pages(fresh_client, "/api/v1/results", model="web/good", superseded="true")}
    assert "older-" + current["_id"] in ids
    rows = all_pages(fresh_client, "/api/v1/models", sort="-metric", metric="accuracy", dataset="tinysent")
    assert 0.0 not in [r["value"] for r in rows]  # the superseded result never ranks


def test_diff_against_the_cards_base_model(client, store):
    body = get(client, "/api/v1/diff", model="web/second", threshold=0.01)
    assert body["baseline"] == "local/web/good"  # web/second's card: base_model: web/good
    mine = {(r["dataset"], r["variant"]): r for r in store.latest_results({"model_key": "local/web/second"})}
    base = {(r["dataset"], r["variant"]): r for r in store.latest_results({"model_key": "local/web/good"})}
    rows = {(r["dataset"], r["variant"], r["metric"]): r for r in body["rows"]}
    for key in mine:
        for metric in ("accuracy", "macro_f1", "weighted_precision"):
            row = rows[(*key, metric)]
            a, b = mine[key]["overall"][metric], base[key]["overall"][metric]
            assert row["value"] == a and row["baseline"] == b and row["delta"] == pytest.approx(a - b)
            expected = None if abs(a - b) < 0.01 or a == b else ("regression" if a < b else "improvement")
            assert row["flag"] == expected
    assert body["regressions"] == sum(1 for r in body["rows"] if r["flag"] == "regression")
    assert not [r for r in get(client, "/api/v1/diff", model="web/second", threshold=1e6)["rows"] if r["flag"]]
    r = client.get("/api/v1/diff", params={"model": "web/good"}, headers=AUTH)
    assert r.status_code == 422 and "base model" in r.json()["detail"]
    assert client.get("/api/v1/diff", params={"model": "nope"}, headers=AUTH).status_code == 404
    assert get(client, "/api/v1/diff", model="web/good", baseline="web/second")["baseline"] == "local/web/second"


def test_stats_equal_numpy(client, store):
    body = get(client, "/api/v1/stats", dataset="tinysent", metric=["accuracy", "macro_f1"])
    values = {}
    for r in store.latest_results({"dataset": "tinysent"}):
        for m in ("accuracy", "macro_f1"):
            values.setdefault((r["variant"], m), []).append(r["overall"][m])
    rows = {(r["variant"], r["metric"]): r for r in body["rows"]}
    assert set(rows) == set(values)
    for key, vals in values.items():
        arr = np.asarray(vals)
        row = rows[key]
        assert row["task"] == "text-classification" and row["count"] == len(vals) == 2
        assert row["mean"] == pytest.approx(arr.mean()) and row["std"] == pytest.approx(arr.std(ddof=1))
        assert (row["min"], row["max"]) == (arr.min(), arr.max())
        assert [row["q1"], row["median"], row["q3"]] == pytest.approx(list(np.percentile(arr, [25, 50, 75])))


def test_export_is_the_filtered_view_in_csv_and_json(client):
    import csv
    import io

    view = all_pages(client, "/api/v1/models", task="text-classification")
    r = client.get("/api/v1/export", params={"format": "json", "task": "text-classification"}, headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert [row["key"] for row in r.json()] == [row["key"] for row in view]
    r = client.get("/api/v1/export", params={"format": "csv", "task": "text-classification", "failed": "true"},
                   headers=AUTH)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["key"] for row in rows] == ["local/web/corrupt", "local/web/nan"]
    by_key = {row["key"]: row for row in view}
    assert [row["failures"] for row in rows] == [str(by_key[row["key"]]["failures"]) for row in rows]
    r = client.get("/api/v1/export", params={"format": "csv", "sort": "metric", "metric": "accuracy",
                                               "dataset": "tinysent"}, headers=AUTH)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["key"] for row in rows} == {"local/web/good", "local/web/second"} and rows[0]["value"]


def test_runs_list_and_progress_equal_the_cli_breakdown(client, store, built):
    runs = get(client, "/api/v1/runs")["items"]
    assert [r["_id"] for r in runs] == [built["run_id"]] and runs[0]["state"] == "done"
    body = get(client, f"/api/v1/runs/{built['run_id']}")
    assert body["progress"] == run_breakdown(store, store.last_run())
    total = body["progress"]["total"]
    assert total["done"] == store.count("inferences") and total["failed"] == store.count("failures")
    assert body["failures_by_class"]["model_load"] >= 1 and body["current"] is None
    assert client.get("/api/v1/runs/no-such-run", headers=AUTH).status_code == 404


def test_start_is_409_naming_the_holder_and_stop_needs_a_running_cycle(fresh_client, fresh_store):
    r = fresh_client.post("/api/v1/runs/stop", headers=AUTH)
    assert r.status_code == 409 and r.json()["detail"] == "no cycle is running"
    r = fresh_client.post("/api/v1/runs/resume", headers=AUTH)  # the store's cycle ran without service.cycle
    assert r.status_code == 404 and "no cycle has run yet" in r.json()["detail"]
    save_options(fresh_store, CycleOptions(models=["web/good"]))
    lock = CycleLock(fresh_store)
    lock.acquire()
    try:
        for url in ("/api/v1/runs", "/api/v1/runs/resume"):
            r = fresh_client.post(url, headers=AUTH, json={} if url.endswith("runs") else None)
            assert r.status_code == 409, r.text
            body = r.json()
            assert f"pid {os.getpid()}" in body["detail"] and body["holder"]["pid"] == os.getpid()
            assert "holder" not in body["holder"]  # the lock token is never shown
        r = fresh_client.post("/api/v1/runs/stop", headers=AUTH)
        assert r.status_code == 202 and fresh_store.stop_requested()
    finally:
        lock.release()
        fresh_store.clear_stop()


def test_a_run_started_by_the_api_is_a_real_cycle(fresh_client, fresh_store, built):
    # one stored result of web/good is removed, so the cycle has one task: re-scoring it from the stored predictions
    removed = fresh_store.latest_results({"model_key": "local/web/good", "variant": "typos"})[0]
    fresh_store.delete_results({"_id": removed["_id"]})
    before = fresh_store.last_run()["_id"]
    r = fresh_client.post("/api/v1/runs", headers=AUTH, json={"models": ["web/good"], "variants": ["original", "typos"],
                                                               "batch_size": 8, "scenarios": ["offline"]})
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("started", "starting")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = fresh_store.last_run()
        # (the cycle records its options after the run's end, then releases the lock: a start meanwhile waits)
        if run["_id"] != before and run["status"] != "running" and "options" in run:
            break
        time.sleep(0.5)
    run = fresh_store.last_run()
    assert run["_id"] != before and run["status"] == "done", run
    assert run["options"]["models"] == ["web/good"] and run["options"]["batch_size"] == 8
    assert run["options"]["scenarios"] == ["offline"] and run["options"]["executor"] == "local"
    assert run["counts"]["inferences"] == 0 and run["counts"]["rescored"] == 1  # from the stored predictions
    again = fresh_store.latest_results({"model_key": "local/web/good", "variant": "typos"})[0]
    assert again["_id"] == removed["_id"] and again["overall"] == removed["overall"]
    r = fresh_client.post("/api/v1/runs/resume", headers=AUTH)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "abc"}, {"limit": "100000"}, {"sort": "bogus"}, {"cursor": "not-a-cursor"},
    {"unknown": "1"}, {"sort": "metric"}, {"sort": "metric", "metric": "accuracy"},
    {"sort": "metric", "metric": "no_such_metric", "dataset": "tinysent"}, {"has_results": "maybe"},
    {"q": "x" * 300},
])
def test_bad_model_parameters_are_422_with_a_message(client, params):
    r = client.get("/api/v1/models", params=params, headers=AUTH)
    assert r.status_code == 422, (params, r.status_code, r.text)
    assert r.json()["detail"]


@pytest.mark.parametrize("body, needle", [
    ({"batch_size": "32"}, "batch_size"), ({"batch_size": 0}, "batch_size"), ({"isolate": "yes"}, "isolate"),
    ({"variants": ["no-such-variant"]}, "no-such-variant"), ({"processors": ["no-such-processor"]}, "no-such-processor"),
    ({"surprise": 1}, "surprise"), ({"models": "web/good"}, "models"), ({"device": "tpu"}, "device"),
    ({"executor": "spark"}, "executor"), ({"scenarios": ["batch-7"]}, "scenarios"),
])
def test_bad_run_options_are_422_naming_them(client, body, needle):
    r = client.post("/api/v1/runs", headers=AUTH, json=body)
    assert r.status_code == 422, (body, r.text)
    assert needle in r.text


def test_openapi_documents_the_api_with_bearer_auth(client):
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert "/api/v1/models" in paths and "/api/v1/runs" in paths and "/models" not in paths
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, methods in paths.items():
        for method, op in methods.items():
            assert "401" in op["responses"], (path, method)


def test_zooeval_serve_prints_its_url_and_guards_the_api_with_the_generated_token(built, mongo_uri, db_name,
                                                                                  tmp_path):
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from service.mongo import free_port

    copy_database(mongo_uri, built["db"], db_name)
    home, port = tmp_path / "home", free_port()
    env = {k: v for k, v in os.environ.items() if k != "ZOOEVAL_API_TOKEN"}
    env.update(ZOOEVAL_HOME=str(home), ZOOEVAL_MONGO_URI=mongo_uri, ZOOEVAL_DB=db_name)
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not any("zooeval is serving at" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)  # the server exited
            lines.append(line)
        assert f"http://127.0.0.1:{port}/" in lines[-1] and str(home / "api-token") in lines[-1]
        token_file = home / "api-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=5) as r:
                    assert r.status == 200 and "web/good" in r.read().decode()
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(base + "/api/v1/models", timeout=5)
        assert denied.value.code == 401
        request = urllib.request.Request(base + "/api/v1/models",
                                         headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 200 and b'"total":5' in r.read()
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_hub_dataset_name_with_a_slash_has_its_pages(fresh_client, fresh_store):
    """Hub datasets are registered as org/name (zooeval dataset add hf:org/name): their API route and page work."""
    doc = next(iter(fresh_store.datasets().values()))
    renamed = {**doc, "name": "someorg/some-set"}
    renamed.pop("_id")
    fresh_store.upsert_dataset(renamed)
    body = get(fresh_client, "/api/v1/datasets/someorg/some-set")
    assert body["dataset"]["name"] == "someorg/some-set"
    page = fresh_client.get("/dataset/someorg%2Fsome-set", headers=AUTH)
    assert page.status_code == 200 and "someorg/some-set" in page.text
    assert fresh_client.get("/api/v1/datasets/someorg/no-such-set", headers=AUTH).status_code == 404


def test_a_start_waits_for_a_cycle_whose_run_has_ended_and_not_for_one_that_runs(mongo_uri, db_name):
    """service.web.runs.wait_while_finishing: a cycle that has recorded its run's end but still holds the lock (it
    writes the run's log, options and claim verdicts after) is waited for, so a client that saw the run end can
    start the next one; a cycle that runs, or has not recorded its run yet, is a conflict at once."""
    import threading

    from service.web.runs import finishing, wait_while_finishing

    store = Store(mongo_uri, db_name)
    try:
        store.start_run("before", {"planned": 0})  # an earlier cycle's run
        store.finish_run("before", "done", {})
        time.sleep(0.01)
        lock = CycleLock(store, ttl=30)
        lock.acquire()
        try:
            holder = lock.holder()
            # the holder has not recorded its run yet (the last run is the earlier cycle's): not finishing
            t0 = time.monotonic()
            assert not finishing(store, holder)
            assert wait_while_finishing(store, holder, timeout=5)["pid"] == os.getpid()
            assert time.monotonic() - t0 < 1
            store.start_run("this", {"planned": 1})
            # its run is running: not finishing, a conflict at once
            assert not finishing(store, lock.holder())
            t0 = time.monotonic()
            assert wait_while_finishing(store, lock.holder(), timeout=5) is not None
            assert time.monotonic() - t0 < 1
            store.finish_run("this", "done", {})
            assert finishing(store, lock.holder())
            # ended but never let go: the holder again after the timeout
            t0 = time.monotonic()
            assert wait_while_finishing(store, lock.holder(), timeout=0.5) is not None
            assert 0.5 <= time.monotonic() - t0 < 3
            # ended, and the lock released meanwhile: free
            threading.Timer(0.5, lock.release).start()
            t0 = time.monotonic()
            assert wait_while_finishing(store, lock.holder(), timeout=10) is None
            assert 0.4 <= time.monotonic() - t0 < 5
        finally:
            lock.release()
    finally:
        store.close()
