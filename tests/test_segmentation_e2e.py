"""Semantic segmentation end to end through the CLI (`zooeval scrape --source local` + `zooeval run`, click's
CliRunner) against the real mongod: a VOC-layout set (demo.segmentation's shape-masks, small), a tiny SegFormer
(a Transformers repo, safetensors) and a torchvision LR-ASPP MobileNetV3 state dict (a `.pth` read with
torch.load(weights_only=True)), both with random weights saved here: their accuracy means nothing, the plumbing is
what is checked. The stored class maps equal each model run directly (outside zooeval), the stored true maps equal
the dataset's masks (moved, for the mirrored variant), every stored metric equals the numpy reference computed
from the stored predictions, re-scoring from them loads no model, and `zooeval results` and the export show mIoU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from core.store import Store
from core.voc import VocDataset
from demo.segmentation import CLASSES, build_shape_masks, image_processor, tiny_segformer_config
from modules.segmentation import IMAGENET_MEAN, IMAGENET_STD
from tasks.segmentation import SEGMENTATION
from tests.test_segmentation_metrics import numpy_reference

SEGFORMER, LRASPP = "test/segformer-random", "test/lraspp-random"
ID2LABEL = {0: "bg", 1: "rectangle", 2: "circle", 3: "triangle"}  # "bg" and "circle" map by the set's synonyms


def card(name: str) -> str:
    return (f"---\npipeline_tag: image-segmentation\ndatasets: [shape-masks]\nlicense: mit\n---\n\n# {name}\n\n"
            "Random weights, saved by a test: checks plumbing only.\n")


@pytest.fixture(scope="module")
def seg_zoo(tmp_path_factory):
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large
    from transformers import SegformerForSemanticSegmentation

    root = tmp_path_factory.mktemp("seg-zoo")
    home, zoo = root / "home", root / "zoo"
    build_shape_masks(home / "datasets" / "shape-masks", {"train": 2, "test": 5})
    torch.manual_seed(0)
    segformer = SegformerForSemanticSegmentation(tiny_segformer_config(ID2LABEL)).eval()
    segformer.save_pretrained(str(zoo / SEGFORMER), safe_serialization=True)
    image_processor().save_pretrained(str(zoo / SEGFORMER))
    (zoo / SEGFORMER / "README.md").write_text(card(SEGFORMER))
    lraspp = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4).eval()
    (zoo / LRASPP).mkdir(parents=True)
    torch.save(lraspp.state_dict(), zoo / LRASPP / "model.pth")
    (zoo / LRASPP / "config.json").write_text(json.dumps({"architecture": "lraspp_mobilenet_v3_large", "num_classes": 4,
                                                          "id2label": {str(k): v for k, v in ID2LABEL.items()}}))
    (zoo / LRASPP / "README.md").write_text(card(LRASPP))
    return {"home": home, "zoo": zoo, "segformer": segformer, "lraspp": lraspp}


def direct_label_maps(model_name: str, seg_zoo, images: list) -> list[np.ndarray]:
    """Each model run directly on the images (its own preprocessing), logits upsampled to the image, argmax."""
    from torchvision.transforms.functional import normalize, pil_to_tensor

    out = []
    with torch.inference_mode():
        for img in images:
            if model_name == SEGFORMER:
                x = image_processor()(images=[img], return_tensors="pt")["pixel_values"]
                logits = seg_zoo["segformer"](pixel_values=x).logits
            else:
                x = normalize(pil_to_tensor(img).float() / 255, IMAGENET_MEAN, IMAGENET_STD)[None]
                logits = seg_zoo["lraspp"](x)["out"]
            up = torch.nn.functional.interpolate(logits, size=(img.height, img.width), mode="bilinear", align_corners=False)
            out.append(up[0].argmax(0).numpy())
    return out


def test_segmentation_end_to_end(seg_zoo, mongo_uri, db_name, monkeypatch):
    from service.cli import main

    for key, value in (("ZOOEVAL_HOME", seg_zoo["home"]), ("ZOOEVAL_MONGO_URI", mongo_uri), ("ZOOEVAL_DB", db_name),
                       ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        monkeypatch.setenv(key, str(value))

    def cli(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    cli("scrape", "--source", "local", "--path", str(seg_zoo["zoo"]))
    first = cli("run", "--no-progress", "--batch-size", "4", "--variant", "original", "--variant", "mirrored")
    store = Store(mongo_uri, db_name)
    try:
        assert store.count("failures") == 0, list(store.failures())
        results = {(r["model_name"], r["variant"]): r for r in store.latest_results() if r["processor"] == "segmentation"}
        assert sorted(results) == [(LRASPP, "mirrored"), (LRASPP, "original"), (SEGFORMER, "mirrored"),
                                   (SEGFORMER, "original")], first
        assert {results[(m, "original")]["module"] for m in (SEGFORMER, LRASPP)} == {
            "hf-semantic-segmentation/shape-masks", "torchvision-semantic-segmentation/shape-masks"}
        ds = VocDataset.open(seg_zoo["home"] / "datasets" / "shape-masks")
        ids = ds.ids("test")
        for (model_name, variant), r in results.items():
            p = SEGMENTATION.decode(list(store.iter_predictions(r["inference_id"])))
            assert p.image_ids == ids and r["overall"]["n"] == len(ids) == r["runtime"]["n"]
            images = [ds.load_image(i) for i in ids]
            truths = [ds.load_mask(i) for i in ids]
            if variant == "mirrored":
                images = [img.transpose(0) for img in images]  # Image.Transpose.FLIP_LEFT_RIGHT
                truths = [m[:, ::-1] for m in truths]
            for stored, truth in zip(p.y_true, truths):
                assert np.array_equal(stored, truth)
            # the stored class maps are the model's own argmax, mapped to the dataset's classes (an identity map here)
            for stored, direct in zip(p.y_pred, direct_label_maps(model_name, seg_zoo, images)):
                assert np.array_equal(stored, direct)
            ref = numpy_reference(p.y_true, p.y_pred, len(CLASSES))
            for key in ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou"):
                assert r["overall"][key] == pytest.approx(ref[key], abs=1e-12), (model_name, variant, key)
            assert [r["per_class"][c]["iou"] for c in CLASSES] == pytest.approx(ref["iou"], abs=1e-12)
            rules = {pair["model_label"]: (pair["dataset_class"], pair["rule"]) for pair in r["label_mapping"]["pairs"]}
            assert rules == {"bg": ("background", "synonym"), "rectangle": ("rectangle", "exact"),
                             "circle": ("ellipse", "synonym"), "triangle": ("triangle", "exact")}
        assert "mIoU" in first or "plan:" in first

        # re-scoring from the stored predictions: the results removed, the next run loads no model
        before = {k: (r["overall"], r["per_class"]) for k, r in results.items()}
        store.delete_results({"processor": "segmentation"})  # drops the planning watermarks too
        again = cli("run", "--no-progress", "--variant", "original", "--variant", "mirrored")
        assert "0 inference tasks" in again and "0 models loaded" in again and "re-scored" in again, again
        after = {(r["model_name"], r["variant"]): (r["overall"], r["per_class"]) for r in store.latest_results()
                 if r["processor"] == "segmentation"}
        assert after == before

        shown = cli("results", SEGFORMER, "--per-class")
        original = results[(SEGFORMER, "original")]["overall"]
        assert "semantic-segmentation:" in shown and "mIoU" in shown and f"{original['mean_iou']:.4f}" in shown, shown
        out = seg_zoo["home"] / "export.jsonl"
        cli("export", "--format", "jsonl", "-o", str(out))
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        miou = [row for row in rows if row["model"] == SEGFORMER and row["variant"] == "original"
                and row["metric"] == "mean_iou" and row["class"] == "overall"]
        assert [row["value"] for row in miou] == [pytest.approx(original["mean_iou"], abs=1e-12)]
        per_class_iou = {row["class"] for row in rows if row["model"] == SEGFORMER and row["metric"] == "iou"}
        assert per_class_iou <= set(CLASSES) and per_class_iou
        stats = cli("stats", "--task", "semantic-segmentation", "--metric", "mean_iou", "--format", "csv")
        assert "mean_iou" in stats and "shape-masks" in stats, stats
        described = cli("dataset", "shape-masks")
        assert "semantic-segmentation" in described and "background" in described, described
    finally:
        store.close()
