"""COCO detection data (core.coco, demo.detection_data), the detection modules (modules.detection) and
run_detection (tasks.detection), on real data and real models: no mocks.

Torch runs with one intra-op thread here: on 2 busy cores MTCNN's many small ops ran 10x slower with two
threads (0.8-3 s against 0.08 s per 512 px image, measured while other test suites ran).
"""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from core.coco import CocoDataset
from core.data import DataError
from core.labels import LabelMappingError
from demo.detection_data import (
    ASTRONAUT_FACE_XYWH,
    build_faces_dataset,
    build_quokka_dataset,
    build_shapes_dataset,
)
from modules.base import InferenceError, ModelLoadError, UnsafeModelError
from modules.detection import (
    FiftyOneDetection,
    HFObjectDetection,
    MTCNNFaceDetection,
    TorchvisionDetection,
    detections_from_fiftyone,
    mtcnn_model_doc,
)
from scraper.datasets import read_dataset_meta
from tasks.base import task_for_dataset
from tasks.detection import detection_label_mapping, run_detection, to_coco_results, to_detection_batch

RUNTIME_KEYS = {"n", "batch_size", "device", "warmup_s", "time_in_seconds", "time_per_instance", "instances_per_second"}


@pytest.fixture(autouse=True)
def one_thread(torch_one_thread):
    """One intra-op torch thread for every test here (tests/conftest.py)."""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return CocoDataset.open(build_shapes_dataset(tmp_path_factory.mktemp("det") / "shapes", n_images=60, seed=0))


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return CocoDataset.open(build_faces_dataset(tmp_path_factory.mktemp("det") / "faces", seed=0))


def iou_xywh(a, b) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def coco_eval(instances: dict, predictions: list[dict]) -> np.ndarray:
    """pycocotools' 12 bbox stats for the predictions against COCO instances (images, annotations,
    categories)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = instances
        gt.createIndex()
        dt = gt.loadRes(to_coco_results(predictions))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


# ---------------------------------------------------------------------------------------------- loader
def test_loader_reads_classes_supercategories_counts_and_examples(shapes):
    assert shapes.classes == ["rectangle", "ellipse", "triangle"]
    assert shapes.category_ids == [1, 2, 3]
    assert shapes.supercategories == ["shape"] * 3
    assert shapes.splits == ["test"]
    images = shapes.images("test")
    anns = shapes.annotations("test")
    assert len(images) == 60 and set(anns) == {img["id"] for img in images}
    assert sum(1 for v in anns.values() if not v) >= 6  # every tenth image is empty
    img = shapes.load_image(images[0])
    assert img.mode == "RGB" and img.size == (images[0]["width"], images[0]["height"])

    doc, examples = shapes.dataset_doc()
    assert doc["name"] == "shapes" and doc["task"] == "object-detection" and doc["datatype"] == "image"
    assert doc["classes"][1] == {"id": 1, "label": "ellipse", "extra": {"supercategory": "shape", "category_id": 2}}
    (split,) = doc["splits"]
    flat = [a for v in anns.values() for a in v]
    assert split["total"] == 60 and split["n_annotations"] == len(flat)
    assert split["class_counts"] == {c: sum(a["category_id"] == k + 1 for a in flat) for k, c in enumerate(shapes.classes)}
    assert split["class_counts"] == shapes.class_counts("test")
    per_class = {k: [e["example"] for e in examples if e["class_id"] == k] for k in range(3)}
    files = {img["file_name"] for img in images}
    for k, ex in per_class.items():
        assert 0 < len(ex) <= 20 and set(ex) <= files and len(set(ex)) == len(ex)
    assert doc["revision"] == shapes.revision() == CocoDataset.open(shapes.root).revision()
    assert task_for_dataset(read_dataset_meta(shapes.root)).name == "object-detection"
    # every COCO area range occurs (small < 32^2 <= medium <= 96^2 < large)
    areas = np.array([a["area"] for a in flat])
    assert (areas < 32**2).any() and ((areas >= 32**2) & (areas <= 96**2)).any() and (areas > 96**2).any()


def test_revision_changes_with_an_image(tmp_path):
    ds = CocoDataset.open(build_shapes_dataset(tmp_path / "s", n_images=4, seed=3))
    before = ds.revision()
    path = ds.image_path(ds.images("test")[1])
    path.write_bytes(path.read_bytes() + b"\0")
    assert CocoDataset.open(ds.root).revision() != before


def _broken(tmp_path, edit) -> str:
    """Build a small dataset, apply ``edit(root, instances)`` and return the DataError message on opening it."""
    root = build_shapes_dataset(tmp_path / "b", n_images=6, seed=1)
    path = root / "test.json"
    data = json.loads(path.read_text())
    edit(root, data)
    if data is not None:
        path.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        ds = CocoDataset.open(root)
        ds.images("test")
    return str(err.value)


def test_invalid_json_is_a_data_error(tmp_path):
    root = build_shapes_dataset(tmp_path / "b", n_images=3, seed=1)
    (root / "test.json").write_text('{"images": [')
    with pytest.raises(DataError, match=r"test\.json is not valid JSON"):
        CocoDataset.open(root).images("test")
    (root / "dataset.json").write_text("not json")
    with pytest.raises(DataError, match=r"dataset metadata .*dataset\.json is not valid JSON"):
        CocoDataset.open(root)


def test_missing_image_is_a_data_error(tmp_path):
    def edit(root, data):
        (root / "images" / data["images"][2]["file_name"]).unlink()

    msg = _broken(tmp_path, edit)
    assert "image 'test/00002.png' (id 3) is missing" in msg


def test_unknown_category_is_a_data_error(tmp_path):
    def edit(root, data):
        data["annotations"][0]["category_id"] = 99

    msg = _broken(tmp_path, edit)
    assert "unknown category_id 99" in msg and "the categories are [1, 2, 3]" in msg


def test_negative_bbox_is_a_data_error(tmp_path):
    def edit(root, data):
        data["annotations"][1]["bbox"][3] = -4.0

    msg = _broken(tmp_path, edit)
    assert "annotation 2: bbox" in msg and "negative width or height" in msg


# ---------------------------------------------------------------------------------------------- builders
def test_shape_boxes_are_the_exact_pixel_extents(tmp_path):
    grey = (128, 128, 128)
    ds = CocoDataset.open(build_shapes_dataset(tmp_path / "plain", n_images=20, seed=5, plain_background=grey))
    anns = ds.annotations("test")
    checked = 0
    for img in ds.images("test"):
        pix = np.asarray(ds.load_image(img))
        shape = (pix != np.array(grey)).any(axis=-1)
        covered = np.zeros_like(shape)
        for a in anns[img["id"]]:
            x, y, w, h = (int(v) for v in a["bbox"])
            assert [x, y, w, h] == a["bbox"]
            inside = shape[y : y + h, x : x + w]
            # the shape touches all four sides of its box, and its pixel count is the annotated area
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            assert inside.sum() == a["area"]
            # nothing of it lies in the one-pixel ring just outside the box
            ring = shape[max(y - 1, 0) : y + h + 1, max(x - 1, 0) : x + w + 1].sum() - inside.sum()
            assert ring == 0
            covered[y : y + h, x : x + w] = True
            checked += 1
        assert not (shape & ~covered).any()  # no drawn pixel outside every box
    assert checked >= 20


def test_faces_dataset_is_built_from_real_faces(faces):
    images = faces.images("test")
    anns = faces.annotations("test")
    assert faces.classes == ["face"] and faces.supercategories == ["person"]
    assert images[0]["file_name"] == "test/astronaut.png" and (images[0]["width"], images[0]["height"]) == (512, 512)
    assert anns[images[0]["id"]][0]["bbox"] == list(map(float, ASTRONAUT_FACE_XYWH))
    pasted = [a for img in images[1:] for a in anns[img["id"]]]
    assert 30 <= len(pasted) <= 100  # each LFW face used at most once
    assert all(64 <= a["bbox"][2] == a["bbox"][3] <= 120 for a in pasted)
    assert sum(1 for img in images if not anns[img["id"]]) >= 3


def test_quokka_dataset_has_imgaugs_box(tmp_path):
    ds = CocoDataset.open(build_quokka_dataset(tmp_path / "quokka"))
    (img,) = ds.images("test")
    assert (img["width"], img["height"]) == (960, 643)
    assert ds.annotations("test")[img["id"]][0]["bbox"] == [148.0, 50.0, 402.0, 592.0]
    assert ds.categories == [{"id": 1, "name": "quokka", "supercategory": "animal"}]
    assert ds.load_image(img).size == (960, 643)


# ---------------------------------------------------------------------------------------------- labels
def test_detection_label_mapping_drops_placeholders_and_only_asked_unmapped():
    id2label = {0: "__background__", 1: "Rectangle", 2: "circle", 3: "N/A", 4: "hexagon"}
    classes, cats = ["rectangle", "ellipse", "triangle"], [1, 2, 3]
    synonyms = {"circle": "ellipse"}
    with pytest.raises(LabelMappingError) as err:
        detection_label_mapping(id2label, classes, cats, synonyms)
    assert err.value.unmapped == ["hexagon"]
    m = detection_label_mapping(id2label, classes, cats, synonyms, drop_unmapped=True)
    assert m.model_to_category == [None, 1, 2, None, None]
    assert m.methods == {"Rectangle": "normalised", "circle": "synonym"}
    assert m.dropped == {"__background__": "placeholder (no class)", "N/A": "placeholder (no class)",
                         "hexagon": "no dataset class matches"}
    doc = m.to_doc(classes, cats, id2label)
    assert doc["pairs"][2] == {"model_label": "circle", "dataset_class": "ellipse", "category_id": 2, "rule": "synonym"}


# ---------------------------------------------------------------------------------------------- MTCNN
def test_mtcnn_finds_the_faces(faces):
    """The pretrained MTCNN of the facenet-pytorch wheel on the faces set. Measured here: AP50 0.962,
    AP (0.50:0.95) 0.36 (the pasted LFW crops are tighter than MTCNN's boxes), 2 s for the 31 images on one
    thread. A detector that does not see faces scores AP50 near 0; the bar is 0.8, a margin below the
    measured value for numeric differences across torch builds (one missed face costs about 0.02)."""
    module = MTCNNFaceDetection("faces")
    loaded = module.load(mtcnn_model_doc(), "cpu")
    mapping = detection_label_mapping(loaded.id2label, faces.classes, faces.category_ids)
    assert mapping.model_to_category == [1]
    preds, runtime = run_detection(module, loaded, faces, "test", mapping.model_to_category, batch_size=8)
    assert RUNTIME_KEYS <= set(runtime) and runtime["n"] == len(faces.images("test")) == len(preds)
    assert runtime["warmup_s"] > 0 and runtime["instances_per_second"] > 0
    stats = coco_eval(faces.instances("test"), preds)
    assert stats[1] > 0.8, f"MTCNN AP50 {stats[1]:.3f}"
    astronaut = preds[0]
    assert astronaut["image_id"] == 1 and len(astronaut["scores"]) >= 1
    assert iou_xywh(astronaut["boxes"][0], ASTRONAUT_FACE_XYWH) > 0.6 and astronaut["scores"][0] > 0.99
    ident = module.identity()
    assert ident["params"]["score_threshold"] == 0.001 and ident["params"]["nms_iou"] == 0.65
    # the same numbers through the other helper's processor input
    batch = to_detection_batch(faces, "test", preds)
    assert len(batch) == len(preds) and batch.det_labels.max() == 0


# ---------------------------------------------------------------------------------------------- HF
def _tiny_detr(folder, id2label):
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], out_features=["stage4"])
    config = DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, d_model=32,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10,
        id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )
    torch.manual_seed(0)
    DetrForObjectDetection(config).save_pretrained(folder)  # safetensors
    DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(folder)
    return folder


def test_hf_detection_loads_and_returns_boxes_in_image_coordinates(shapes, tmp_path):
    """A tiny randomly initialised DETR (no pretrained backbone, no timm) saved as safetensors and loaded
    through HFObjectDetection offline. Its accuracy is meaningless; what is checked is the loading path and
    that the boxes are the model's normalised boxes scaled to each ORIGINAL image size."""
    from scraper.local import read_repo

    folder = _tiny_detr(tmp_path / "tiny-detr", {0: "rectangle", 1: "ellipse", 2: "triangle"})
    doc, _ = read_repo(folder, "test/tiny-detr")
    assert doc["task"] == "object-detection" and "model.safetensors" in doc["files"]
    module = HFObjectDetection("shapes")
    loaded = module.load(doc, "cpu")
    mapping = detection_label_mapping(loaded.id2label, shapes.classes, shapes.category_ids)
    assert mapping.model_to_category == [1, 2, 3]

    class FirstThree:  # any object with the CocoDataset interface works
        category_ids = shapes.category_ids

        def images(self, split):
            return shapes.images(split)[:3]

        def load_image(self, image):
            return shapes.load_image(image)

        def annotations(self, split):
            return shapes.annotations(split)

    preds, runtime = run_detection(module, loaded, FirstThree(), "test", mapping.model_to_category, batch_size=2)
    assert runtime["n"] == 3 and RUNTIME_KEYS <= set(runtime)
    for p, img in zip(preds, shapes.images("test")[:3]):
        k = len(p["scores"])
        assert 1 <= k <= 10 and p["boxes"].shape == (k, 4) and p["labels"].shape == (k,)
        assert set(p["labels"].tolist()) <= {1, 2, 3} and np.all(np.diff(p["scores"]) <= 0)
        assert np.all(p["boxes"][:, :2] >= 0) and np.all(p["boxes"][:, 0] + p["boxes"][:, 2] <= img["width"] + 1e-6)
        assert np.all(p["boxes"][:, 1] + p["boxes"][:, 3] <= img["height"] + 1e-6)
        # every box is one of the model's normalised (cx, cy, w, h) boxes times the image's own size
        pil = shapes.load_image(img)
        with torch.inference_mode():
            out = loaded.model(**loaded.preprocessor(images=[pil], return_tensors="pt"))
        cx, cy, w, h = out.pred_boxes[0].double().unbind(-1)
        expected = torch.stack([(cx - w / 2) * img["width"], (cy - h / 2) * img["height"], w * img["width"],
                                h * img["height"]], -1).numpy()
        expected[:, :2] = expected[:, :2].clip(0)
        for box in p["boxes"]:
            assert np.abs(expected - box).max(axis=1).min() < 0.05

    assert module.identity()["params"] == {"score_threshold": 0.001, "nms_iou": 0.65, "max_detections": 100}


def test_nan_outputs_raise_inference_error(shapes, tmp_path):
    from scraper.local import read_repo

    folder = _tiny_detr(tmp_path / "nan-detr", {0: "rectangle", 1: "ellipse", 2: "triangle"})
    module = HFObjectDetection("shapes")
    loaded = module.load(read_repo(folder, "test/nan-detr")[0], "cpu")
    with torch.no_grad():
        loaded.model.class_labels_classifier.weight.fill_(float("nan"))
    with pytest.raises(InferenceError, match="NaN or infinite logits"):
        run_detection(module, loaded, shapes, "test", [1, 2, 3], batch_size=2)
    with pytest.raises(InferenceError, match="label mapping covers 2 label ids but the model has 3"):
        run_detection(module, loaded, shapes, "test", [1, 2], batch_size=2)


# ---------------------------------------------------------------------------------------------- torchvision
def test_torchvision_detection_from_a_state_dict(shapes, tmp_path):
    """fasterrcnn_mobilenet_v3_large_320_fpn with random weights (no download): loads from a plain state
    dict, takes the module's thresholds, returns boxes in image coordinates; accuracy is meaningless."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    net = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=4)
    torch.save(net.state_dict(), tmp_path / "weights.pth")
    doc = {"name": "test/frcnn-shapes", "source": "local", "path": str(tmp_path / "weights.pth"),
           "config": {"architecture": "fasterrcnn_mobilenet_v3_large_320_fpn", "num_classes": 4,
                      "id2label": {"0": "__background__", "1": "rectangle", "2": "ellipse", "3": "triangle"}}}
    module = TorchvisionDetection("shapes")
    loaded = module.load(doc, "cpu")
    assert loaded.model.roi_heads.score_thresh == 0.001 and loaded.model.roi_heads.nms_thresh == 0.65
    mapping = detection_label_mapping(loaded.id2label, shapes.classes, shapes.category_ids)
    assert mapping.model_to_category == [None, 1, 2, 3]

    class FirstTwo:
        def images(self, split):
            return shapes.images(split)[:2]

        def load_image(self, image):
            return shapes.load_image(image)

    preds, runtime = run_detection(module, loaded, FirstTwo(), "test", mapping.model_to_category, batch_size=2)
    assert runtime["n"] == 2 and len(preds) == 2
    for p, img in zip(preds, shapes.images("test")[:2]):
        k = len(p["scores"])
        assert p["boxes"].shape == (k, 4) and p["scores"].shape == (k,) and 0 < k <= 100
        assert set(p["labels"].tolist()) <= {1, 2, 3}
        assert np.all(p["boxes"][:, 0] + p["boxes"][:, 2] <= img["width"] + 1e-6)
        assert np.all(p["boxes"][:, 1] + p["boxes"][:, 3] <= img["height"] + 1e-6)


def test_torchvision_refuses_a_pickle_that_is_not_a_state_dict(tmp_path):
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    net = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=4)
    torch.save(net, tmp_path / "whole-model.pth")  # a pickled nn.Module: loading it would run code
    doc = {"name": "test/pickled", "source": "local", "path": str(tmp_path / "whole-model.pth"),
           "config": {"architecture": "fasterrcnn_mobilenet_v3_large_320_fpn", "num_classes": 4,
                      "id2label": {"0": "__background__", "1": "a", "2": "b", "3": "c"}}}
    with pytest.raises(UnsafeModelError, match="not a plain state dict"):
        TorchvisionDetection("shapes").load(doc, "cpu")


# ---------------------------------------------------------------------------------------------- FiftyOne
def test_fiftyone_detection_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOEVAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FIFTYONE_MODEL_ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FIFTYONE_MODEL_ZOO_MANIFEST_CACHE_ENABLED", "true")
    monkeypatch.delenv("ZOOEVAL_FIFTYONE_DOWNLOAD", raising=False)
    module = FiftyOneDetection("shapes")
    with pytest.raises(ModelLoadError) as err:
        module.load({"name": "faster-rcnn-resnet50-fpn-coco-torch", "source": "fiftyone"}, "cpu")
    msg = str(err.value)
    assert "weights of FiftyOne detection model 'faster-rcnn-resnet50-fpn-coco-torch' not found offline" in msg
    assert "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in msg and str(tmp_path / "zoo") in msg
    assert "ZOOEVAL_FIFTYONE_DOWNLOAD=1" in msg


def test_fiftyone_detections_become_absolute_boxes():
    import fiftyone.core.labels as fol

    dets = fol.Detections(detections=[
        fol.Detection(label="cat", bounding_box=[0.1, 0.2, 0.3, 0.4], confidence=0.9),
        fol.Detection(label="dog", bounding_box=[0.5, 0.5, 0.5, 0.5], confidence=None),
    ])
    out = detections_from_fiftyone(dets, width=200, height=100, label2id={"dog": 1, "cat": 2})
    assert torch.allclose(out["boxes"], torch.tensor([[20.0, 20.0, 80.0, 60.0], [100.0, 50.0, 200.0, 100.0]]))
    assert out["scores"].tolist() == pytest.approx([0.9, 1.0]) and out["labels"].tolist() == [2, 1]
    with pytest.raises(InferenceError, match="label 'cat'"):
        detections_from_fiftyone(dets, 200, 100, {"dog": 1})
    assert detections_from_fiftyone(None, 10, 10, {})["boxes"].shape == (0, 4)
