"""The demo's segmentation builders (demo/segmentation.py): the shape-masks set's masks are the drawn shapes, and a
(one-epoch) SegFormer build writes a repo that loads with the unmodified Transformers auto classes and whose card
states the numbers measured at build time, with the background-only baseline."""
from __future__ import annotations

import numpy as np
import pytest

import demo.segmentation as demo_seg
from core.voc import IGNORE_INDEX, VocDataset
from demo.detection_data import PALETTE
from scraper.local import read_repo


def test_masks_are_the_drawn_shapes(tmp_path):
    demo_seg.build_shape_masks(tmp_path / "ds", {"train": 6, "test": 4})
    ds = VocDataset.open(tmp_path / "ds")
    assert ds.classes == demo_seg.CLASSES and {s: len(ds.ids(s)) for s in ds.splits} == {"test": 4, "train": 6}
    palette = {tuple(c) for c in PALETTE}
    for image_id in ds.ids("train") + ds.ids("test"):
        image, mask = ds.load_sample(image_id)
        pixels = np.asarray(image)
        assert image.size == (64, 64) and (mask > 0).any() and (mask == IGNORE_INDEX).any()
        shape_pixels = {tuple(p) for p in pixels[mask > 0].reshape(-1, 3).tolist()}  # shapes and their borders
        assert shape_pixels <= palette, image_id
        inner = mask[(mask > 0) & (mask != IGNORE_INDEX)]
        assert set(np.unique(inner)) <= {1, 2, 3}


def test_segformer_build_writes_a_loadable_repo_with_an_honest_card(tmp_path, monkeypatch):
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    monkeypatch.setattr(demo_seg, "EPOCHS_QUICK", 1)
    demo_seg.build_shape_masks(tmp_path / "ds", {"train": 8, "test": 4})
    info = demo_seg.build_model(tmp_path / "model", tmp_path / "ds", quick=True, log=lambda _: None)
    model = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "model", local_files_only=True)
    assert type(model).__name__ == "SegformerForSemanticSegmentation"
    assert model.config.id2label == dict(enumerate(demo_seg.CLASSES))
    assert AutoImageProcessor.from_pretrained(tmp_path / "model").size == {"height": 64, "width": 64}
    doc, _ = read_repo(tmp_path / "model", demo_seg.MODEL)
    assert doc["task"] == "image-segmentation" and doc["datasets"] == [demo_seg.DATASET]
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"mIoU {info['test_mean_iou']:.3f}" in card and f"mIoU {info['background_only_mean_iou']:.3f} and" in card
    assert ("PLUMBING CHECK ONLY" in card) == (not info["beats_background_only"])
    assert info["epochs"] == 1 and info["test_images"] == 4 and 0 <= info["test_mean_iou"] <= 1
    ds = VocDataset.open(tmp_path / "ds")
    scored = np.concatenate([m[m != IGNORE_INDEX] for m in (ds.load_mask(i) for i in ds.ids("test"))])
    assert info["background_only_pixel_accuracy"] == pytest.approx(np.mean(scored == 0), abs=1e-12)
