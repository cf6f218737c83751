"""`zooeval stats`: the statistics of each metric across models, per task x dataset x split x variant x processor,
equal to numpy's on the same values (sample std, linear quantiles), on the real mongod; awkward cases: one model
only (no std), a metric some models lack, an older superseded result that must not count, and the filters."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from core.store import Store, utcnow
from service.cli import main
from service.stats import store_statistics

ACC = {"m1": 0.91, "m2": 0.55, "m3": 0.73, "m4": 0.80}  # rotten_tomatoes / original
IPS = {"m1": 120.0, "m2": 340.5, "m3": 88.25, "m4": 1000.0}


def _result(store: Store, model: str, variant: str, overall: dict, runtime: dict, created_offset: int = 0,
            dataset: str = "rotten_tomatoes", task: str = "text-classification") -> None:
    import datetime as dt

    rid = f"{model}-{dataset}-{variant}-{created_offset}"
    store.insert_result(rid, {
        "inference_id": rid, "model_key": f"local:{model}", "model_name": model, "model_revision": "r1",
        "source": "local", "task": task, "module": "hf-text", "processor": "classification",
        "processor_spec": "classification", "dataset": dataset, "split": "test", "dataset_revision": "d1",
        "variant": variant, "overall": overall, "runtime": runtime,
        "created_at": utcnow() - dt.timedelta(seconds=created_offset),
    })


@pytest.fixture
def store(mongo_uri, db_name):
    s = Store(mongo_uri, db_name)
    for m in ACC:
        single = {"p50_ms": 10.0 + len(m), "p90_ms": 20.0, "p99_ms": 30.0 + ACC[m], "mean_ms": 12.0}
        _result(s, m, "original", {"accuracy": ACC[m], "macro_f1": ACC[m] - 0.1},
                {"instances_per_second": IPS[m], "load_s": 1.5, "single_stream": single})
    # an older result of m1 (superseded by the one above): must not count
    _result(s, "m1", "original", {"accuracy": 0.1}, {"instances_per_second": 1.0}, created_offset=3600)
    # only m1 and m2 have the typos variant; only m2 has "mcc"
    _result(s, "m1", "typos", {"accuracy": 0.61}, {"instances_per_second": 100.0})
    _result(s, "m2", "typos", {"accuracy": 0.40, "mcc": 0.2}, {"instances_per_second": 300.0})
    _result(s, "m3", "original", {"AP": 0.4}, {"instances_per_second": 5.0}, dataset="shapes", task="object-detection")
    yield s
    s.close()


def _row(rows, **key):
    found = [r for r in rows if all(r[k] == v for k, v in key.items())]
    assert len(found) == 1, (key, found)
    return found[0]


def _reference(values):
    v = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"count": len(v), "mean": v.mean(), "std": v.std(ddof=1) if len(v) > 1 else None, "min": v.min(),
            "q1": q1, "median": med, "q3": q3, "max": v.max(), "iqr": q3 - q1}


def _assert_equal(row, ref):
    for key, value in ref.items():
        if value is None:
            assert row[key] is None, key
        else:
            assert row[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_statistics_equal_numpy_over_current_results(store):
    rows = store_statistics(store)
    _assert_equal(_row(rows, variant="original", metric="accuracy", dataset="rotten_tomatoes"),
                  _reference(list(ACC.values())))  # the superseded 0.1 of m1 is not counted
    _assert_equal(_row(rows, variant="original", metric="runtime:instances_per_second", dataset="rotten_tomatoes"),
                  _reference(list(IPS.values())))
    _assert_equal(_row(rows, variant="original", metric="runtime:single_stream_p50_ms", dataset="rotten_tomatoes"),
                  _reference([10.0 + len(m) for m in ACC]))
    _assert_equal(_row(rows, variant="typos", metric="accuracy"), _reference([0.61, 0.40]))
    one = _row(rows, variant="typos", metric="mcc")  # a metric only one model has: count 1, no std
    _assert_equal(one, _reference([0.2]))
    assert one["iqr"] == 0.0
    det = _row(rows, metric="AP")
    assert det["task"] == "object-detection" and det["count"] == 1


def test_filters(store):
    rows = store_statistics(store, task="text-classification", variant="typos", metric="accuracy")
    assert [(r["variant"], r["metric"], r["count"]) for r in rows] == [("typos", "accuracy", 2)]
    assert store_statistics(store, dataset="no-such-dataset") == []


def test_cli_formats(store, mongo_uri, db_name, tmp_path):
    runner = CliRunner()
    base = ["--home", str(tmp_path), "--mongo-uri", mongo_uri, "--db", db_name, "stats"]
    out = runner.invoke(main, [*base, "--metric", "accuracy", "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {(r["variant"], r["count"]) for r in data} == {("original", 4), ("typos", 2)}
    out = runner.invoke(main, [*base, "--dataset", "rotten_tomatoes", "--format", "csv"])
    assert out.exit_code == 0, out.output
    parsed = list(csv.DictReader(io.StringIO(out.output)))
    acc = [r for r in parsed if r["metric"] == "accuracy" and r["variant"] == "original"][0]
    assert float(acc["median"]) == pytest.approx(np.median(list(ACC.values())))
    out = runner.invoke(main, [*base, "--variant", "typos"])
    assert out.exit_code == 0, out.output
    assert "accuracy" in out.output and "median" in out.output and "original" not in out.output
    out = runner.invoke(main, [*base, "--metric", "no-such-metric"])
    assert out.exit_code == 0 and "no results match" in out.output
