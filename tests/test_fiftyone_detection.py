"""A FiftyOne zoo object detector evaluated end to end through the Executor, offline, with a real detector.

No COCO detection weights are reachable offline, so the detector is facenet-pytorch's real pretrained MTCNN
(the weights inside the wheel) registered as a FiftyOne zoo model by a custom manifest
(``FIFTYONE_MODEL_ZOO_MANIFEST_PATHS``): a ``fiftyone.utils.torch.TorchImageModel`` whose entrypoint is
tests.fiftyone_mtcnn.mtcnn_detector (torchvision-style outputs) and whose outputs go through FiftyOne's own
``DetectorOutputProcessor``; its weight file sits in ``FIFTYONE_MODEL_ZOO_DIR`` under the entry's
``base_filename``, as a downloaded zoo model's would. The FiftyOne scraper stores it in the real mongod, the
catalogue builds ``fiftyone-object-detection/faces`` for the faces set (real photos, real LFW faces), and the
Executor runs it on the original and mirrored images next to zooeval's direct MTCNN module.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.coco import CocoDataset
from core.store import Store
from demo.detection_data import build_faces_dataset
from modules.detection import mtcnn_model_doc
from pipeline.catalog import build_modules
from processors.detection import COCO_STATS
from scraper.datasets import register_datasets
from tasks.detection import DETECTION
from tests.test_detection_pipeline import coco_eval, executor, variant_dataset

ZOO_NAME = "zooeval-test-mtcnn-faces"
ZOO_KEY = f"fiftyone/{ZOO_NAME}"
MTCNN_KEY = "pypi/facenet-pytorch/mtcnn"
WEIGHTS = "zooeval-test-mtcnn-faces.pt"
VARIANTS = ("original", "mirrored")
N_COMPOSED = 12  # 13 images: the astronaut and 12 composed photos (as tests/test_detection_pipeline.py)


@pytest.fixture(autouse=True)
def one_thread(torch_one_thread):
    """One intra-op torch thread for every test here (tests/conftest.py)."""


def manifest_entry() -> dict:
    """A FiftyOne zoo manifest entry in the format of fiftyone/zoo/models/manifest-torch.json."""
    return {
        "base_name": ZOO_NAME,
        "base_filename": WEIGHTS,
        "version": None,
        "description": "facenet-pytorch's pretrained MTCNN face detector as a FiftyOne TorchImageModel (zooeval tests)",
        "source": "https://github.com/timesler/facenet-pytorch",
        "author": "Kaipeng Zhang, et al.",
        "license": "MIT",
        "size_bytes": 0,
        "manager": {"type": "fiftyone.core.models.ModelManager",
                    "config": {"url": f"https://example.org/zooeval-test/{WEIGHTS}"}},  # never used: the file is in place
        "default_deployment_config_dict": {
            # TorchvisionImageModel: a TorchImageModel whose config is a zoo model config (HasZooModel), as a
            # zoo entry with a weight file (a manager) needs; the entrypoint may be any function
            "type": "fiftyone.zoo.models.torch.TorchvisionImageModel",
            "config": {
                "entrypoint_fcn": "tests.fiftyone_mtcnn.mtcnn_detector",
                "entrypoint_args": {"weights_file": WEIGHTS, "min_face_size": 40, "thresholds": [0.6, 0.7, 0.7]},
                "output_processor_cls": "fiftyone.utils.torch.DetectorOutputProcessor",
                "classes": ["face"],
                "confidence_thresh": 0.3,  # as FiftyOne's own detectors; zooeval's module overrides it (0.001)
            },
        },
        "requirements": {"packages": ["torch", "facenet-pytorch"], "cpu": {"support": True}, "gpu": {"support": False}},
        "tags": ["detection", "torch", "face", "mtcnn"],
        # facenet-pytorch's MTCNN: trained on WIDER FACE and CelebA (as modules.detection.mtcnn_model_doc)
        "training_data": [{"name": "WIDER FACE", "url": "http://shuoyang1213.me/WIDERFACE/"},
                          {"name": "CelebA", "url": "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"}],
        "date_added": "2024-01-02 03:04:05",
    }


@pytest.fixture
def fo_det_env(tmp_path, mongo_uri, db_name, monkeypatch):
    from tests.fiftyone_mtcnn import write_weights

    for key in ("FIFTYONE_MODEL_ZOO_DIR", "TORCH_HOME", "FIFTYONE_MODEL_ZOO_MANIFEST_PATHS",
                "FIFTYONE_MODEL_ZOO_MANIFEST_CACHE_ENABLED", "FIFTYONE_DATABASE_URI"):
        monkeypatch.setenv(key, "placeholder")  # records the original value (or its absence) for the undo
    monkeypatch.delenv("ZOOEVAL_FIFTYONE_DOWNLOAD", raising=False)
    monkeypatch.setenv("ZOOEVAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FIFTYONE_DATABASE_URI", mongo_uri)
    monkeypatch.setenv("FIFTYONE_MODEL_ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FIFTYONE_MODEL_ZOO_MANIFEST_CACHE_ENABLED", "true")
    manifest = tmp_path / "manifest-zooeval-test.json"
    manifest.write_text(json.dumps({"models": [manifest_entry()]}))
    monkeypatch.setenv("FIFTYONE_MODEL_ZOO_MANIFEST_PATHS", str(manifest))
    write_weights(tmp_path / "zoo" / WEIGHTS)
    datasets = tmp_path / "datasets"
    build_faces_dataset(datasets / "faces", seed=0, n_composed=N_COMPOSED)
    store = Store(mongo_uri, db_name)
    assert register_datasets(store, datasets, log=pytest.fail) == ["faces"]
    yield {"store": store, "home": tmp_path / "home", "dataset": CocoDataset.open(datasets / "faces")}
    store.close()


def test_fiftyone_zoo_detector_through_the_executor(fo_det_env, capsys):
    from scraper.fiftyone import scrape_fiftyone

    store, home, ds = fo_det_env["store"], fo_det_env["home"], fo_det_env["dataset"]
    counts = scrape_fiftyone(store, log=lambda *_: None)
    assert counts["unreadable"] == 0 and counts["new"] >= 337
    doc = store.get_model(ZOO_KEY)
    assert doc["task"] == "object-detection" and doc["status"] == "active"
    assert doc["datasets"] == ["wider-face", "celeba"] and doc["compatible_datasets"] == ["faces"]
    assert doc["config"]["output_processor_cls"] == "fiftyone.utils.torch.DetectorOutputProcessor"
    store.upsert_models([mtcnn_model_doc()])

    # the catalogue's modules for the faces set; the FiftyOne one accepts the zoo MTCNN (trained on CelebA,
    # which the faces set declares compatible) and no built-in zoo model (none is trained on a face set)
    docs = store.datasets()
    mods = {m.name: m for m in build_modules(docs)}
    fo_mod, direct = mods["fiftyone-object-detection/faces"], mods["mtcnn-face-detection/faces"]
    fo_models = [m for m in store.db.models.find({"source": "fiftyone", "status": "active"}) if fo_mod.accepts(m, docs)]
    assert [m["_id"] for m in fo_models] == [ZOO_KEY]
    assert fo_mod.params() == {k: direct.params()[k] for k in ("score_threshold", "nms_iou", "max_detections")}
    for m in (fo_mod, direct):
        m.variants = VARIANTS

    summary = executor(store, [fo_mod, direct], home).run()
    assert summary.failures == [], [(f["model_name"], f["variant"], f["error_class"], f["reason"]) for f in summary.failures]
    assert summary.models_loaded == 2 and summary.inferences == 2 * len(VARIANTS)

    results = {(r["model_key"], r["variant"]): r for r in store.iter_results({"processor": "detection"})}
    assert set(results) == {(k, v) for k in (ZOO_KEY, MTCNN_KEY) for v in VARIANTS}
    revision = docs["faces"]["revision"]
    stats: dict[str, dict[str, dict[str, float]]] = {}
    preds: dict[tuple[str, str], list[dict]] = {}
    for (key, variant), r in results.items():
        if key == ZOO_KEY:
            assert r["module"] == "fiftyone-object-detection/faces" and r["source"] == "fiftyone"
            assert r["model_revision"] == doc["revision"]
        assert (r["dataset"], r["split"]) == ("faces", "test")
        assert r["module_params"]["score_threshold"] == 0.001 and r["module_params"]["nms_iou"] == 0.65
        assert r["module_params"]["max_detections"] == 100
        assert [(p["model_label"], p["dataset_class"]) for p in r["label_mapping"]["pairs"]] == [("face", "face")]
        assert r["overall"]["n_images"] == r["runtime"]["n"] == N_COMPOSED + 1
        # every stored number equals pycocotools on the stored predictions and the variant's ground truth
        predictions = DETECTION.decode(list(store.iter_predictions(r["inference_id"])))
        assert sum(len(p["scores"]) for p in predictions) == r["runtime"]["n_detections"] > 0
        gt = ds if variant == "original" else variant_dataset(home, ds, revision, variant)
        for (name, *_), value in zip(COCO_STATS, coco_eval(gt.instances("test"), predictions)):
            assert r["overall"][name] == pytest.approx(value, abs=1e-9), (key, variant, name)
            assert r["per_class"]["face"][name] == pytest.approx(value, abs=1e-9), (key, variant, name)
        stats.setdefault(key, {})[variant] = {n: r["overall"][n] for n in ("AP", "AP50", "AR100")}
        preds[key, variant] = predictions

    with capsys.disabled():
        print("\nAP / AP50 / AR100 on faces:", {k: {v: {n: round(x, 4) for n, x in s.items()} for v, s in vs.items()}
                                                for k, vs in stats.items()})
    # a real detector: it finds the faces, mirrored faces too
    assert stats[ZOO_KEY]["original"]["AP50"] > 0.8
    assert abs(stats[ZOO_KEY]["mirrored"]["AP50"] - stats[ZOO_KEY]["original"]["AP50"]) < 0.1
    # FiftyOne's default transforms (ToPILImage + ToTensor, no resize) give MTCNN the very uint8 pixels
    # zooeval's MTCNN module gives it, so the detections are the same: scores exactly, boxes up to the float
    # round trip through FiftyOne's relative [x, y, w, h] (well under a thousandth of a pixel)
    for variant in VARIANTS:
        a, b = preds[ZOO_KEY, variant], preds[MTCNN_KEY, variant]
        assert [p["image_id"] for p in a] == [p["image_id"] for p in b]
        for pa, pb in zip(a, b):
            np.testing.assert_allclose(pa["scores"], pb["scores"], rtol=0, atol=1e-6)
            np.testing.assert_allclose(pa["boxes"], pb["boxes"], rtol=0, atol=1e-3)
            assert np.array_equal(pa["labels"], pb["labels"])
        for name in ("AP", "AP50", "AR100"):
            assert stats[ZOO_KEY][variant][name] == pytest.approx(stats[MTCNN_KEY][variant][name], abs=1e-6), (variant, name)


def test_fiftyone_detector_module_batches(fo_det_env):
    """The module itself: FiftyOne's confidence threshold is replaced by zooeval's, and a batch of equal-size
    images goes through FiftyOne as one stacked tensor (the Executor run above has images of different sizes,
    which the module passes one at a time) with the same detections as the direct MTCNN module."""
    from PIL import ImageOps

    from modules.detection import FiftyOneDetection, MTCNNFaceDetection
    from scraper.fiftyone import scrape_fiftyone

    store, ds = fo_det_env["store"], fo_det_env["dataset"]
    scrape_fiftyone(store, log=lambda *_: None)
    module, direct = FiftyOneDetection("faces"), MTCNNFaceDetection("faces")
    loaded = module.load(store.get_model(ZOO_KEY), "cpu")
    assert loaded.model.config.confidence_thresh == module.score_threshold == 0.001  # not the manifest's 0.3
    assert loaded.model.ragged_batches and loaded.id2label == {0: "face"}
    astronaut = ds.load_image(next(img for img in ds.images("test") if img["file_name"].endswith("astronaut.png")))
    assert astronaut.size == (512, 512)
    images = [astronaut, ImageOps.mirror(astronaut)]
    with torch.inference_mode():
        got = module.forward(loaded, module.prepare(loaded, images))
        loaded_direct = direct.load(mtcnn_model_doc(), "cpu")
        want = direct.forward(loaded_direct, direct.prepare(loaded_direct, images))
    assert [len(g["scores"]) for g in got] == [len(w["scores"]) for w in want] and len(got[0]["scores"]) >= 1
    for g, w in zip(got, want):
        torch.testing.assert_close(g["boxes"], w["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(g["scores"], w["scores"], rtol=0, atol=1e-6)
    # the mirrored face's best box is about the original one reflected (MTCNN is not exactly mirror-symmetric:
    # a few pixels apart, IoU about 0.9)
    from torchvision.ops import box_iou

    x1, y1, x2, y2 = got[0]["boxes"][0].tolist()
    assert box_iou(got[1]["boxes"][:1], torch.tensor([[512 - x2, y1, 512 - x1, y2]])).item() > 0.8
