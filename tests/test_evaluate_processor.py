"""The ``evaluate`` processor (processors/evaluate_metric.py): any Hugging Face evaluate metric, from a local
script or from the Hub, computed from stored predictions.

The metric scripts are written here in evaluate's metric script format (the evaluate wheel ships none, and the
Hub is out of reach); each computes its numbers by hand with numpy, and the tests compare them with
scikit-learn. End to end: a real cycle on the fault zoo's ``tinysent`` with its trained model, then the metrics
added as processors re-score the stored predictions with no model loaded, from a local folder and from the
Hub stand-in (``spaces/evaluate-metric/<name>``) through ``HF_ENDPOINT``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sys
import textwrap
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from core import identity as ident
from core.fingerprint import canonical_json
from processors.base import PROCESSORS, ProcessorSpec, processors_for_task
from processors.classification import ClassificationProcessor
from processors.evaluate_metric import EvaluateProcessor, MetricError
from tasks.classification import ClassificationPredictions
from tests.cli_child import run_python
from tests.fault_repos import DATASET, session_fault_zoo
from tests.hubserver import HubServer

REPO = Path(__file__).resolve().parents[1]

# -- metric scripts in evaluate's format (one import per line: evaluate reads imports line by line) -----------
INT_FEATURES = 'datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})'

ACCURACY = f'''"""Accuracy: the share of predictions equal to their reference."""
import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="accuracy", citation="", inputs_description="predictions, references: class indices",
            features={INT_FEATURES},
        )

    def _compute(self, predictions, references):
        return {{"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}}
'''

F1 = f'''"""F1 from per-class counts over the labels seen in predictions or references, as scikit-learn's."""
import datasets
import evaluate
import numpy as np


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="f1", citation="", inputs_description="predictions, references: class indices",
            features={INT_FEATURES},
        )

    def _compute(self, predictions, references, average="binary", pos_label=1):
        p, r = np.asarray(predictions), np.asarray(references)
        labels = np.union1d(p, r)
        tp = np.array([np.sum((p == c) & (r == c)) for c in labels])
        fp = np.array([np.sum((p == c) & (r != c)) for c in labels])
        fn = np.array([np.sum((p != c) & (r == c)) for c in labels])
        per_class = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        if average == "binary":
            return {{"f1": float(per_class[labels == pos_label][0]) if pos_label in labels else 0.0}}
        if average == "macro":
            return {{"f1": float(per_class.mean())}}
        if average == "micro":
            return {{"f1": float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()))}}
        if average == "none":
            return {{"f1": per_class}}
        raise ValueError(f"unknown average {{average!r}}")
'''

MAE = '''"""Mean absolute error of real-valued predictions, and their bias (which tells predictions from references)."""
import datasets
import evaluate
import numpy as np


class MeanAbsoluteError(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="mae", citation="", inputs_description="predictions, references: numbers",
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        error = np.asarray(predictions) - np.asarray(references)
        return {"mae": float(np.mean(np.abs(error))), "bias": float(np.mean(error))}
'''

ODD = f'''"""Outputs of every awkward kind: NaN, nested dicts, long and short arrays, text."""
import datasets
import evaluate
import numpy as np


class Odd(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="odd", citation="", inputs_description="", features={INT_FEATURES})

    def _compute(self, predictions, references):
        hits = float(np.sum(np.asarray(predictions) == np.asarray(references)))
        return {{"score": float("nan"), "hits": hits, "nested": {{"a": 1.5, "b.c": np.int64(2)}},
                 "big": np.arange(5000), "per": np.array([0.5, np.nan]), "label": "odd", "n": 7}}
'''

NOT_A_METRIC = '''"""A script with no evaluate.Metric in it."""
import numpy as np

VALUE = np.pi
'''


def write_metric(root: Path, name: str, source: str) -> Path:
    """``root/<name>/<name>.py``: a metric folder as evaluate.load takes it."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def evaluate_caches(tmp_path_factory):
    """evaluate's module and download caches in a temporary folder (not ~/.cache). The modules folder stays
    for the session: evaluate binds its dynamic modules package to the first folder it used."""
    import evaluate

    root = tmp_path_factory.mktemp("evaluate-cache")
    if "evaluate_modules" not in sys.modules:
        evaluate.config.HF_MODULES_CACHE = root / "modules"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate.config, "HF_EVALUATE_CACHE", root / "evaluate")
        mp.setattr(evaluate.config, "HF_METRICS_CACHE", root / "metrics")
        yield root


@pytest.fixture(scope="module")
def metrics(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("metrics")
    return {name: write_metric(root, name, source) for name, source in
            {"accuracy": ACCURACY, "f1": F1, "mae": MAE, "odd": ODD, "notametric": NOT_A_METRIC}.items()}


def random_predictions(n: int, n_classes: int, seed: int, start: int = 0) -> ClassificationPredictions:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, n)
    scores = rng.random((n, n_classes))
    scores[np.arange(n), y_true] += rng.random(n) * 0.8  # better than chance, not perfect
    topk = np.argsort(-scores, axis=1)[:, :3]
    return ClassificationPredictions([f"s{start + i}" for i in range(n)], y_true, topk,
                                     np.take_along_axis(scores, topk, axis=1))


def run(spec: str, batches: list) -> dict:
    """A processor of ``spec`` fed ``batches`` (the first half by one instance, the rest by another, merged)."""
    spec = ProcessorSpec.parse(spec)
    doc = {"classes": [{"label": f"c{i}"} for i in range(5)]}
    first, second = spec.build(doc), spec.build(doc)
    half = len(batches) // 2
    for b in batches[:half]:
        first.update(b)
    for b in batches[half:]:
        second.update(b)
    first.merge(second)
    return first.compute()


# -- unit ------------------------------------------------------------------------------------------------
def test_local_metrics_equal_scikit_learn(metrics):
    batches = [random_predictions(n, 5, seed, start) for n, seed, start in ((70, 1, 0), (55, 2, 70), (75, 3, 125))]
    y_true = np.concatenate([b.y_true for b in batches])
    y_pred = np.concatenate([b.y_pred for b in batches])
    assert 0.3 < accuracy_score(y_true, y_pred) < 0.95  # a case where the metrics say something

    acc = run(f"evaluate:{metrics['accuracy']}", batches)
    assert acc["overall"] == {"accuracy": accuracy_score(y_true, y_pred), "n": 200}
    assert acc["metric"]["name"] == "accuracy"
    assert acc["metric"]["path"] == str(metrics["accuracy"] / "accuracy.py")
    assert acc["metric"]["script_sha256"] == sha256(metrics["accuracy"] / "accuracy.py")
    import evaluate

    assert acc["metric"]["evaluate_version"] == evaluate.__version__

    macro = run(f"evaluate:metric={metrics['f1']},average=macro", batches)
    assert macro["overall"]["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    cls = ClassificationProcessor([f"c{i}" for i in range(5)])
    for b in batches:
        cls.update(b)
    assert macro["overall"]["f1"] == pytest.approx(cls.compute()["overall"]["macro_f1"], abs=1e-12)
    micro = run(f"evaluate:metric={metrics['f1']},average=micro", batches)
    assert micro["overall"]["f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"), abs=1e-12)
    # an array output is kept as a list beside the numbers
    per_class = run(f"evaluate:metric={metrics['f1']},average=none", batches)
    assert per_class["overall"] == {"n": 200}
    assert per_class["outputs"]["f1"] == pytest.approx(f1_score(y_true, y_pred, average=None).tolist(), abs=1e-12)


@dataclasses.dataclass
class RegressionRecord:
    """A task record with real-valued truth and predictions (the evaluate processor reads only these two)."""

    y_true: np.ndarray
    y_pred: np.ndarray


def test_regression_record_with_float_values(metrics):
    rng = np.random.default_rng(4)
    truth, pred = rng.normal(size=90), rng.normal(size=90)
    processor = EvaluateProcessor([], metric=str(metrics["mae"]))
    processor.update(RegressionRecord(truth[:40], pred[:40]))
    processor.update(RegressionRecord(truth[40:], pred[40:]))
    out = processor.compute()
    assert out["overall"]["n"] == 90
    assert out["overall"]["mae"] == pytest.approx(mean_absolute_error(truth, pred), abs=1e-12)
    assert out["overall"]["bias"] == pytest.approx(float(np.mean(pred - truth)), abs=1e-12) != 0.0
    with pytest.raises(ValueError, match="differ in length"):
        processor.update(RegressionRecord(truth[:3], pred[:2]))


def test_outputs_are_stored_without_nan(metrics):
    batch = random_predictions(40, 3, seed=5)
    out = EvaluateProcessor([], metric=str(metrics["odd"]))
    out.update(batch)
    result = out.compute()
    hits = float(np.sum(batch.y_true == batch.y_pred))
    assert result["overall"] == {"score": None, "hits": hits, "nested/a": 1.5, "nested/b_c": 2, "metric_n": 7, "n": 40}
    assert result["outputs"] == {"per": [0.5, None], "label": "odd"}
    notes = " | ".join(result["notes"])
    assert "score was nan" in notes and "big: 5000 values" in notes and "per holds NaN" in notes
    canonical_json(result)  # raises on NaN or infinity anywhere in the result


def test_identity_pins_the_metric_script(metrics, tmp_path):
    folder = write_metric(tmp_path, "accuracy", ACCURACY)
    script = folder / "accuracy.py"
    spec = ProcessorSpec.parse(f"evaluate:{folder}")
    first = spec.identity()
    assert first == {"name": "evaluate", "version": 1,
                     "params": {"metric": str(folder), "name": "accuracy", "script_sha256": sha256(script)}}
    assert spec.identity() == first  # loaded once, same answer

    # a changed script (another way to count) is another processor identity, so other result ids
    script.write_text(ACCURACY.replace("float(np.mean(np.asarray(predictions) == np.asarray(references)))",
                                       "float(np.sum(np.equal(predictions, references)) / len(references))"))
    changed = spec.identity()
    assert changed["params"]["script_sha256"] == sha256(script) != first["params"]["script_sha256"]
    inference = "ab" * 32
    assert ident.result_id(inference, ident.processor_fingerprint(**changed)) != \
        ident.result_id(inference, ident.processor_fingerprint(**first))
    processor = spec.build({"classes": []})  # and the changed code is what runs
    batch = random_predictions(30, 4, seed=6)
    processor.update(batch)
    result = processor.compute()
    assert result["metric"]["script_sha256"] == changed["params"]["script_sha256"]
    assert result["overall"]["accuracy"] == pytest.approx(accuracy_score(batch.y_true, batch.y_pred), abs=1e-12)

    script.write_text(ACCURACY)  # back to the first script: the first identity again
    assert spec.identity() == first


def test_spec_parsing_and_task_selection(metrics):
    path = str(metrics["f1"])
    assert ProcessorSpec.parse(f"evaluate:{path}") == ProcessorSpec("evaluate", (("metric", path),))
    spec = ProcessorSpec.parse(f"evaluate:metric={path},average=macro")
    assert spec == ProcessorSpec("evaluate", (("average", "macro"), ("metric", path)))
    assert ProcessorSpec.parse(str(spec)) == spec
    assert spec.identity()["params"] == {"average": "macro", "metric": path, "name": "f1",
                                         "script_sha256": sha256(metrics["f1"] / "f1.py")}
    assert spec.build({"classes": []}).compute_kwargs == {"average": "macro"}
    assert PROCESSORS.get("evaluate") is EvaluateProcessor
    # never a default: it runs where a module or --processor names it, for tasks whose records it reads
    assert all(s.name != "evaluate" for s in processors_for_task("text-classification", ("classification",)))
    assert spec in processors_for_task("text-classification", ("classification",), [spec])
    assert spec in processors_for_task("image-classification", ("classification",), [str(spec)])
    assert spec not in processors_for_task("object-detection", ("detection",), [spec])


def test_bad_metrics_are_clear_errors(metrics, tmp_path):
    missing = tmp_path / "no-such-metric"
    with pytest.raises(MetricError, match=re.escape(f"evaluate metric '{missing}' cannot be loaded: FileNotFoundError")):
        ProcessorSpec.parse(f"evaluate:{missing}").identity()
    with pytest.raises(MetricError, match="defines no evaluate.Metric subclass"):
        ProcessorSpec.parse(f"evaluate:{metrics['notametric']}").identity()
    with pytest.raises(MetricError, match=r"takes no parameter 'averag'; its compute\(\) parameters: average, pos_label"):
        ProcessorSpec.parse(f"evaluate:metric={metrics['f1']},averag=macro").identity()
    with pytest.raises(MetricError, match="script_sha256 cannot be given"):
        ProcessorSpec.parse(f"evaluate:metric={metrics['f1']},script_sha256=abc").identity()
    with pytest.raises(MetricError, match="evaluate needs a metric"):
        ProcessorSpec.parse("evaluate:average=macro").identity()


# -- end to end ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cycle(tmp_path_factory, mongo_uri):
    """A store after one real cycle: the fault zoo's good model on tinysent (classification results and the
    stored predictions)."""
    from core.store import Store
    from modules.hf import HFTextClassification
    from pipeline.executor import Executor
    from scraper.datasets import register_datasets
    from scraper.local import scrape_local

    zoo = session_fault_zoo(tmp_path_factory)
    root = tmp_path_factory.mktemp("evaluate-cycle")
    shutil.copytree(zoo["dataset_dir"], root / "datasets" / DATASET)
    db = "zt_" + uuid.uuid4().hex[:10]
    store = Store(mongo_uri, db)
    try:
        register_datasets(store, root / "datasets", log=lambda *a: None)
        scrape_local(store, zoo["zoo"], log=lambda *a: None)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HF_HUB_OFFLINE", "1")
            summary = Executor(store, [HFTextClassification(dataset=DATASET)], root / "home", batch_size=16,
                               progress=False, echo=lambda s: None).run({"name": "fault/good"})
        assert summary.models_loaded == 1 and summary.forward_samples > 0 and not summary.failures
        base = next(store.iter_results({"model_name": "fault/good", "processor": "classification"}))
        assert base["overall"]["accuracy"] == pytest.approx(zoo["accuracy"], abs=1e-12)
        yield {"store": store, "uri": mongo_uri, "db": db, "home": root / "home", "base": base}
    finally:
        store.client.drop_database(db)
        store.close()


def no_load_modules(monkeypatch, *specs: str) -> list:
    """The cycle's module with the extra processors, and a load() that fails the test."""
    from modules.hf import HFTextClassification

    m = HFTextClassification(dataset=DATASET)
    m.processors = (*m.processors, *specs)
    monkeypatch.setattr(m, "load", lambda *a, **k: pytest.fail("a model was loaded"))
    return [m]


def rescore(cycle, modules):
    from pipeline.executor import Executor

    return Executor(cycle["store"], modules, cycle["home"], progress=False, echo=lambda s: None).run({"name": "fault/good"})


def stored_predictions(cycle) -> tuple[np.ndarray, np.ndarray]:
    from tasks.classification import TEXT_CLASSIFICATION

    chunks = list(cycle["store"].iter_predictions(cycle["base"]["inference_id"]))
    preds = TEXT_CLASSIFICATION.decode(chunks)
    return preds.y_true, preds.y_pred


def test_metric_added_later_costs_no_forward_pass(cycle, metrics, monkeypatch, tmp_path):
    store, base = cycle["store"], cycle["base"]
    y_true, y_pred = stored_predictions(cycle)
    folder = write_metric(tmp_path, "accuracy", ACCURACY)  # a copy this test changes
    specs = (f"evaluate:{folder}", f"evaluate:metric={metrics['f1']},average=macro")
    summary = rescore(cycle, no_load_modules(monkeypatch, *specs))
    assert summary.models_loaded == 0 and summary.forward_samples == 0 and not summary.failures
    assert summary.rescored == 1 and summary.results_written == 2

    def result(path: Path, script: Path) -> dict:
        found = list(store.iter_results({"processor": "evaluate", "processor_params.metric": str(path),
                                         "processor_params.script_sha256": sha256(script)}))
        assert len(found) == 1, found
        return found[0]

    acc = result(folder, folder / "accuracy.py")
    assert acc["processor_version"] == 1 and acc["inference_id"] == base["inference_id"]
    assert acc["processor_params"] == {"metric": str(folder), "name": "accuracy", "script_sha256": sha256(folder / "accuracy.py")}
    assert acc["_id"] == ident.result_id(base["inference_id"],
                                         ident.processor_fingerprint(**ProcessorSpec.parse(specs[0]).identity()))
    assert acc["overall"]["accuracy"] == base["overall"]["accuracy"] == accuracy_score(y_true, y_pred)
    assert acc["overall"]["n"] == base["overall"]["n"] == len(y_true)
    f1 = result(metrics["f1"], metrics["f1"] / "f1.py")
    assert f1["processor_params"]["average"] == "macro"
    assert f1["overall"]["f1"] == pytest.approx(base["overall"]["macro_f1"], abs=1e-12)
    assert f1["overall"]["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)

    assert rescore(cycle, no_load_modules(monkeypatch, *specs)).results_written == 0  # all stored: nothing to do

    # a changed metric script makes new result ids: re-scored from the stored predictions, the old result kept
    (folder / "accuracy.py").write_text(ACCURACY.replace('"accuracy": float(', '"accuracy": 1.0 - float(1.0 - '))
    summary = rescore(cycle, no_load_modules(monkeypatch, *specs))
    assert summary.models_loaded == 0 and summary.forward_samples == 0 and summary.results_written == 1
    new = result(folder, folder / "accuracy.py")
    assert new["_id"] != acc["_id"] and store.count("results", {"_id": acc["_id"]}) == 1
    assert new["overall"]["accuracy"] == pytest.approx(acc["overall"]["accuracy"], abs=1e-12)


def test_a_metric_that_cannot_load_or_run_is_reported(cycle, metrics, monkeypatch, tmp_path):
    store = cycle["store"]
    # one that cannot be loaded: its module is left out of the plan with the reason, the cycle goes on
    missing = tmp_path / "gone"
    lines: list[str] = []
    from pipeline.executor import Executor

    summary = Executor(store, no_load_modules(monkeypatch, f"evaluate:{missing}"), cycle["home"], progress=False,
                       echo=lines.append).run({"name": "fault/good"})
    assert summary.results_written == 0 and not summary.failures
    said = [line for line in lines if line.startswith("WARNING")]
    assert len(said) == 1 and f"evaluate metric '{missing}' cannot be loaded" in said[0], lines
    # one that fails while computing: a stored failure of the task naming the metric and the error, no result
    bad = f"evaluate:metric={metrics['f1']},average=bogus"
    try:
        summary = rescore(cycle, no_load_modules(monkeypatch, bad))
        assert summary.models_loaded == 0 and summary.results_written == 0 and len(summary.failures) == 1
        failure = store.failures({"_id": cycle["base"]["inference_id"]})
        assert len(failure) == 1 and failure[0]["reason"] == summary.failures[0]["reason"]
        assert failure[0]["reason"].startswith(f"evaluate metric '{metrics['f1']}' (f1) failed on "
                                         f"{cycle['base']['overall']['n']} samples: ValueError")
        assert "unknown average 'bogus'" in failure[0]["reason"] and failure[0]["traceback"]
        assert not list(store.iter_results({"processor_params.average": "bogus"}))
    finally:  # the failure would hold back the other tests' re-scoring of this task
        store.db.failures.delete_many({})


CHILD = textwrap.dedent('''
    """Re-score the cycle's stored predictions with evaluate:<name> from the Hub stand-in; then load the same
    metric with evaluate itself and compute it on the stored predictions; then a metric the Hub does not have."""
    import json
    import sys

    from core.store import Store
    from modules.hf import HFTextClassification
    from pipeline.executor import Executor
    from tasks.classification import TEXT_CLASSIFICATION

    uri, db, home, name, inference_id = sys.argv[1:6]
    store = Store(uri, db)
    module = HFTextClassification(dataset="tinysent", processors=(f"evaluate:{name}",))

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    module.load = refuse
    summary = Executor(store, [module], home, progress=False, echo=lambda s: None).run({"name": "fault/good"})
    import evaluate

    preds = TEXT_CLASSIFICATION.decode(list(store.iter_predictions(inference_id)))
    direct = evaluate.load(name).compute(predictions=preds.y_pred.tolist(), references=preds.y_true.tolist())
    from processors.evaluate_metric import MetricError, load_metric

    try:
        load_metric("nosuchmetric")
        missing = None
    except MetricError as exc:
        missing = str(exc)
    print(json.dumps({"counts": summary.counts(), "failures": [f["reason"] for f in summary.failures],
                      "direct": direct, "missing": missing}))
''')


def test_hub_metric_through_the_stand_in(cycle, tmp_path):
    import evaluate

    root = tmp_path / "hub"
    served = write_metric(root / "spaces" / "evaluate-metric", "accuracy", ACCURACY) / "accuracy.py"
    base = cycle["base"]
    with HubServer(root) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "0",
               "HF_UPDATE_DOWNLOAD_COUNTS": "0", "PYTHONPATH": str(REPO)}
        proc = run_python(CHILD, [cycle["uri"], cycle["db"], str(cycle["home"]), "accuracy", base["inference_id"]],
                          env=env, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        requests = [(r.method, r.path, r.status) for r in hub.requests]
        with urllib.request.urlopen(f"{hub.url}/api/models") as answer:
            assert json.load(answer) == []  # ROOT/spaces holds Spaces, never models
    assert child["failures"] == []
    assert child["counts"]["models_loaded"] == 0 and child["counts"]["forward_samples"] == 0
    assert child["counts"]["results_written"] == 1
    # evaluate asks for the script at its own version's tag, then at main (HEAD for the ETag, then GET)
    url = "/spaces/evaluate-metric/accuracy/resolve/{}/accuracy.py"
    assert ("HEAD", url.format(f"v{evaluate.__version__}"), 404) in requests
    assert ("HEAD", url.format("main"), 200) in requests and ("GET", url.format("main"), 200) in requests
    stored = list(cycle["store"].iter_results({"processor": "evaluate", "processor_params.metric": "accuracy"}))
    assert len(stored) == 1
    r = stored[0]
    assert r["processor_params"] == {"metric": "accuracy", "name": "accuracy", "script_sha256": sha256(served)}
    assert r["metric"]["path"] == "hub:evaluate-metric/accuracy" and r["metric"]["script_sha256"] == sha256(served)
    assert not math.isnan(r["overall"]["accuracy"])
    assert r["overall"]["accuracy"] == child["direct"]["accuracy"] == base["overall"]["accuracy"]
    y_true, y_pred = stored_predictions(cycle)
    assert r["overall"]["accuracy"] == accuracy_score(y_true, y_pred)
    # a metric the Hub does not have: a clear error naming it (evaluate tried each kind of evaluate module)
    assert child["missing"].startswith("evaluate metric 'nosuchmetric' cannot be loaded: FileNotFoundError")
    assert "doesn't exist on the Hugging Face Hub" in child["missing"]
    for kind in ("metric", "comparison", "measurement"):
        assert ("HEAD", f"/spaces/evaluate-{kind}/nosuchmetric/resolve/v{evaluate.__version__}/nosuchmetric.py", 401) in requests
