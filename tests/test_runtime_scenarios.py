"""Runtime scenarios (AI-BMT): every inference records the offline throughput of its batched pass and, unless
``--scenarios offline``, a single-stream measurement: batch-1 latencies of a fixed sample after warm-up, as
p50/p90/p99 in ms. On the fault zoo's tiny real model and the real mongod; the percentile arithmetic is checked
on a module whose forward takes known times."""
from __future__ import annotations

import time

import numpy as np
import pytest
from click.testing import CliRunner

from modules.hf import HFTextClassification
from pipeline.executor import SINGLE_STREAM_SAMPLES
from service.cli import main
from tasks.batching import single_stream
from tests.manual_clock import ManualClock
from tests.test_faults import N_TEST, assert_correct, executor, fault_zoo, only, store  # noqa: F401  (fixtures)


def test_single_stream_recorded_with_the_throughput(store, fault_zoo, tmp_path):  # noqa: F811
    summary = executor(store, tmp_path).run(only("good"))
    assert summary.results_written == 1 and not summary.failures
    res = assert_correct(store, fault_zoo, "good")  # the numbers are those of the plain model: unchanged
    runtime = res[0]["runtime"]
    assert runtime["scenarios"] == ["offline", "single-stream"]
    assert runtime["instances_per_second"] > 0 and runtime["n"] == N_TEST
    single = runtime["single_stream"]
    assert single["n"] == min(SINGLE_STREAM_SAMPLES, N_TEST)
    assert 0 < single["p50_ms"] <= single["p90_ms"] <= single["p99_ms"] <= single["max_ms"]
    assert single["mean_ms"] <= single["max_ms"]
    inference = store.db.inferences.find_one({"_id": res[0]["inference_id"]})
    assert inference["runtime"]["single_stream"] == single
    assert inference["env"]["cpu"] and inference["env"]["memory_bytes"] > 0  # the hardware of the times


def test_offline_only(store, tmp_path):  # noqa: F811
    executor(store, tmp_path, scenarios=("offline",)).run(only("good"))
    runtime = store.db.results.find_one()["runtime"]
    assert runtime["scenarios"] == ["offline"] and "single_stream" not in runtime


def test_unknown_scenario_is_refused(store, tmp_path, mongo_uri, db_name):  # noqa: F811
    with pytest.raises(ValueError, match="unknown runtime scenario"):
        executor(store, tmp_path, scenarios=("server",))
    out = CliRunner().invoke(main, ["--home", str(tmp_path), "--mongo-uri", mongo_uri, "--db", db_name, "run",
                                    "--scenarios", "offline,server"])
    assert out.exit_code == 2 and "unknown scenario(s) server" in out.output


class _KnownTimes(HFTextClassification):
    """Forward passes that take 1, 2, ..., n ms more than the model's own (the percentiles must follow): on a
    clock of the test's (``clock``, advanced by exactly that much) or, without one, really sleeping."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        super().__init__(dataset="x")
        self.calls = 0
        self.clock = clock

    def prepare(self, loaded, inputs):
        return {}

    def forward(self, loaded, batch):
        self.calls += 1
        if self.clock is not None:
            self.clock.now += self.calls / 1000.0
        else:
            time.sleep(self.calls / 1000.0)


class _Loaded:
    device = "cpu"


def test_percentiles_follow_the_latencies(monkeypatch):
    """The percentiles, mean and max are numpy's over the latencies measured, exactly (a clock the test drives:
    a real sleep of 40 ms once took 103 ms on a busy machine, which a p99 of 40 inputs, nearly the max, shows)."""
    import tasks.batching as batching

    clock = ManualClock()
    monkeypatch.setattr(batching, "time", clock)
    module = _KnownTimes(clock)
    out = single_stream(module, _Loaded(), list(range(40)))
    assert out["n"] == 40 and module.calls == 40
    latencies = np.arange(1, 41, dtype=np.float64)
    for key, value in zip(("p50_ms", "p90_ms", "p99_ms"), np.percentile(latencies, [50, 90, 99])):
        assert out[key] == pytest.approx(value, abs=1e-6), key
    assert out["mean_ms"] == pytest.approx(latencies.mean(), abs=1e-6)
    assert out["max_ms"] == pytest.approx(40.0, abs=1e-6)
    assert single_stream(module, _Loaded(), []) == {"n": 0}


def test_latencies_are_measured_on_the_real_clock():
    """With real sleeps of 1..40 ms, the median latency is the median sleep plus a little (sleep never returns
    early; the median is not moved by one or two stalls of a busy machine, the p99 would be)."""
    module = _KnownTimes()
    out = single_stream(module, _Loaded(), list(range(40)))
    assert out["n"] == 40 and module.calls == 40
    median = float(np.percentile(np.arange(1, 41, dtype=float), 50))
    assert median <= out["p50_ms"] < median + 15, out
    assert out["max_ms"] >= 40.0
