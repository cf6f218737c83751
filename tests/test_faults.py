"""Fault tests: every kind of failure a nightly cycle meets, against the real mongod and real (tiny) models.

For each fault the cycle must finish, every other model's results must be complete and correct (equal to
the tiny model's accuracy and predictions computed with plain transformers), nothing may be stored twice,
and the failure must be in ``failures`` with the right ``error_class``. The repos are built once per session
by tests/fault_repos.py (a few seconds). Misbehaving model code (hangs, SIGKILL, memory hogs, OOM) comes
from test-only EvaluationModule subclasses: zooeval itself never runs a repo's code.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest
import torch

import processors.classification  # noqa: F401  (registers the classification processor)
from core.store import Store, utcnow
from modules.hf import HFTextClassification
from pipeline.executor import Executor
from pipeline.isolation import isolation_context
from scraper.datasets import register_datasets
from scraper.local import scrape_local
from tests.fault_repos import DATASET, session_fault_zoo

N_TEST = 48


# -- fixtures and helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


@pytest.fixture
def store(mongo_uri, db_name, fault_zoo, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    s = Store(mongo_uri, db_name)
    register_datasets(s, fault_zoo["datasets"], log=lambda *a: None)
    scrape_local(s, fault_zoo["zoo"], log=lambda *a: None)
    yield s
    s.close()


def text_module(cls=HFTextClassification, variants=("original",)):
    return cls(dataset=DATASET, variants=tuple(variants))


def executor(store, home, modules=None, **kwargs) -> Executor:
    kwargs.setdefault("batch_size", 16)
    return Executor(store, modules or [text_module()], home, progress=False, echo=lambda s: None, **kwargs)


def only(*names: str) -> dict:
    return {"name": {"$in": [f"fault/{n}" for n in names]}}


def failures(store) -> dict[str, dict]:
    return {f["model_name"].split("/", 1)[1]: f for f in store.db.failures.find()}


def assert_no_duplicates(store) -> None:
    dup = list(store.db.results.aggregate([
        {"$group": {"_id": {"i": "$inference_id", "p": "$processor"}, "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}}]))
    assert dup == []
    for inf in store.db.inferences.find():
        chunks = list(store.db.predictions.find({"inference_id": inf["_id"]}, {"chunk": 1}))
        assert sorted(c["chunk"] for c in chunks) == list(range(inf["n_chunks"]))
    # every result belongs to a stored inference, and every inference has its result
    assert set(store.db.results.distinct("inference_id")) == set(store.db.inferences.distinct("_id"))


def assert_correct(store, fault_zoo, name: str, variants=("original",), module_kind: str | None = None) -> list[dict]:
    """The model's results are complete and equal to the tiny model's accuracy and predictions."""
    q = {"model_name": f"fault/{name}", "processor": "classification"}
    if module_kind:
        q["module"] = f"{module_kind}/{DATASET}"
    res = list(store.iter_results(q))
    assert sorted(r["variant"] for r in res) == sorted(variants), name
    for r in res:
        assert r["overall"]["n"] == r["runtime"]["n"] == N_TEST
    orig = next(r for r in res if r["variant"] == "original")
    assert orig["overall"]["accuracy"] == pytest.approx(fault_zoo["accuracy"], abs=1e-12)
    chunks = list(store.iter_predictions(orig["inference_id"]))
    ids = [i for c in chunks for i in c["sample_ids"]]
    top1 = [row[0] for c in chunks for row in c["topk_labels"]]
    assert [p for _, p in sorted(zip(ids, top1))] == fault_zoo["predictions"]
    return res


def _name(loaded) -> str:
    return str(loaded.model.config.name_or_path)


# -- broken repos --------------------------------------------------------------------------------------------
def test_broken_repos_are_recorded_and_the_good_models_are_complete(store, fault_zoo, tmp_path):
    names = ["good", "corrupt", "no-config", "remote-code", "nan", "pickle-evil", "pickle-ok", "zz-after"]
    summary = executor(store, tmp_path).run(only(*names))
    assert not summary.stopped
    run = store.last_run()
    assert run["status"] == "done" and run["counts"]["failures"] == 5

    fails = failures(store)
    assert set(fails) == {"corrupt", "no-config", "remote-code", "nan", "pickle-evil"}
    assert fails["corrupt"]["error_class"] == "model_load"
    assert "cannot load model" in fails["corrupt"]["reason"]
    assert fails["no-config"]["error_class"] == "model_load"
    assert "config.json is missing" in fails["no-config"]["reason"]
    assert fails["remote-code"]["error_class"] == "unsafe_model"
    assert "remote code" in fails["remote-code"]["reason"] and "auto_map" in fails["remote-code"]["reason"]
    assert fails["nan"]["error_class"] == "inference_error"
    assert "NaN" in fails["nan"]["reason"] and f"{N_TEST} of the" not in fails["nan"]["reason"]
    assert fails["pickle-evil"]["error_class"] == "unsafe_model"
    assert "pytorch_model.bin" in fails["pickle-evil"]["reason"] and "safetensors" in fails["pickle-evil"]["reason"]
    for f in fails.values():
        assert f["attempts"] == 1 and f["traceback"]
        # a refusal of this revision is parked at once; a load or inference error is retried after a backoff
        if f["error_class"] == "unsafe_model":
            assert f["permanent"] is True and f["retry_after"] is None
        else:
            assert f["permanent"] is False and f["retry_after"] > utcnow()
        assert store.count("results", {"model_name": f["model_name"]}) == 0
        assert store.count("inferences", {"model_name": f["model_name"]}) == 0
    # neither the malicious pickle nor the remote code ever ran
    assert not fault_zoo["markers"]["pickle"].exists()
    assert not fault_zoo["markers"]["remote_code"].exists()

    for name in ("good", "pickle-ok", "zz-after"):
        assert_correct(store, fault_zoo, name)
    assert store.count("results") == 3
    assert_no_duplicates(store)


# -- misbehaving model code, in an isolated child process ----------------------------------------------------
class MisbehavingText(HFTextClassification):
    """A test-only module: its forward hangs, kills its process or eats memory for models named so."""

    kind = "test-misbehaving-text"

    def forward(self, loaded, batch):
        name = _name(loaded)
        if "hang" in name:
            while True:
                time.sleep(1)
        if "kill" in name:
            os.kill(os.getpid(), signal.SIGKILL)
        if "memhog" in name:
            hog = []
            for _ in range(64):  # up to 4 GB, far past the limit the test sets
                hog.append(np.ones(64 * 2**20, dtype=np.uint8))
            time.sleep(3600)  # not killed for its memory: the timeout will (and the test fails)
        return super().forward(loaded, batch)


def test_isolated_hang_sigkill_and_memory_hog_then_the_next_model_is_complete(store, fault_zoo, tmp_path):
    import psutil

    # children are forked from the fork server, so they start at its size: the limit leaves 400 MB on top
    noop = isolation_context().Process(target=os.getpid)  # the server forks it once it has imported torch etc.
    noop.start()
    noop.join(120)
    server = [p for p in psutil.Process().children() if "forkserver" in " ".join(p.cmdline())]
    assert len(server) == 1
    limit = int(server[0].memory_info().rss / 2**20) + 400
    mod = text_module(MisbehavingText)
    said: list[str] = []
    ex = Executor(store, [mod], tmp_path, batch_size=16, progress=False, echo=said.append, isolate=True,
                  task_timeout=6, memory_limit_mb=limit)
    t0 = time.monotonic()
    summary = ex.run(only("hang", "kill", "memhog", "nan", "zz-after"))
    assert time.monotonic() - t0 < 40
    assert store.last_run()["status"] == "done" and not summary.stopped

    fails = failures(store)
    assert set(fails) == {"hang", "kill", "memhog", "nan"}, {k: (f["error_class"], f["reason"]) for k, f in fails.items()}
    assert fails["hang"]["error_class"] == "timeout"
    assert "time limit of 6 s" in fails["hang"]["reason"]
    assert fails["kill"]["error_class"] == "inference_error"
    assert "SIGKILL" in fails["kill"]["reason"]
    assert fails["memhog"]["error_class"] == "out_of_memory"
    assert f"memory limit of {limit} MB" in fails["memhog"]["reason"]
    # a failure inside the child is recorded by the child, and its message reaches the parent's log
    assert fails["nan"]["error_class"] == "inference_error" and "NaN" in fails["nan"]["reason"]
    assert any(m.startswith("FAILED local/fault/nan") for m in said)
    assert {f["module"] for f in fails.values()} == {mod.name}
    assert all(f["attempts"] == 1 for f in fails.values())
    # the model after them, evaluated in its own child process, is complete and right
    assert_correct(store, fault_zoo, "zz-after", module_kind=MisbehavingText.kind)
    assert summary.results_written == 1 and summary.inferences == 1 and len(summary.failures) == 4
    assert store.count("results") == 1
    assert_no_duplicates(store)
    # no evaluating child is left behind (they are the fork server's children)
    assert server[0].children() == []


# -- out of memory: retried with smaller batches -------------------------------------------------------------
class OomAboveFour(HFTextClassification):
    """A test-only module that runs out of memory on batches larger than 4 (or on every batch, for oom-always)."""

    kind = "test-oom-text"
    calls: list[int] = []

    def forward(self, loaded, batch):
        n = batch["input_ids"].shape[0]
        self.calls.append(n)
        if ("oom-always" in _name(loaded)) or ("oom" in _name(loaded) and n > 4):
            raise torch.OutOfMemoryError(f"out of memory: tried to allocate for a batch of {n} (test)")
        return super().forward(loaded, batch)


def test_out_of_memory_is_retried_with_half_the_batch_size(store, fault_zoo, tmp_path):
    mod = text_module(OomAboveFour)
    mod.calls = []
    summary = executor(store, tmp_path, [mod], batch_size=32).run(only("oom", "oom-always", "zz-after"))
    assert store.last_run()["status"] == "done"

    res = assert_correct(store, fault_zoo, "oom", module_kind=OomAboveFour.kind)
    rt = res[0]["runtime"]
    assert rt["batch_size"] == 4 and rt["requested_batch_size"] == 32 and rt["oom_retries"] == 3
    assert store.get_inference(res[0]["inference_id"])["runtime"]["batch_size"] == 4
    # a model that runs out of memory even one sample at a time is recorded as out_of_memory
    fails = failures(store)
    assert set(fails) == {"oom-always"}
    assert fails["oom-always"]["error_class"] == "out_of_memory"
    assert 1 in mod.calls  # it got down to batch size 1
    # the next model is unaffected (the reduced batch size applies to the failing model only)
    after = assert_correct(store, fault_zoo, "zz-after", module_kind=OomAboveFour.kind)
    assert after[0]["runtime"]["batch_size"] == 32 and after[0]["runtime"]["oom_retries"] == 0
    assert summary.results_written == 2
    assert_no_duplicates(store)


def test_batch_size_probe_finds_the_largest_batch_that_fits(store, fault_zoo, tmp_path):
    """The probe an accelerator gets by default (batch_probe=None: on CUDA only), forced on here on the CPU: from
    the requested size it doubles while a forward pass of the split's first inputs fits and shrinks when it
    does not; the task then runs at the probed size with no out-of-memory retry, with the same predictions."""
    mod = text_module(OomAboveFour)
    mod.calls = []
    summary = executor(store, tmp_path, [mod], batch_size=2, batch_probe=True).run(only("oom", "zz-after"))
    assert summary.failures == [] and summary.results_written == 2
    after = assert_correct(store, fault_zoo, "zz-after", module_kind=OomAboveFour.kind)[0]
    n_test, rt = after["overall"]["n"], after["runtime"]
    largest = 2 ** (min(n_test, 512).bit_length() - 1)  # doubling from 2 while the sample has that many inputs
    assert rt["probed_batch_size"] == rt["batch_size"] == largest and rt["oom_retries"] == 0
    rt = assert_correct(store, fault_zoo, "oom", module_kind=OomAboveFour.kind)[0]["runtime"]
    assert rt["probed_batch_size"] == rt["batch_size"] == 4 and rt["oom_retries"] == 0  # 8 did not fit
    assert rt["requested_batch_size"] == 2
    # and down: a requested size that does not fit is halved by the probe, before the task runs
    mod.calls = []
    store.delete_results({})
    store.db.inferences.delete_many({})
    executor(store, tmp_path, [mod], batch_size=32, batch_probe=True).run(only("oom"))
    rt = assert_correct(store, fault_zoo, "oom", module_kind=OomAboveFour.kind)[0]["runtime"]
    assert rt["probed_batch_size"] == rt["batch_size"] == 4 and rt["oom_retries"] == 0
    assert mod.calls[:4] == [32, 16, 8, 4]  # the probe's passes, then the task's batches of 4
    # on the CPU, without asking, there is no probe
    store.delete_results({})
    store.db.inferences.delete_many({})
    executor(store, tmp_path, [text_module()], batch_size=8).run(only("zz-after"))
    assert "probed_batch_size" not in assert_correct(store, fault_zoo, "zz-after")[0]["runtime"]


def test_batches_are_pinned_only_for_cuda():
    from tasks.batching import pin_memory

    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "lengths": [3, 3]}
    assert pin_memory(batch, "cpu") is batch and pin_memory(batch, "mps") is batch
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: the pinned path runs where there is one")
    pinned = pin_memory(batch, "cuda")
    assert pinned["input_ids"].is_pinned() and pinned["lengths"] == [3, 3]
    assert torch.equal(pinned["input_ids"], batch["input_ids"])


# -- retries, backoff, parking -------------------------------------------------------------------------------
class TextV2(HFTextClassification):
    version = 2


def _expire_backoff(store) -> None:
    store.db.failures.update_many({}, {"$set": {"retry_after": utcnow() - dt.timedelta(seconds=1)}})


def test_failed_task_backoff_parking_and_unparking(mongo_uri, db_name, fault_zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # a private copy of the NaN model, so the test can fix its weights (a new revision)
    zoo = tmp_path / "zoo"
    repo = zoo / "fault" / "nan"
    shutil.copytree(fault_zoo["repos"]["nan"], repo)
    store = Store(mongo_uri, db_name)
    register_datasets(store, fault_zoo["datasets"], log=lambda *a: None)
    scrape_local(store, zoo, log=lambda *a: None)

    def cycle(module=None):
        return executor(store, tmp_path / "home", [module or text_module()], max_attempts=3).run()

    def full_cycle():  # every candidate visited, the planning watermarks ignored
        return executor(store, tmp_path / "home", [text_module()], max_attempts=3).run(full_plan=True)

    s = cycle()
    (fail,) = store.db.failures.find()
    assert fail["error_class"] == "inference_error" and fail["attempts"] == 1
    assert fail["retry_after"] > utcnow() + dt.timedelta(minutes=50)
    # within the backoff: not retried, the model is not even loaded
    s = cycle()
    assert s.plan.models_visited == 0 and s.models_loaded == 0 and not s.plan.tasks  # nothing changed or came due
    assert full_cycle().plan.skipped_failed == 1  # visited, it is left out as waiting for its retry time
    assert store.db.failures.find_one()["attempts"] == 1
    # after it: retried, until max_attempts
    for attempt in (2, 3):
        _expire_backoff(store)
        s = cycle()
        assert s.models_loaded == 1 and len(s.failures) == 1
        again = store.db.failures.find_one({"_id": fail["_id"]})
        assert again["attempts"] == attempt
        # the backoff doubles: 1 h, then 2 h, then 4 h
        wait = again["retry_after"] - again["last_at"]
        assert dt.timedelta(hours=2 ** (attempt - 1)) - dt.timedelta(seconds=5) < wait <= dt.timedelta(hours=2 ** (attempt - 1))
    # parked: not retried even after the backoff
    _expire_backoff(store)
    s = cycle()
    assert s.plan.models_visited == 0 and s.models_loaded == 0  # a parked failure is not looked for
    s = full_cycle()
    assert s.plan.skipped_failed == 1 and s.models_loaded == 0
    assert store.db.failures.find_one({"_id": fail["_id"]})["attempts"] == 3

    # a new module version is a new task identity: tried again (and fails again, on its own record)
    s = cycle(text_module(TextV2))
    assert s.models_loaded == 1 and len(s.failures) == 1
    v2 = store.db.failures.find_one({"module_version": 2})
    assert v2["_id"] != fail["_id"] and v2["attempts"] == 1

    # a new revision of the model (weights fixed) is a new identity too: evaluated, and now it works
    old_revision = store.get_model("local/fault/nan")["revision"]
    shutil.copyfile(fault_zoo["repos"]["good"] / "model.safetensors", repo / "model.safetensors")
    scrape_local(store, zoo, log=lambda *a: None)
    assert store.get_model("local/fault/nan")["revision"] != old_revision
    s = cycle()
    assert s.plan.skipped_failed == 0 and s.models_loaded == 1 and not s.failures
    assert_correct(store, fault_zoo, "nan")
    # the old revision's failure stays parked (history); nothing was stored twice
    assert store.db.failures.find_one({"_id": fail["_id"]})["attempts"] == 3
    assert store.count("results") == 1
    assert_no_duplicates(store)
    store.close()


# -- MongoDB restarted in the middle of a cycle ----------------------------------------------------------------
class RestartMongoOnFirstForward(HFTextClassification):
    """A test-only module whose first forward pass restarts MongoDB and returns once it is down, so the
    predictions, results and run updates that follow are written while the server is down or starting."""

    kind = "test-restart-text"
    trigger: threading.Event
    down: threading.Event

    def forward(self, loaded, batch):
        if not self.trigger.is_set():
            self.trigger.set()
            assert self.down.wait(60), "mongod was not stopped"
        return super().forward(loaded, batch)


def test_mongod_restart_mid_cycle(tmp_path, fault_zoo, monkeypatch):
    from pymongo import MongoClient

    from service.mongo import EmbeddedMongo, free_port

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    server = EmbeddedMongo(tmp_path / "mongo-home", port=free_port())
    uri = server.ensure_running()
    # fail fast when the server is unreachable, so surviving the outage is up to the executor
    client = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
    store = Store(uri, "restart", client=client)
    met = threading.Event()  # the executor met the outage in a store write, and is retrying it

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("MongoDB unavailable during"):
                met.set()

    watch = Watch()
    logging.getLogger("zooeval").addHandler(watch)
    try:
        register_datasets(store, fault_zoo["datasets"], log=lambda *a: None)
        scrape_local(store, fault_zoo["zoo"], log=lambda *a: None)
        mod = text_module(RestartMongoOnFirstForward, variants=("original", "lowercase", "uppercase"))
        mod.trigger, mod.down = threading.Event(), threading.Event()
        outage: dict[str, float] = {}

        def restart() -> None:
            mod.trigger.wait(120)
            t0 = time.monotonic()
            server.stop()
            mod.down.set()
            met.wait(30)  # stay down until a write has failed (a client without retries would crash here)
            time.sleep(1.0)
            server.ensure_running()
            outage["seconds"] = time.monotonic() - t0

        thread = threading.Thread(target=restart, daemon=True)
        thread.start()
        said: list[str] = []
        ex = Executor(store, [mod], tmp_path / "home", batch_size=16, progress=False, echo=said.append)
        summary = ex.run(only("good", "zz-after"))
        thread.join(120)
        assert mod.down.is_set() and outage.get("seconds"), "mongod was not restarted during the cycle"
        assert met.is_set() and any(s.startswith("MongoDB unavailable during") for s in said), said
        assert not summary.stopped and not summary.failures
        run = store.last_run()
        assert run["status"] == "done" and run["counts"]["results_written"] == 6
        for name in ("good", "zz-after"):
            assert_correct(store, fault_zoo, name, variants=("original", "lowercase", "uppercase"),
                           module_kind=RestartMongoOnFirstForward.kind)
        assert store.count("results") == 6 and store.count("failures") == 0
        assert_no_duplicates(store)
    finally:
        logging.getLogger("zooeval").removeHandler(watch)
        store.close()
        server.stop()


class PauseOnFirstForward(HFTextClassification):
    """A test-only module for isolated runs: its first forward pass (in the child process) writes
    ``<sync_dir>/started`` and waits for ``<sync_dir>/go``, so the test can stop MongoDB at that moment."""

    kind = "test-pause-text"
    sync_dir: str = ""

    def forward(self, loaded, batch):
        from pathlib import Path

        sync = Path(self.sync_dir)
        if not (sync / "started").exists():
            (sync / "started").touch()
            deadline = time.monotonic() + 60
            while not (sync / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return super().forward(loaded, batch)


def test_mongod_restart_while_an_isolated_child_evaluates(tmp_path, fault_zoo, monkeypatch):
    """MongoDB goes down while a model is evaluated in an isolated child process and comes back 3 s later:
    the child's writes (predictions, result, progress) wait for it, the parent goes on with the next model,
    and every result is stored once."""
    from service.mongo import EmbeddedMongo, free_port

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    server = EmbeddedMongo(tmp_path / "mongo-home", port=free_port())
    uri = server.ensure_running()
    store = Store(uri, "restart-isolated")
    sync = tmp_path / "sync"
    sync.mkdir()
    try:
        register_datasets(store, fault_zoo["datasets"], log=lambda *a: None)
        scrape_local(store, fault_zoo["zoo"], log=lambda *a: None)
        mod = text_module(PauseOnFirstForward)
        mod.sync_dir = str(sync)
        outage: dict[str, float] = {}

        def restart() -> None:
            deadline = time.monotonic() + 120
            while not (sync / "started").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            t0 = time.monotonic()
            server.stop()
            outage["stopped_at"] = utcnow()
            (sync / "go").touch()  # the child goes on and meets the outage in its next store write
            time.sleep(3.0)
            server.ensure_running()
            outage["seconds"] = time.monotonic() - t0

        thread = threading.Thread(target=restart, daemon=True)
        thread.start()
        said: list[str] = []
        ex = Executor(store, [mod], tmp_path / "home", batch_size=16, progress=False, echo=said.append,
                      isolate=True, task_timeout=300)
        summary = ex.run(only("good", "zz-after"))
        thread.join(120)
        assert outage.get("seconds", 0) >= 3.0, "mongod was not restarted during the cycle"
        assert not summary.stopped and not summary.failures, (summary.failures, said)
        run = store.last_run()
        assert run["status"] == "done" and run["counts"]["results_written"] == 2, (run, said)
        for name in ("good", "zz-after"):
            assert_correct(store, fault_zoo, name, module_kind=PauseOnFirstForward.kind)
        assert store.count("results") == 2 and store.count("failures") == 0
        # the first model's predictions and result were made after mongod went down: its writes waited
        first = store.db.results.find_one({"model_name": "fault/good"})
        assert first["created_at"] > outage["stopped_at"]
        assert_no_duplicates(store)
    finally:
        store.close()
        server.stop()
