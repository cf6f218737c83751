"""The Ray executor (pipeline/ray_executor.py) on real multi-node Ray clusters on this machine, loopback only.

The tests share one ``ray.cluster_utils.Cluster`` bound to 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, or
Ray would pick the machine's external address; never ``ray start``): a head that runs nothing and two one-CPU
worker nodes (a test that removes one gets a new one for the next). The models and the dataset are the
fault tests' tiny real ones (tests/fault_repos.py), the database the session's real mongod; misbehaviour (a
worker killed, a node removed, a slow forward) comes from test-only modules acting on a model's name, in the
Ray worker processes.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import processors.classification  # noqa: F401  (registers the classification processor)
from core.store import Store
from modules.hf import HFTextClassification
from pipeline.executor import SCENARIOS, Executor
from pipeline.ray_executor import RayExecutor, group_slots, loopback_only, memory_hint
from pipeline.ray_worker import NodeSetupError, deferred_interrupt
from scraper.datasets import register_datasets
from scraper.local import scrape_local
from service.cli import main
from tests.cli_child import run_zooeval
from tests.fault_repos import DATASET, session_fault_zoo
from tests.test_faults import assert_correct, assert_no_duplicates, failures, only

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOOD = ("good", "pickle-ok", "zz-after")  # same weights as fault/good under other names: "hang", "kill", "oom", ...


# -- fixtures and test-only modules ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fault_zoo(tmp_path_factory):
    return session_fault_zoo(tmp_path_factory)


class SharedCluster:
    """The module's cluster: a head node that runs nothing (0 CPUs) and one-CPU worker nodes on 127.0.0.1, which
    tests may remove (``ensure_workers`` adds new ones back); this process is joined to it as the driver."""

    def __init__(self) -> None:
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False})
        self.workers: list = []
        self.ensure_workers(2)
        ray.init(address=self.cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False)

    @property
    def address(self) -> str:
        return self.cluster.address

    def ensure_workers(self, n: int) -> list:
        """``n`` alive one-CPU worker nodes (adding what is missing); returns them."""
        while len(self.workers) < n:
            self.workers.append(self.cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1"))
        self.cluster.wait_for_nodes()
        return list(self.workers)

    def remove(self, node) -> None:
        self.workers.remove(node)
        self.cluster.remove_node(node)

    def shutdown(self) -> None:
        ray.shutdown()
        self.cluster.shutdown()


@pytest.fixture(scope="module")
def shared_cluster():
    """One cluster for the module (starting one costs seconds on 2 busy cores). Loopback only: Ray reads
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it is imported, so this process is told through the constant and the
    cluster's processes (and a CLI subprocess) through the environment; no usage stats, offline, this repo
    importable in the workers."""
    from ray._private import ray_constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        cluster = SharedCluster()
        try:
            yield cluster
        finally:
            cluster.shutdown()


@pytest.fixture
def two_workers(shared_cluster):
    """The shared cluster with two one-CPU worker nodes alive: two groups run at once, on different nodes."""
    shared_cluster.ensure_workers(2)
    return shared_cluster


@pytest.fixture
def store(mongo_uri, db_name, fault_zoo):
    s = Store(mongo_uri, db_name)
    register_datasets(s, fault_zoo["datasets"], log=lambda *a: None)
    scrape_local(s, fault_zoo["zoo"], log=lambda *a: None)
    yield s
    s.close()


def where() -> str:
    """This process's Ray node id (the driver's node outside a Ray worker) and pid."""
    return f"{ray.get_runtime_context().get_node_id()} {os.getpid()}"


class ScriptedText(HFTextClassification):
    """A test-only module, run in the Ray workers: every load is logged to ``<sync_dir>/loads`` (model, node,
    pid). On the first attempt of a model named ``hang`` or ``kill`` its first batch writes
    ``<sync_dir>/started-<name>`` (node, pid) and waits for the test (which kills the process or removes the
    node); a model named ``always-kill`` kills its process at every attempt; with ``batch_sleep`` every batch
    sleeps that long."""

    kind = "test-ray-text"

    def __init__(self, *args, sync_dir: str = "", batch_sleep: float = 0.0, load_sleep: float = 0.0,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sync_dir, self.batch_sleep, self.load_sleep = sync_dir, batch_sleep, load_sleep

    def load(self, model, device):
        with open(Path(self.sync_dir) / "loads", "a") as fh:
            fh.write(f"{model['name']} {where()}\n")
        until = time.monotonic() + self.load_sleep  # short steps, like the many imports of a first load
        while time.monotonic() < until:
            time.sleep(0.05)
        loaded = super().load(model, device)
        with open(Path(self.sync_dir) / "loaded", "a") as fh:
            fh.write(f"{model['name']} {where()}\n")
        return loaded

    def forward(self, loaded, batch):
        name = str(loaded.model.config.name_or_path).rsplit("/", 1)[-1]
        started = Path(self.sync_dir) / f"started-{name}"
        if name in ("hang", "kill") and not started.exists():
            started.write_text(where())
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:  # the test ends this attempt long before
                time.sleep(0.05)
        if name == "always-kill":
            os.kill(os.getpid(), signal.SIGKILL)
        until = time.monotonic() + self.batch_sleep
        while time.monotonic() < until:  # short steps, like a forward's many small operations
            time.sleep(0.05)
        return super().forward(loaded, batch)


def loads(sync: Path) -> list[tuple[str, str, str]]:
    """(model name, node id, pid) of every model load, in order."""
    path = sync / "loads"
    return [tuple(line.split()) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(path: Path, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.05)
    return path.read_text()


def ray_executor(store, home, modules, **kwargs) -> RayExecutor:
    """A RayExecutor for the tests; by default only the offline runtime scenario (the single-stream one's 32
    batch-1 forwards would each sleep in the slow test modules); the first test runs both."""
    kwargs.setdefault("batch_size", 16)
    kwargs.setdefault("scenarios", ("offline",))
    kwargs.setdefault("echo", lambda s: None)
    return RayExecutor(store, modules, home, progress=False, **kwargs)


VOLATILE = {"run_id", "created_at", "runtime", "env", "last_at", "first_at", "retry_after", "traceback"}


def stored(store) -> dict[str, dict]:
    """Every result, inference, prediction chunk and failure by id, without what differs between runs (run id,
    times, runtime, environment)."""
    out = {}
    for coll in ("results", "inferences", "predictions", "failures"):
        out[coll] = {d["_id"]: {k: v for k, v in d.items() if k not in VOLATILE} for d in store.db[coll].find()}
    return out


# -- loopback only ------------------------------------------------------------------------------------------------
def test_the_cluster_listens_on_loopback_only(shared_cluster):
    import psutil

    session = ray._private.worker._global_node.get_session_dir_path()
    roots = [p for p in psutil.process_iter(["cmdline"]) if session in " ".join(p.info["cmdline"] or [])]
    pids = {p.pid for p in roots} | {c.pid for p in roots for c in p.children(recursive=True)}
    listening = [c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert len(listening) >= 3  # the GCS and the nodes' raylets at least
    addresses = {ipaddress.ip_address(ip) for ip in listening}
    unwrapped = {(a.ipv4_mapped or a) if a.version == 6 else a for a in addresses}  # ::ffff:127.0.0.1 is 127.0.0.1
    assert all(a.is_loopback for a in unwrapped), sorted(listening)


# -- the same results as the local executor --------------------------------------------------------------------
def test_a_cycle_on_two_nodes_equals_the_local_executor(two_workers, store, mongo_uri, fault_zoo, tmp_path, torch_one_thread):
    names = [*GOOD, "nan", "corrupt", "remote-code"]
    variants = ("original", "lowercase", "typos")
    local_db = store.db_name + "_local"
    local = Store(mongo_uri, local_db)
    try:
        register_datasets(local, fault_zoo["datasets"], log=lambda *a: None)
        scrape_local(local, fault_zoo["zoo"], log=lambda *a: None)
        (tmp_path / "sync-local").mkdir()
        local_mod = ScriptedText(dataset=DATASET, variants=variants, sync_dir=str(tmp_path / "sync-local"))
        local_summary = Executor(local, [local_mod], tmp_path / "home", batch_size=16, progress=False,
                                 echo=lambda s: None).run(only(*names))

        sync = tmp_path / "sync"
        sync.mkdir()
        mod = ScriptedText(dataset=DATASET, variants=variants, sync_dir=str(sync))
        said: list[str] = []
        summary = ray_executor(store, tmp_path / "home", [mod], echo=said.append, scenarios=SCENARIOS).run(only(*names))

        run = store.last_run()
        assert run["status"] == "done" and not summary.stopped
        # the head (0 CPUs) and two worker nodes; two groups at a time
        assert run["executor"] == {"kind": "ray", "nodes": 3, "slots": 2, "gpus_per_task": 0.0, "max_retries": 2}
        # the same ids and the same numbers: results, inference records, predictions and failures
        ours, theirs = stored(store), stored(local)
        for coll in ("results", "inferences", "predictions"):
            assert ours[coll] == theirs[coll], coll
        # the workers ran the cycle's runtime scenarios (the times themselves differ from run to run)
        assert all(d["runtime"]["scenarios"] == ["offline", "single-stream"] and d["runtime"]["single_stream"]["n"] > 0
                   for d in store.db.inferences.find())
        assert {k: (f["error_class"], f["reason"], f["attempts"]) for k, f in ours["failures"].items()} == \
               {k: (f["error_class"], f["reason"], f["attempts"]) for k, f in theirs["failures"].items()}
        assert len(ours["results"]) == 3 * len(GOOD) and len(ours["failures"]) == 3 * 3
        for name in GOOD:
            assert_correct(store, fault_zoo, name, variants=variants, module_kind=ScriptedText.kind)
        assert {k: f["error_class"] for k, f in failures(store).items()} == {
            "nan": "inference_error", "corrupt": "model_load", "remote-code": "unsafe_model"}
        assert_no_duplicates(store)
        for key in ("results_written", "inferences", "forward_samples", "models_loaded"):
            assert getattr(summary, key) == getattr(local_summary, key), key
        assert len(summary.failures) == len(local_summary.failures) == 9
        # the workers' messages reach the driver's log
        assert any(line.startswith("FAILED local/fault/nan") for line in said), said
        # the models were loaded in Ray workers on both nodes, never in this (driver) process
        ray_loads = loads(sync)
        assert sorted(name for name, _, _ in ray_loads) == sorted(f"fault/{n}" for n in names)
        assert len({node for _, node, _ in ray_loads}) == 2
        assert str(os.getpid()) not in {pid for _, _, pid in ray_loads}
    finally:
        local.client.drop_database(local_db)
        local.close()


# -- a worker killed, a node removed ------------------------------------------------------------------------------
def test_a_killed_worker_and_a_removed_node_mid_cycle(two_workers, store, fault_zoo, tmp_path):
    nodes = two_workers.workers
    sync = tmp_path / "sync"
    sync.mkdir()
    names = [*GOOD, "hang", "kill"]
    mod = ScriptedText(dataset=DATASET, variants=("original", "lowercase"), sync_dir=str(sync))
    ex = ray_executor(store, tmp_path / "home", [mod], max_retries=2)
    out: dict = {}
    runner = threading.Thread(target=lambda: out.update(summary=ex.run(only(*names))), daemon=True)
    runner.start()

    # a worker process killed while it evaluates "kill"
    _, pid = wait_for(sync / "started-kill").split()
    os.kill(int(pid), signal.SIGKILL)
    # the node evaluating "hang" removed from the cluster
    hang_node, _ = wait_for(sync / "started-hang").split()
    (victim,) = [n for n in nodes if n.node_id == hang_node]
    two_workers.remove(victim)

    runner.join(240)
    assert not runner.is_alive(), "the cycle did not finish"
    summary = out["summary"]
    assert store.last_run()["status"] == "done" and not summary.stopped
    # nothing failed, every result is right and stored once
    assert summary.failures == [] and store.count("failures") == 0
    for name in names:
        assert_correct(store, fault_zoo, name, variants=("original", "lowercase"), module_kind=ScriptedText.kind)
    assert store.count("results") == 2 * len(names)
    assert_no_duplicates(store)
    # the lost tasks re-ran: "kill" in a new worker process, "hang" on the other node
    by_model: dict[str, list[tuple[str, str]]] = {}
    for name, node, pid in loads(sync):
        by_model.setdefault(name.split("/")[1], []).append((node, pid))
    assert len(by_model["kill"]) == 2 and by_model["kill"][0][1] != by_model["kill"][1][1]
    assert len(by_model["hang"]) == 2 and by_model["hang"][0][0] == hang_node != by_model["hang"][1][0]
    assert all(len(by_model[name]) == 1 for name in GOOD)


# -- stop and resume ----------------------------------------------------------------------------------------------
def test_stop_and_resume_across_the_cluster(two_workers, store, fault_zoo, tmp_path):
    sync = tmp_path / "sync"
    sync.mkdir()
    names = [*GOOD, "oom", "oom-always", "memhog"]  # all six hold the good model's weights
    variants = ("original", "lowercase")
    mod = ScriptedText(dataset=DATASET, variants=variants, sync_dir=str(sync), batch_sleep=0.4)
    out: dict = {}
    said: list[str] = []
    first = ray_executor(store, tmp_path / "home", [mod], stop_grace_s=20.0, echo=said.append)
    runner = threading.Thread(target=lambda: out.update(summary=first.run(only(*names))), daemon=True)
    runner.start()
    deadline = time.monotonic() + 120
    while store.count("results") == 0:
        assert time.monotonic() < deadline, "no result was stored"
        time.sleep(0.05)
    store.request_stop()  # what `zooeval stop` does
    asked = time.monotonic()
    runner.join(60)
    assert not runner.is_alive(), "the cycle did not stop"
    # the running groups stopped after their batch (0.4 s each), well within the grace; nothing was cancelled
    assert time.monotonic() - asked < 15 and not any("cancelling" in line for line in said), said
    summary = out["summary"]
    run = store.last_run()
    assert summary.stopped and run["status"] == "stopped"
    done_first = {d["_id"]: d for d in store.db.results.find()}
    assert 0 < len(done_first) < 2 * len(names)
    assert run["counts"]["results_written"] == len(done_first)
    time.sleep(2.0)  # no Ray task goes on writing after the cycle stopped
    assert store.count("results") == len(done_first) and store.count("failures") == 0
    assert_no_duplicates(store)

    # a stop while models load and batches take long: after the grace the driver cancels the running groups.
    # The cancel reaches them while they load (4 s): it waits until the load is whole (a load cut in half can
    # leave a module imported in half in the worker, and every later model would fail to load there), then
    # ends the group like a stop.
    slow = ScriptedText(dataset=DATASET, variants=variants, sync_dir=str(sync), batch_sleep=30.0, load_sleep=4.0)
    said.clear()
    before = len(loads(sync))
    second = ray_executor(store, tmp_path / "home", [slow], stop_grace_s=0.5, echo=said.append)
    runner = threading.Thread(target=lambda: out.update(summary=second.run(only(*names))), daemon=True)
    runner.start()
    while len(loads(sync)) < before + 2:  # both nodes are loading their first model
        assert time.monotonic() < deadline + 120, "the second run did not start"
        time.sleep(0.05)
    time.sleep(1.0)
    store.request_stop()
    asked = time.monotonic()
    runner.join(60)
    assert not runner.is_alive() and time.monotonic() - asked < 15, "the cancelled groups did not stop"
    assert any(line.startswith("ray: cancelling 4 group(s)") for line in said), said  # 2 running, 2 queued
    finished = (sync / "loaded").read_text().splitlines()
    assert len(finished) == len(loads(sync)), "a cancel cut a model's load in half"
    assert out["summary"].stopped and store.last_run()["status"] == "stopped"
    time.sleep(2.0)
    assert store.count("results") == len(done_first) and store.count("failures") == 0

    third = ray_executor(store, tmp_path / "home", [mod]).run(only(*names))
    assert store.last_run()["status"] == "done" and not third.stopped and not third.failures
    # completed tasks were not redone: planned again are only the missing ones
    assert {t.inference_id for t in third.plan.tasks}.isdisjoint(d["inference_id"] for d in done_first.values())
    assert third.results_written == 2 * len(names) - len(done_first)
    for rid, doc in done_first.items():
        assert store.db.results.find_one({"_id": rid})["run_id"] == doc["run_id"] == summary.run_id
    for name in names:
        assert_correct(store, fault_zoo, name, variants=variants, module_kind=ScriptedText.kind)
    assert_no_duplicates(store)


# -- failures: a model's are stored, not retried; a lost worker's are retried, then stored -------------------------
def test_a_failing_model_is_a_stored_failure_not_a_retried_ray_task(two_workers, store, fault_zoo, tmp_path):
    sync = tmp_path / "sync"
    sync.mkdir()
    zoo = tmp_path / "zoo"  # one more copy of the good model, whose forward kills its process every time
    shutil.copytree(fault_zoo["repos"]["good"], zoo / "fault" / "always-kill")
    scrape_local(store, zoo, log=lambda *a: None)
    mod = ScriptedText(dataset=DATASET, sync_dir=str(sync))
    said: list[str] = []
    summary = ray_executor(store, tmp_path / "home", [mod], max_retries=1, echo=said.append).run(
        only("good", "nan", "corrupt", "always-kill"))
    assert store.last_run()["status"] == "done"
    fails = failures(store)
    assert {k: f["error_class"] for k, f in fails.items()} == {
        "nan": "inference_error", "corrupt": "model_load", "always-kill": "inference_error"}
    assert all(f["attempts"] == 1 and not f["permanent"] for f in fails.values())
    assert "NaN" in fails["nan"]["reason"] and "cannot load model" in fails["corrupt"]["reason"]
    assert "was lost 2 time(s)" in fails["always-kill"]["reason"], fails["always-kill"]["reason"]
    # the failing models were loaded once: Ray did not run their tasks again; the killed worker's twice (1 + max_retries)
    counts: dict[str, int] = {}
    for name, _, _ in loads(sync):
        counts[name.split("/")[1]] = counts.get(name.split("/")[1], 0) + 1
    assert counts == {"good": 1, "nan": 1, "corrupt": 1, "always-kill": 2}
    assert len(summary.failures) == 3 and summary.results_written == 1
    assert_correct(store, fault_zoo, "good", module_kind=ScriptedText.kind)
    assert_no_duplicates(store)

    # a node that cannot see a dataset's folder stops the cycle with the reason; no model is blamed for it
    store.db.datasets.update_one({"name": DATASET}, {"$set": {"path": str(tmp_path / "nowhere")}})
    with pytest.raises(NodeSetupError, match="is not visible on node"):
        ray_executor(store, tmp_path / "home", [mod]).run(only("pickle-ok"))
    assert store.last_run()["status"] == "crashed" and set(failures(store)) == set(fails)


# -- --isolate (the scheduler's default) on the cluster -----------------------------------------------------------
def test_isolated_groups_on_the_cluster(two_workers, store, fault_zoo, tmp_path):
    """With --isolate each Ray task evaluates its model in a child process, with the time limit: a model that
    hangs is a stored timeout, the others are scored, and no Ray task is retried."""
    sync = tmp_path / "sync"
    sync.mkdir()
    mod = ScriptedText(dataset=DATASET, sync_dir=str(sync))
    summary = ray_executor(store, tmp_path / "home", [mod], isolate=True, task_timeout=10.0).run(
        only("good", "zz-after", "hang"))
    assert store.last_run()["status"] == "done" and summary.results_written == 2
    assert {k: f["error_class"] for k, f in failures(store).items()} == {"hang": "timeout"}
    for name in ("good", "zz-after"):
        assert_correct(store, fault_zoo, name, module_kind=ScriptedText.kind)
    assert_no_duplicates(store)
    # every model loaded once, in a child of a Ray worker (not in a Ray worker itself, nor in this process)
    loaded = loads(sync)
    assert sorted(name for name, _, _ in loaded) == ["fault/good", "fault/hang", "fault/zz-after"]
    worker_pids = {str(w) for w in psutil_ray_worker_pids()}
    assert {pid for _, _, pid in loaded}.isdisjoint(worker_pids | {str(os.getpid())})


def psutil_ray_worker_pids() -> set[int]:
    """The pids of this cluster's Ray worker processes."""
    import psutil

    session = ray._private.worker._global_node.get_session_dir_path()
    raylets = [p for p in psutil.process_iter(["name", "cmdline"])
               if p.info["name"] == "raylet" and session in " ".join(p.info["cmdline"] or [])]
    return {c.pid for r in raylets for c in r.children() if c.name().startswith("ray::")}


# -- through the CLI, on the demo zoo ------------------------------------------------------------------------------
#: the demo's Hugging Face image classifiers (the digits ResNets, good and broken) on two variants: seconds, not minutes
DEMO_SELECTION = ("--module", "hf-image-classification/*", "--variant", "original", "--variant", "mirrored")


def zooeval(*args: str, **env: str) -> str:
    """``zooeval ARGS`` in this process (``env``: environment variables for the call)."""
    result = CliRunner().invoke(main, list(args), env=env or None, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_zooeval_run_with_the_ray_executor_equals_a_local_run(two_workers, env):
    store = Store(env["uri"], env["db"])
    local_db = env["db"] + "_local"
    local = Store(env["uri"], local_db)
    try:
        zooeval("scrape", "--source", "local")
        # a new process: a driver of its own, joining the cluster by its address
        proc = run_zooeval(["run", "--no-progress", *DEMO_SELECTION, "--executor", "ray", "--ray-address",
                            two_workers.address], env=dict(os.environ), cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = store.last_run()
        assert run["status"] == "done" and run["executor"]["kind"] == "ray" and run["executor"]["nodes"] == 3, run
        groups = len(run["planned_by_model"])
        assert f"ray: {groups} model group(s) on 3 node(s), 2 at a time" in proc.stdout, proc.stdout
        status = zooeval("status")
        assert f"run {run['_id']}: done" in status and f"tasks: {run['planned']} planned, " in status, status
        assert " 0 running, 0 pending" in status, status

        zooeval("scrape", "--source", "local", ZOOEVAL_DB=local_db)
        zooeval("run", "--no-progress", *DEMO_SELECTION, ZOOEVAL_DB=local_db)
        ours, theirs = stored(store), stored(local)
        for coll in ("results", "inferences", "predictions"):
            assert ours[coll] == theirs[coll], coll
        assert {k: (f["error_class"], f["reason"]) for k, f in ours["failures"].items()} == \
               {k: (f["error_class"], f["reason"]) for k, f in theirs["failures"].items()}
        assert ours["results"] and ours["failures"]  # good models scored, broken ones failed
        assert_no_duplicates(store)
        # the same command again: nothing to do (and no model loaded anywhere)
        assert "nothing to do" in zooeval("run", "--no-progress", *DEMO_SELECTION, "--executor", "ray",
                                          "--ray-address", two_workers.address)
    finally:
        local.client.drop_database(local_db)
        local.close()
        store.close()


# -- the pieces, without a cluster --------------------------------------------------------------------------------
def test_memory_hint_counts_the_weights_once():
    gib = 1 << 30
    assert memory_hint(None) == gib
    assert memory_hint({"model.safetensors": 100, "pytorch_model.bin": 100, "config.json": 5}) == gib + 200
    assert memory_hint({"pytorch_model.bin": 300, "README.md": 9}) == gib + 600
    assert memory_hint({"model-00001-of-00002.safetensors": 10, "model-00002-of-00002.safetensors": None}) == gib + 20


def test_loopback_only():
    assert loopback_only("mongodb://127.0.0.1:27017/?replicaSet=rs0")
    assert loopback_only("mongodb://user:pw@localhost,127.0.0.2:27018")
    assert loopback_only("mongodb://[::1]:27017")
    assert not loopback_only("mongodb://mongo.internal:27017")
    assert not loopback_only("mongodb://127.0.0.1,10.0.0.5")
    assert not loopback_only("mongodb+srv://cluster0.example.net")


def test_group_slots():
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 4.0}},
             {"Alive": False, "Resources": {"CPU": 64.0}}]
    assert group_slots(nodes, 1, 0) == 12
    assert group_slots(nodes, 1, 1) == 2
    assert group_slots(nodes, 1, 0.5) == 4
    assert group_slots([], 1, 0) == 0


def test_an_interrupt_during_a_load_waits_until_the_load_is_whole():
    """What Ray's non-forced cancel sends a running task (SIGINT to the worker's main thread) is held back
    inside deferred_interrupt and raised when the block ends; outside it lands at once."""
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the signal is handled here, and held
            steps.append("load finished")
        steps.append("not reached")
    assert steps == ["load finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the usual handler is back
    with deferred_interrupt():  # no interrupt: nothing raised
        steps.append("second load")
    assert steps == ["load finished", "second load"]
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
    # a step that fails while a cancel is held: the cancel is not lost (it ends the group, as a stop)
    with pytest.raises(KeyboardInterrupt) as held:
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            raise ValueError("the model's weights are corrupt")
    assert isinstance(held.value.__cause__, ValueError)
    with pytest.raises(ValueError):  # without a cancel the failure is the step's own
        with deferred_interrupt():
            raise ValueError("the model's weights are corrupt")
