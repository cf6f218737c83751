"""``zooeval fiftyone``: the FiftyOne dataset built from a result's stored predictions (tests/web_store.py's
tiny ResNet on webdigits) on the test session's mongod, FiftyOne's own evaluation equal to zooeval's stored
result (accuracy, macro and per-class precision/recall/F1, the confusion matrix), and one launch of the App."""
from __future__ import annotations

import time
import urllib.request
import uuid

import pytest

from core.store import Store
from service.mongo import free_port
from service.web.fiftyone_app import FiftyOneError, build_dataset
from tests.web_store import DATASET, DIGITS, copy_database, session_web_store


@pytest.fixture(scope="module")
def store(tmp_path_factory, mongo_uri):
    built = session_web_store(tmp_path_factory, mongo_uri)
    name = "zfo_" + uuid.uuid4().hex[:10]
    copy_database(mongo_uri, built["db"], name)
    s = Store(mongo_uri, name)
    yield s, built["home"]
    s.client.drop_database(name)
    s.close()


@pytest.fixture(scope="module")
def built_dataset(store, fo):
    s, home = store
    return build_dataset(s, home, "web/digits", DIGITS, "greyscale", log=lambda *a: None)


def test_fiftyone_evaluation_equals_the_stored_result(built_dataset, store, fo):
    fo_dataset, result, evaluation = built_dataset
    s, _ = store
    assert result == s.latest_results({"model_key": "local/web/digits", "dataset": DIGITS, "variant": "greyscale"})[0]
    assert len(fo_dataset) == result["overall"]["n"] == 40
    assert fo_dataset.info["zooeval_result"] == result["_id"]
    overall, per_class = result["overall"], result["per_class"]
    assert evaluation.metrics()["accuracy"] == pytest.approx(overall["accuracy"], abs=1e-12)
    macro = evaluation.metrics(average="macro")
    for fo_key, key in (("precision", "macro_precision"), ("recall", "macro_recall"), ("fscore", "macro_f1")):
        assert macro[fo_key] == pytest.approx(overall[key], abs=1e-12), key
    report = evaluation.report()
    for label, stored in per_class.items():
        for metric, fo_metric in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert report[label][fo_metric] == pytest.approx(stored[metric], abs=1e-12), (label, metric)
    classes = result["confusion_matrix"]["labels"]
    assert evaluation.confusion_matrix(classes=classes).tolist() == result["confusion_matrix"]["matrix"]
    # per-sample correctness, as the App shows it, adds up to the stored count of correct predictions
    assert fo_dataset.count_values("zooeval")[True] == round(overall["accuracy"] * overall["n"])
    assert fo_dataset.first().filepath.endswith(".png")


def test_fiftyone_refuses_what_it_cannot_show(store, fo):
    s, home = store
    with pytest.raises(FiftyOneError, match="the FiftyOne App shows images"):
        build_dataset(s, home, "web/good", DATASET, log=lambda *a: None)
    with pytest.raises(FiftyOneError, match="no classification or detection result on webdigits .fog-5.; it has: webdigits/test"):
        build_dataset(s, home, "web/digits", DIGITS, "fog-5", log=lambda *a: None)
    with pytest.raises(FiftyOneError, match="no model 'web/none'"):
        build_dataset(s, home, "web/none", DIGITS, log=lambda *a: None)


def test_the_fiftyone_app_launches_on_the_dataset(built_dataset, fo):
    from service.web.fiftyone_app import launch

    port = free_port()
    session = launch(built_dataset[0], port=port, wait=False)
    try:
        deadline, page = time.monotonic() + 90, ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode("utf-8", errors="replace")
                    break
            except OSError:
                time.sleep(0.5)
        assert "FiftyOne" in page, page[:500]
        assert session.dataset.name == built_dataset[0].name
    finally:
        session.close()
