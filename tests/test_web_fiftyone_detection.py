"""``zooeval fiftyone`` for object detection: the FiftyOne dataset built from a detection result's stored
predictions (the real pretrained MTCNN on the faces set, through the real Executor, on the original and the
mirrored images), its boxes where the evaluated images have them, and FiftyOne's own COCO-style evaluation equal
to zooeval's stored AP (pycocotools' numbers)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from core.coco import CocoDataset
from core.store import Store
from demo.detection_data import build_faces_dataset
from modules.detection import mtcnn_model_doc
from scraper.datasets import register_datasets
from service.web.fiftyone_app import FiftyOneError, build_dataset
from tasks.detection import DETECTION
from tests.test_detection_pipeline import MTCNN_KEY, executor, mtcnn_modules, variant_dataset

N_COMPOSED = 6
MTCNN_NAME = "facenet-pytorch/mtcnn"
VARIANTS = ("original", "mirrored")


@pytest.fixture(autouse=True)
def one_thread(torch_one_thread):
    """One intra-op torch thread for every test here (tests/conftest.py)."""


@pytest.fixture(scope="module")
def det_store(tmp_path_factory, mongo_uri):
    import uuid

    home = tmp_path_factory.mktemp("fo-det-home")
    root = build_faces_dataset(home / "datasets" / "faces", seed=1, n_composed=N_COMPOSED)
    store = Store(mongo_uri, "zfod_" + uuid.uuid4().hex[:10])
    assert register_datasets(store, root.parent, log=pytest.fail) == ["faces"]
    store.upsert_models([mtcnn_model_doc()])
    summary = executor(store, mtcnn_modules(store, VARIANTS), home).run()
    assert summary.failures == [] and summary.inferences == len(VARIANTS)
    yield store, home, CocoDataset.open(root)
    store.client.drop_database(store.db.name)
    store.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_fiftyone_detection_evaluation_equals_the_stored_result(det_store, fo, variant):
    store, home, ds = det_store
    fo_dataset, result, evaluation = build_dataset(store, home, MTCNN_NAME, "faces", variant, log=lambda *a: None)
    assert result["processor"] == "detection" and result["variant"] == variant
    assert len(fo_dataset) == result["overall"]["n_images"] == N_COMPOSED + 1 and result["overall"]["AP"] > 0.1
    # FiftyOne's COCO-style mAP (its own matching and 101-point interpolation) equals pycocotools' AP as stored
    assert evaluation.mAP() == pytest.approx(result["overall"]["AP"], abs=1e-9)
    assert evaluation.mAP(classes=["face"]) == pytest.approx(result["per_class"]["face"]["AP"], abs=1e-9)
    # every stored detection and ground-truth box is there, relative to its (variant) image
    truth = ds if variant == "original" else variant_dataset(home, ds, store.datasets()["faces"]["revision"], variant)
    stored = DETECTION.decode(list(store.iter_predictions(result["inference_id"])))
    assert fo_dataset.count("predictions.detections") == sum(len(p["scores"]) for p in stored) > 0
    assert fo_dataset.count("ground_truth.detections") == sum(len(a) for a in truth.annotations("test").values())
    first = stored[0]
    image = next(img for img in truth.images("test") if img["id"] == first["image_id"])
    sample = fo_dataset.match({"zooeval_id": str(first["image_id"])}).first()
    assert sample.filepath == str(truth.image_path(image, "test"))
    best = max(sample.predictions.detections, key=lambda d: d.confidence)
    k = int(first["scores"].argmax())
    x, y, w, h = first["boxes"][k]
    assert best.bounding_box == pytest.approx([x / image["width"], y / image["height"], w / image["width"],
                                               h / image["height"]], abs=1e-12)
    assert best.confidence == pytest.approx(float(first["scores"][k]), abs=1e-12)
    # the App's per-box outcome: true positives at IoU 0.5 add up to the stored count
    assert fo_dataset.sum("zooeval_tp") == result["overall"]["tp"]
    assert fo_dataset.sum("zooeval_fn") == result["overall"]["fn"]


def test_fiftyone_detection_refuses_a_changed_dataset(det_store, fo):
    store, home, _ = det_store
    doc = store.datasets()["faces"]
    store.upsert_dataset({**doc, "revision": "changed-since"})
    try:
        with pytest.raises(FiftyOneError, match="faces changed since this result"):
            build_dataset(store, home, MTCNN_NAME, "faces", "mirrored", log=lambda *a: None)
    finally:
        store.upsert_dataset(doc)


def test_the_fiftyone_command_builds_a_detection_dataset(det_store, fo, mongo_uri):
    from service.cli import main

    store, home, _ = det_store
    result = CliRunner().invoke(main, ["--home", str(home), "--mongo-uri", mongo_uri, "--db", store.db.name, "fiftyone",
                                       MTCNN_KEY, "--dataset", "faces", "--no-launch"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "mAP" in result.output and "(zooeval: AP" in result.output
