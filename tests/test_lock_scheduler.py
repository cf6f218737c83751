"""The cycle lock, stop/status/resume, two runs started at once, and the persistent scheduler,
against the real mongod and the demo zoo's real models."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from core.store import Store
from service.cli import main
from service.cycle import CycleOptions, run_cycle
from service.lock import CycleLock, LockHeld
from service.scheduler import JOB_ID, JOBS_COLLECTION, ensure_job, make_scheduler, scheduled_cycle, stored_job
from tests.cli_child import run_zooeval, start_zooeval

TEXT_MODELS = 3  # good text models in the demo zoo
IMAGE_MODELS = 2  # good image models
IMAGE_VARIANTS = 6
#: the variants test_stop_status_resume evaluates: one, so three tasks (one per text model) of about 3 s on an idle
#: machine: the cycle is stopped during the second, and the resume does the one or two left
STOP_VARIANTS = ("original",)
STOP_VARIANT_ARGS = [arg for v in STOP_VARIANTS for arg in ("--variant", v)]


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def no_duplicates(store: Store) -> None:
    dup = list(store.db.results.aggregate([
        {"$group": {"_id": {"i": "$inference_id", "p": "$processor"}, "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}}]))
    assert dup == []
    dup = list(store.db.predictions.aggregate([
        {"$group": {"_id": {"i": "$inference_id", "c": "$chunk"}, "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}}]))
    assert dup == []


# -- the lock ---------------------------------------------------------------------------------------
def test_lock_excludes_then_frees(mongo_uri, db_name):
    store = Store(mongo_uri, db_name)
    a, b = CycleLock(store, ttl=30), CycleLock(store, ttl=30)
    a.acquire()
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        b.acquire()
    assert b.holder()["holder"] == a.token
    a.release()
    assert b.holder() is None
    b.acquire()
    b.release()


def test_lock_expires_when_not_renewed_and_heartbeat_keeps_it(mongo_uri, db_name):
    store = Store(mongo_uri, db_name)
    alive = CycleLock(store, ttl=0.6)
    alive.acquire()
    time.sleep(1.5)  # more than twice the ttl: only the heartbeat keeps it
    with pytest.raises(LockHeld):
        CycleLock(store, ttl=0.6).acquire()
    alive.release()
    # a holder on another host that stopped renewing (crashed): free after the expiry
    crashed = CycleLock(store, ttl=0.5)
    crashed.acquire()
    crashed._stop.set()
    crashed._thread.join()
    store.db.locks.update_one({"_id": "cycle"}, {"$set": {"host": "some-other-host"}})
    with pytest.raises(LockHeld):
        CycleLock(store).acquire()
    time.sleep(0.6)
    taker = CycleLock(store)
    taker.acquire()
    assert store.db.locks.find_one({"_id": "cycle"})["holder"] == taker.token
    taker.release()


def test_lock_of_a_dead_process_on_this_host_is_taken_over(mongo_uri, db_name):
    store = Store(mongo_uri, db_name)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    lock = CycleLock(store, ttl=3600)
    lock.acquire()
    lock._stop.set()
    store.db.locks.update_one({"_id": "cycle"}, {"$set": {"pid": pid}})
    assert CycleLock(store).holder() is None
    taker = CycleLock(store)
    taker.acquire()
    doc = store.db.locks.find_one({"_id": "cycle"})
    assert doc["holder"] == taker.token and doc["took_over_from"] == pid
    taker.release()


def test_lost_lock_stops_the_cycle_after_the_batch(mongo_uri, db_name):
    store = Store(mongo_uri, db_name)
    lock = CycleLock(store, ttl=0.3)
    lock.acquire()
    store.db.locks.update_one({"_id": "cycle"}, {"$set": {"holder": "someone-else"}})
    deadline = time.time() + 5
    while not lock.lost and time.time() < deadline:
        time.sleep(0.05)
    assert lock.lost
    lock.release()
    assert store.db.locks.find_one({"_id": "cycle"})["holder"] == "someone-else"  # not ours to delete


# -- two runs at once; stop, status, resume ------------------------------------------------------------
def _run_args(*extra: str, module: str = "hf-text-classification/*") -> list[str]:
    # offline throughput only: the runtime scenarios are tested in tests/test_runtime_scenarios.py; here the
    # single-stream pass (32 batch-1 forwards per task) would only lengthen the cycles these tests stop and race
    return ["run", "--no-progress", "--scenarios", "offline", "--module", module, *extra]


def _run_cmd(*extra: str, module: str = "hf-text-classification/*") -> list[str]:
    return [sys.executable, "-m", "service.cli", *_run_args(*extra, module=module)]


def test_two_runs_started_at_once_never_overlap(env):
    cli("scrape", "--source", "local")
    store = Store(env["uri"], env["db"])
    procs = [subprocess.Popen(_run_cmd(module="hf-image-classification/*"), env=os.environ.copy(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    loser = next(o for p, o in zip(procs, outs) if p.returncode == 1)
    assert "another cycle is running" in loser[1]
    assert store.count("results", {"module": {"$regex": "^hf-image"}}) == IMAGE_MODELS * IMAGE_VARIANTS
    no_duplicates(store)
    assert store.db.runs.count_documents({}) == 1


def test_stop_status_resume(env):
    cli("scrape", "--source", "local")
    store = Store(env["uri"], env["db"])
    # one of the four text variants (STOP_VARIANTS), enough to stop midway (resume keeps the filter)
    # (the cycle is killed if the test fails before it is waited for)
    # each finished task stored at once, so the first result is there before the second task ends on any machine
    child_env = {**os.environ, "ZOOEVAL_WRITE_EVERY_S": "0"}
    with start_zooeval(_run_args("--batch-size", "8", *STOP_VARIANT_ARGS), env=child_env) as proc:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            run = store.last_run()
            # a running task is recorded when it starts (its sample count only every few seconds: a short task may
            # show 0 done), so wait for the first stored result and a current task, not for a nonzero sample count
            if run and run.get("current") and store.count("results") >= 1:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the cycle ended before it could be stopped"
        out = cli("status")
        assert "running:" in out and "samples/s" in out and "pending" in out
        assert "stop requested" in cli("stop")
        ended = proc.wait(timeout=300)
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert "stopped after the current batch" in ended.stdout
    run = store.last_run()
    assert run["status"] == "stopped"
    partial = store.count("results")
    assert 0 < partial < TEXT_MODELS * len(STOP_VARIANTS)
    status = cli("status")
    assert f"run {run['_id']}: stopped" in status
    assert f"{partial} done" in status
    assert "demo/minilm-rt-cased" in status  # per-model rows
    assert "rotten_tomatoes" in status  # per-dataset rows
    # stop when nothing runs says so and leaves no flag behind
    assert "no cycle is running" in cli("stop")
    # resume repeats the last options and does only the remaining work; in a process of its own, like the stopped
    # cycle (run inside the pytest process, it took 122-185 s instead of ~25 s in two loaded full-suite runs)
    resumed_cmd = run_zooeval(["resume", "--no-progress"], env=os.environ.copy(), timeout=600)
    assert resumed_cmd.returncode == 0, resumed_cmd.stdout[-3000:] + resumed_cmd.stderr[-3000:]
    out = resumed_cmd.stdout
    assert "nothing to do" not in out
    assert store.count("results", {"module": {"$regex": "^hf-text"}}) == TEXT_MODELS * len(STOP_VARIANTS)
    assert store.count("results", {"module": {"$regex": "^hf-image"}}) == 0  # the --module filter was kept
    no_duplicates(store)
    resumed = store.last_run()
    assert resumed["_id"] != run["_id"] and resumed["status"] == "done"
    assert resumed["counts"]["results_written"] == TEXT_MODELS * len(STOP_VARIANTS) - partial
    assert os.path.isfile(resumed["log"]) and "cycle started" in open(resumed["log"]).read()
    assert "nothing to do" in cli("resume", "--no-progress")


# -- the scheduler ----------------------------------------------------------------------------------
def test_schedule_job_survives_restart_and_skips_when_locked(env, tmp_path):
    store = Store(env["uri"], env["db"])
    options = CycleOptions(modules=["hf-text-classification/*"], models=["demo/minilm-rt-cased"], variants=["original"])
    sources = [{"source": "local"}]
    sched = make_scheduler(store)
    sched.start(paused=True)
    job, kept = ensure_job(sched, store, env["home"], options, sources, cron="0 2 * * *")
    assert not kept
    first_next = job.next_run_time
    sched.shutdown(wait=False)
    assert store.db[JOBS_COLLECTION].count_documents({"_id": JOB_ID}) == 1
    assert stored_job(store)["next_run_time"].timestamp() == pytest.approx(first_next.timestamp())
    # a restarted service finds the stored job and keeps it (same schedule, same options)
    sched2 = make_scheduler(Store(env["uri"], env["db"]))
    sched2.start(paused=True)
    job2, kept2 = ensure_job(sched2, store, env["home"], options, sources, cron="0 2 * * *")
    assert kept2 and job2.next_run_time == first_next
    # a changed schedule replaces it
    job3, kept3 = ensure_job(sched2, store, env["home"], options, sources, cron="30 3 * * *")
    assert not kept3 and job3.next_run_time.hour == 3 and job3.next_run_time.minute == 30
    sched2.shutdown(wait=False)
    # a firing while another cycle holds the lock is skipped, not stacked
    held = CycleLock(store)
    held.acquire()
    try:
        assert scheduled_cycle(env["uri"], env["db"], str(env["home"]), options.__dict__, sources) == "skipped"
    finally:
        held.release()
    assert store.count("results") == 0
    # and a free one runs the cycle (scrape first: this database had no models)
    assert scheduled_cycle(env["uri"], env["db"], str(env["home"]), options.__dict__, sources) == "done"
    assert store.count("results", {"model_name": "demo/minilm-rt-cased"}) == 1


def test_schedule_command_runs_cycles(env):
    out = run_zooeval(["schedule", "--interval", "1", "--max-cycles", "2", "--model", "demo/resnet-digits",
                       "--variant", "original"], env=os.environ.copy(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scheduler started" in out.stdout and "cycle 2 finished" in out.stdout, out.stdout
    store = Store(env["uri"], env["db"])
    assert store.count("results", {"model_name": "demo/resnet-digits", "variant": "original"}) == 1
    assert store.db.runs.count_documents({}) == 1  # the second firing found nothing to do
    assert store.db.runs.find_one()["isolated"] is True  # the nightly service isolates models by default
    assert stored_job(store) is not None


def test_run_cycle_refuses_while_locked(env):
    store = Store(env["uri"], env["db"])
    held = CycleLock(store)
    held.acquire()
    try:
        with pytest.raises(LockHeld):
            run_cycle(store, env["home"], CycleOptions())
        out = cli("run", "--no-progress", code=1)
        assert "another cycle is running" in out and "--wait-lock" in out
    finally:
        held.release()


def test_stale_stop_request_does_not_stop_a_later_cycle(env):
    cli("scrape", "--source", "local")
    store = Store(env["uri"], env["db"])
    store.request_stop()  # e.g. left by a stop that raced with the end of an earlier cycle
    summary = run_cycle(store, env["home"], CycleOptions(models=["demo/resnet-digits"], variants=["original"]))
    assert not summary.stopped and summary.results_written == 1
    assert not store.stop_requested()  # the cycle leaves no flag behind
