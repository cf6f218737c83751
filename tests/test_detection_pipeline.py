"""Object detection through the real Executor (issue 5): the faces set (real photos, real LFW faces), the
real pretrained MTCNN of the facenet-pytorch wheel, the real embedded mongod. No mocks.

Torch runs with one intra-op thread (see tests/test_detection_data.py: MTCNN's many small ops run much
slower with two threads on 2 busy cores).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.coco import CocoDataset
from core.store import Store
from demo.detection_data import build_faces_dataset, build_shapes_dataset
from modules.detection import MTCNNFaceDetection, mtcnn_model_doc
from pipeline.catalog import build_modules
from pipeline.executor import Executor
from pipeline.planner import Planner
from processors.base import PROCESSORS
from processors.detection import COCO_STATS, DetectionProcessor
from scraper.datasets import register_datasets
from tasks.detection import DETECTION
from tests.test_detection_data import coco_eval

MTCNN_KEY = "pypi/facenet-pytorch/mtcnn"
VARIANTS = ("original", "mirrored", "flipped", "rotated90", "greyscale", "gaussian_noise-3")
N_COMPOSED = 12  # 13 images: the astronaut and 12 composed photos


@pytest.fixture(autouse=True)
def one_thread(torch_one_thread):
    """One intra-op torch thread for every test here (tests/conftest.py)."""


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory):
    return build_faces_dataset(tmp_path_factory.mktemp("det-home") / "datasets" / "faces", seed=0, n_composed=N_COMPOSED)


@pytest.fixture
def det_env(faces_root, mongo_uri, db_name, tmp_path):
    store = Store(mongo_uri, db_name)
    assert register_datasets(store, faces_root.parent, log=pytest.fail) == ["faces"]
    store.upsert_models([mtcnn_model_doc()])
    yield {"store": store, "home": tmp_path / "home", "dataset": CocoDataset.open(faces_root)}
    store.close()


def mtcnn_modules(store: Store, variants=VARIANTS) -> list:
    """The catalogue's MTCNN module for the faces set (it is declared in the faces dataset.json), with the
    variants of the test (the catalogue gives original + the set's supported variants; a corruption is
    added here)."""
    mods = [m for m in build_modules(store.datasets()) if m.name == "mtcnn-face-detection/faces"]
    assert len(mods) == 1
    mods[0].variants = tuple(variants)
    return mods


def executor(store: Store, mods: list, home, **kwargs) -> Executor:
    return Executor(store, mods, home, batch_size=8, progress=False, echo=lambda s: None, **kwargs)


def variant_dataset(home, dataset: CocoDataset, revision: str, variant: str) -> CocoDataset:
    from perturbations import get_perturbation
    from perturbations.cache import coco_variant_revision, is_complete, variant_path

    path = variant_path(home / "variants", dataset, coco_variant_revision(revision), get_perturbation(variant), 0)
    assert is_complete(path), f"variant {variant} is not cached at {path}"
    return CocoDataset.open(path)


# ---------------------------------------------------------------------------------------------- registration
def test_coco_folders_register_with_what_the_executor_needs(tmp_path, mongo_uri, db_name, faces_root):
    import shutil

    store = Store(mongo_uri, db_name)
    root = tmp_path / "datasets"
    shutil.copytree(faces_root, root / "faces")
    build_shapes_dataset(root / "shapes", n_images=4, seed=0)
    assert register_datasets(store, root, log=pytest.fail) == ["faces", "shapes"]
    docs = store.datasets()
    faces = docs["faces"]
    assert faces["task"] == "object-detection" and faces["format"] == "coco" and faces["datatype"] == "image"
    assert faces["classes"] == [{"id": 0, "label": "face", "extra": {"supercategory": "person", "category_id": 1}}]
    assert faces["modules"] == ["mtcnn-face-detection"]
    assert faces["splits"][0]["total"] == N_COMPOSED + 1
    assert [c["extra"]["category_id"] for c in docs["shapes"]["classes"]] == [1, 2, 3]
    # the catalogue: detection modules for detection sets (MTCNN only where declared), nothing else
    names = {m.name for m in build_modules(docs)}
    assert names == {"hf-object-detection/faces", "torchvision-object-detection/faces", "fiftyone-object-detection/faces",
                     "mtcnn-face-detection/faces", "hf-object-detection/shapes", "torchvision-object-detection/shapes",
                     "fiftyone-object-detection/shapes"}
    assert all(m.processors == ("detection",) for m in build_modules(docs))
    store.close()


# ---------------------------------------------------------------------------------------------- the pipeline
def test_mtcnn_through_the_executor(det_env, mongo_uri, db_name, monkeypatch):
    store, home, ds = det_env["store"], det_env["home"], det_env["dataset"]
    revision = store.datasets()["faces"]["revision"]
    summary = executor(store, mtcnn_modules(store), home).run()
    assert summary.failures == [], summary.failures
    assert summary.models_loaded == 1 and summary.inferences == len(VARIANTS)
    assert summary.forward_samples == len(VARIANTS) * (N_COMPOSED + 1)
    results = {r["variant"]: r for r in store.iter_results({"model_key": MTCNN_KEY, "processor": "detection"})}
    assert set(results) == set(VARIANTS)

    stats = {}
    for variant, r in results.items():
        # the fixed detection conditions reach the stored result and inference record
        assert r["module_params"]["score_threshold"] == 0.001 and r["module_params"]["nms_iou"] == 0.65
        assert r["module_params"]["max_detections"] == 100
        inference = store.get_inference(r["inference_id"])
        assert inference["module_params"] == r["module_params"]
        rt = r["runtime"]
        assert rt["n"] == r["overall"]["n_images"] == N_COMPOSED + 1 and rt["instances_per_second"] > 0
        assert rt["load_s"] > 0 and rt["warmup_s"] > 0 and rt["batch_size"] == 8
        assert r["env"]["device"] == "cpu" and r["label_mapping"]["pairs"][0]["dataset_class"] == "face"
        assert set(r["per_class"]) == {"face"} and set(r["per_supercategory"]) == {"person"}
        # every stored number equals pycocotools on the stored predictions and the variant's ground truth
        predictions = DETECTION.decode(list(store.iter_predictions(r["inference_id"])))
        assert sum(len(p["scores"]) for p in predictions) == rt["n_detections"]
        gt = ds if variant == "original" else variant_dataset(home, ds, revision, variant)
        expected = coco_eval(gt.instances("test"), predictions)
        for (name, *_), value in zip(COCO_STATS, expected):
            assert r["overall"][name] == pytest.approx(value, abs=1e-9), (variant, name)
            assert r["per_class"]["face"][name] == pytest.approx(value, abs=1e-9), (variant, name)
        stats[variant] = {"AP": r["overall"]["AP"], "AP50": r["overall"]["AP50"]}
    print("MTCNN on faces:", {v: {k: round(x, 3) for k, x in s.items()} for v, s in stats.items()})

    # a real detector finds the faces; mirrored faces are still faces, so mirrored scores about the same
    # (a wrong box transform would collapse it); greyscale as well
    assert stats["original"]["AP50"] > 0.8
    assert abs(stats["mirrored"]["AP50"] - stats["original"]["AP50"]) < 0.1
    assert stats["greyscale"]["AP50"] > 0.7
    # the moved ground truth: mirrored boxes are the original ones reflected
    mirrored = variant_dataset(home, ds, revision, "mirrored")
    for img in ds.images("test"):
        a = np.array([x["bbox"] for x in ds.annotations("test")[img["id"]]]).reshape(-1, 4)
        b = np.array([x["bbox"] for x in mirrored.annotations("test")[img["id"]]]).reshape(-1, 4)
        assert np.allclose(b[:, 0], img["width"] - a[:, 0] - a[:, 2]) and np.allclose(b[:, 1:], a[:, 1:])
    rotated = {img["id"]: img for img in variant_dataset(home, ds, revision, "rotated90").images("test")}
    assert all((rotated[i["id"]]["width"], rotated[i["id"]]["height"]) == (i["height"], i["width"]) for i in ds.images("test"))

    # each variant was built once into the cache (atomically: no temporary folder is left)
    markers = {v: (variant_dataset(home, ds, revision, v).root / "_COMPLETE").stat().st_mtime_ns for v in VARIANTS[1:]}
    assert not list((home / "variants" / "faces").glob(".*.tmp-*"))

    # a second run: nothing to do, no model loaded
    mods = mtcnn_modules(store)
    for m in mods:
        m.load = lambda *a, **k: pytest.fail("a model was loaded")
    again = executor(store, mods, home).run()
    assert again.plan.tasks == [] and again.models_loaded == 0 and again.inferences == 0

    # a new processor is computed from the stored detections with no model loaded (and the cached
    # variants, no perturbation rebuilt)
    class DetectionAgain(DetectionProcessor):
        name = "detection_again_test"

    PROCESSORS.register(DetectionAgain.name, DetectionAgain)
    try:
        for m in mods:
            m.processors = (*m.processors, DetectionAgain.name)
        summary = executor(store, mods, home).run()
        assert summary.failures == []
        assert summary.models_loaded == 0 and summary.forward_samples == 0 and summary.inferences == 0
        assert summary.rescored == len(VARIANTS) and summary.results_written == len(VARIANTS)
        new = {r["variant"]: r for r in store.iter_results({"processor": DetectionAgain.name})}
        assert set(new) == set(VARIANTS)
        for variant, r in new.items():
            assert r["overall"] == results[variant]["overall"] and r["per_class"] == results[variant]["per_class"]
            assert r["module_params"] == results[variant]["module_params"]
    finally:
        PROCESSORS.unregister(DetectionAgain.name)

    # the cached variants were reused, not rebuilt
    assert {v: (variant_dataset(home, ds, revision, v).root / "_COMPLETE").stat().st_mtime_ns for v in VARIANTS[1:]} == markers

    # the CLI shows and exports them
    from click.testing import CliRunner

    from service.cli import main

    monkeypatch.setenv("ZOOEVAL_HOME", str(home))
    monkeypatch.setenv("ZOOEVAL_MONGO_URI", mongo_uri)
    monkeypatch.setenv("ZOOEVAL_DB", db_name)
    out = CliRunner().invoke(main, ["results", MTCNN_KEY, "--per-class"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    print(out.output)
    assert "score_threshold=0.001" in out.output and "nms_iou=0.65" in out.output
    assert "AP50" in out.output and "AR100" in out.output and "[person]" in out.output
    line = next(x for x in out.output.splitlines() if x.startswith("faces") and " original " in x and " detection " in x)
    assert f"{results['original']['overall']['AP50']:.4f}" in line
    out = CliRunner().invoke(main, ["export", "--format", "jsonl"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    import json

    rows = [json.loads(x) for x in out.output.splitlines() if x.startswith("{")]
    ap = [r for r in rows if r["variant"] == "mirrored" and r["processor"] == "detection" and r["metric"] == "AP"]
    assert {r["class"]: r["value"] for r in ap} == pytest.approx(
        {"overall": stats["mirrored"]["AP"], "face": stats["mirrored"]["AP"], "supercategory:person": stats["mirrored"]["AP"]})
    assert any(r["metric"] == "param:nms_iou" and r["value"] == 0.65 for r in rows)


def test_detection_in_an_isolated_child(det_env):
    """--isolate: the tasks are pickled to a fork-server child that loads MTCNN there."""
    store, home = det_env["store"], det_env["home"]
    summary = executor(store, mtcnn_modules(store, ("original", "mirrored")), home, isolate=True).run()
    assert summary.failures == [], summary.failures
    assert summary.models_loaded == 1 and summary.inferences == 2
    results = {r["variant"]: r for r in store.iter_results({"model_key": MTCNN_KEY})}
    assert set(results) == {"original", "mirrored"}
    assert results["original"]["overall"]["AP50"] > 0.8
    assert results["original"]["module_params"]["nms_iou"] == 0.65


def test_unmappable_labels_are_a_recorded_failure(det_env):
    store, home = det_env["store"], det_env["home"]
    doc = mtcnn_model_doc()
    doc.update(_id="pypi/facenet-pytorch/mtcnn-cats", name="facenet-pytorch/mtcnn-cats")
    store.upsert_models([doc])

    class CatDetector(MTCNNFaceDetection):  # the same network, but its one label is "cat"
        def load(self, model, device):
            loaded = super().load(model, device)
            loaded.id2label = {0: "cat"}
            return loaded

    module = CatDetector("faces", variants=("original",))
    summary = executor(store, [module], home).run({"_id": doc["_id"]})
    assert summary.inferences == 0 and len(summary.failures) == 1
    failure = store.db.failures.find_one({"model_key": doc["_id"]})
    assert failure["error_class"] == "unknown_labels" and failure["details"]["unmapped_labels"] == ["cat"]
    assert store.count("results", {"model_key": doc["_id"]}) == 0 and store.count("inferences") == 0


def test_detections_are_stored_in_chunks_of_whole_images(mongo_uri, db_name, monkeypatch):
    """The detection task's stored form: whole images per chunk, at most DETECTION_CHUNK_DETECTIONS
    detections (unless one image has more), exact float64 round trip, images without detections kept."""
    import tasks.detection as detection

    monkeypatch.setattr(detection, "DETECTION_CHUNK_DETECTIONS", 4)
    monkeypatch.setattr(detection, "PREDICTION_CHUNK", 3)
    rng = np.random.default_rng(0)
    counts = [3, 0, 2, 5, 1, 0, 0, 0]
    predictions = [{"image_id": 10 + i, "boxes": rng.random((k, 4)) * 100, "scores": rng.random(k),
                    "labels": rng.integers(1, 4, k)} for i, k in enumerate(counts)]
    store = Store(mongo_uri, db_name)
    store.save_inference("inf-1", {"model_key": "m", "model_revision": "r", "module": "x", "dataset": "d", "split": "test",
                                   "variant": "original", "runtime": {}, "n_samples": len(counts)},
                         detection.DETECTION.encode(predictions))
    chunks = list(store.iter_predictions("inf-1"))
    assert [c["counts"] for c in chunks] == [[3, 0], [2], [5], [1, 0, 0], [0]]
    assert store.get_inference("inf-1")["n_chunks"] == 5
    back = detection.DETECTION.decode(list(store.iter_predictions("inf-1")))
    assert [p["image_id"] for p in back] == [p["image_id"] for p in predictions]
    for a, b in zip(predictions, back):
        assert np.array_equal(a["boxes"].reshape(-1, 4), b["boxes"]) and np.array_equal(a["scores"], b["scores"])
        assert np.array_equal(a["labels"], b["labels"]) and b["labels"].dtype == np.int64
    # stored again with fewer chunks (an earlier attempt stored more): the chunks beyond the new ones are gone
    store.save_inference("inf-1", store.get_inference("inf-1"), detection.DETECTION.encode(predictions[:2]))
    assert [c["counts"] for c in store.iter_predictions("inf-1")] == [[3, 0]]
    assert store.get_inference("inf-1")["n_chunks"] == 1
    store.close()


def test_box_arithmetic_version_is_part_of_detection_variant_identity(monkeypatch, tmp_path):
    """A change to perturbations.boxes (BOXES_VERSION bumped) gives detection variants new identities and a
    new cache folder, so moved boxes are never reused from an older transform; classification is untouched."""
    import perturbations.boxes as boxes
    from modules.hf import HFImageClassification
    from perturbations.cache import coco_variant_revision

    det = MTCNNFaceDetection(dataset="faces", variants=("original", "mirrored"))
    cls = HFImageClassification(dataset="digits", variants=("original", "mirrored"))
    ex = Planner(None, [], {})  # variant_identity needs no store
    before = (ex.variant_identity(det, "mirrored"), coco_variant_revision("rev"), ex.variant_identity(cls, "mirrored"))
    assert before[0]["boxes_version"] == boxes.BOXES_VERSION and "boxes_version" not in before[2]
    monkeypatch.setattr(boxes, "BOXES_VERSION", boxes.BOXES_VERSION + 1)
    after = (ex.variant_identity(det, "mirrored"), coco_variant_revision("rev"), ex.variant_identity(cls, "mirrored"))
    assert after[0] != before[0] and after[1] != before[1] and after[2] == before[2]
    assert ex.variant_identity(det, "original") == ex.variant_identity(cls, "original")


def test_hf_and_torchvision_detectors_through_the_catalogue_and_executor(tmp_path, mongo_uri, db_name):
    """The other detection modules on the same path: a tiny randomly initialised DETR (a Hugging Face repo
    scraped from a local folder) and a torchvision Faster R-CNN state dict, both declaring the shapes set,
    picked by the catalogue and run by the Executor on the original and a mirrored variant. Their accuracy
    is meaningless (no detection weights are reachable offline); what is checked is that every stored
    number equals pycocotools on the stored predictions, the label mapping, and that nothing failed."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    from scraper.local import scrape_local
    from tests.test_detection_data import _tiny_detr

    datasets = tmp_path / "datasets"
    build_shapes_dataset(datasets / "shapes", n_images=6, seed=1)
    repo = _tiny_detr(tmp_path / "zoo" / "test" / "tiny-detr", {0: "rectangle", 1: "ellipse", 2: "triangle"})
    (repo / "README.md").write_text("---\npipeline_tag: object-detection\ndatasets: [shapes]\nlicense: mit\n---\n")
    torch.manual_seed(0)
    net = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=4)
    torch.save(net.state_dict(), tmp_path / "frcnn.pth")
    store = Store(mongo_uri, db_name)
    assert register_datasets(store, datasets, log=pytest.fail) == ["shapes"]
    scrape_local(store, tmp_path / "zoo", log=lambda *a: None)
    store.upsert_models([{
        "_id": "local/test/frcnn-shapes", "name": "test/frcnn-shapes", "source": "local", "task": "object-detection",
        "datasets": ["shapes"], "path": str(tmp_path / "frcnn.pth"), "revision": "frcnn-shapes-1", "notes": [],
        "files": {"frcnn.pth": (tmp_path / "frcnn.pth").stat().st_size},
        "config": {"architecture": "fasterrcnn_mobilenet_v3_large_320_fpn", "num_classes": 4,
                   "id2label": {"0": "__background__", "1": "rectangle", "2": "ellipse", "3": "triangle"}},
    }])
    mods = [m for m in build_modules(store.datasets())
            if m.name in ("hf-object-detection/shapes", "torchvision-object-detection/shapes")]
    assert len(mods) == 2
    for m in mods:
        m.variants = ("original", "mirrored")
    summary = executor(store, mods, tmp_path / "home").run()
    assert summary.failures == [], [(f["model_name"], f["variant"], f["error_class"], f["reason"]) for f in summary.failures]
    results = list(store.iter_results({"processor": "detection"}))
    assert sorted((r["model_name"], r["variant"]) for r in results) == [
        ("test/frcnn-shapes", "mirrored"), ("test/frcnn-shapes", "original"),
        ("test/tiny-detr", "mirrored"), ("test/tiny-detr", "original")]
    ds = CocoDataset.open(datasets / "shapes")
    revision = store.datasets()["shapes"]["revision"]
    for r in results:
        predictions = DETECTION.decode(list(store.iter_predictions(r["inference_id"])))
        assert predictions and sum(len(p["scores"]) for p in predictions) == r["runtime"]["n_detections"] > 0
        gt = ds if r["variant"] == "original" else variant_dataset(tmp_path / "home", ds, revision, r["variant"])
        for (name, *_), value in zip(COCO_STATS, coco_eval(gt.instances("test"), predictions)):
            assert r["overall"][name] == pytest.approx(value, abs=1e-9), (r["model_name"], r["variant"], name)
        mapped = {p["model_label"]: p["dataset_class"] for p in r["label_mapping"]["pairs"]}
        assert {k: v for k, v in mapped.items() if v} == {"rectangle": "rectangle", "ellipse": "ellipse", "triangle": "triangle"}
    store.close()
