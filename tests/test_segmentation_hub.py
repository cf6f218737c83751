"""A semantic segmentation dataset from the Hugging Face Hub (scraper/hub_datasets.py) through the unmodified
``datasets`` library and the local Hub stand-in: an Image column and a mask Image column (parquet files written by
``datasets``) with the repo's id2label.json naming the classes become a VOC-layout folder registered as
semantic-segmentation; what is registered is compared with the served files read directly (pyarrow, PIL), and a tiny
random-weight SegFormer declared trained on it is evaluated by `zooeval run` (stored truth = the served masks,
metrics = the numpy reference on the stored predictions)."""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import Features, Image, Value
from PIL import Image as PILImage

from core.voc import VocDataset
from demo.segmentation import CLASSES
from scraper.hub_datasets import layout_for
from tests import hub_dataset_repos as repos
from tests.test_hub_datasets import add, ctx, hub, worker  # noqa: F401  (the stand-in and the datasets worker)


def test_segmentation_columns_are_recognised():
    for mask in ("annotation", "label", "mask", "semantic_segmentation"):
        layout = layout_for(Features({"pixel_values": Image(), mask: Image()}), "x")
        assert (layout.task, layout.inputs) == ("semantic-segmentation", {"file": "pixel_values", "mask": mask})
    # two images and no mask column: not segmentation (and no ClassLabel: refused, naming the columns)
    try:
        layout_for(Features({"image": Image(), "other": Image(), "id": Value("int64")}), "y")
    except Exception as exc:
        assert "image (Image), other (Image), id (int64)" in str(exc) and "id2label.json" in str(exc)
    else:
        raise AssertionError("two image columns without a mask column were taken")


def test_hub_segmentation_dataset_becomes_a_voc_folder(ctx, tmp_path, monkeypatch):  # noqa: F811
    stand_in, store = ctx["hub"], ctx["store"]
    repo_dir = stand_in.root / "datasets" / "org" / "shape-masks"
    train, train_masks = repos.segmentation_split(4, 0)
    test, test_masks = repos.segmentation_split(3, 1)
    repos.write_repo(repo_dir, {"default": {"train": train, "test": test}}, "Shape masks")
    (repo_dir / "id2label.json").write_text(json.dumps({str(i): c for i, c in enumerate(CLASSES)}))
    sha = stand_in.datasets.get("org/shape-masks").sha
    [res] = add(ctx, {"repo": "hf:org/shape-masks"})
    assert res.get("name") == "org/shape-masks", res
    doc = store.datasets()["org/shape-masks"]
    assert doc["task"] == "semantic-segmentation" and doc["format"] == "voc"
    assert [c["label"] for c in doc["classes"]] == CLASSES and doc["hub"]["revision"] == sha
    assert {s["name"]: s["total"] for s in doc["splits"]} == {"train": 4, "test": 3}
    local = VocDataset.open(doc["path"])
    assert doc["revision"] == local.revision()
    served = pq.read_table(repo_dir / "data" / "test-00000-of-00001.parquet").to_pydict()
    for i, image_id in enumerate(local.ids("test")):
        assert image_id == f"test_{i:07d}"
        assert local.image_path(image_id).read_bytes() == served["image"][i]["bytes"]  # the original bytes
        with PILImage.open(io.BytesIO(served["label"][i]["bytes"])) as served_mask:
            assert np.array_equal(local.load_mask(image_id), np.asarray(served_mask))
        assert np.array_equal(local.load_mask(image_id), test_masks[i])
    stored = next(s for s in doc["splits"] if s["name"] == "train")
    assert stored["ignored_pixels"] == sum(int((m == 255).sum()) for m in train_masks) > 0
    assert stored["pixel_counts"] == {c: sum(int((m == k).sum()) for m in train_masks) for k, c in enumerate(CLASSES)}

    # evaluated end to end: a tiny random-weight SegFormer (plumbing only) declared trained on it, `zooeval run`
    import torch
    from click.testing import CliRunner
    from transformers import SegformerForSemanticSegmentation

    from demo.segmentation import image_processor, tiny_segformer_config
    from service.cli import main
    from tasks.segmentation import SEGMENTATION
    from tests.test_segmentation_metrics import numpy_reference

    repo = tmp_path / "zoo" / "test" / "segformer-hub"
    torch.manual_seed(1)
    SegformerForSemanticSegmentation(tiny_segformer_config(dict(enumerate(CLASSES)))).save_pretrained(str(repo))
    image_processor().save_pretrained(str(repo))
    (repo / "README.md").write_text("---\npipeline_tag: image-segmentation\ndatasets: [org/shape-masks]\n---\nrandom\n")
    for key, value in (("ZOOEVAL_HOME", ctx["home"]), ("ZOOEVAL_MONGO_URI", ctx["uri"]), ("ZOOEVAL_DB", ctx["db"])):
        monkeypatch.setenv(key, str(value))
    for args in (["scrape", "--source", "local", "--path", str(tmp_path / "zoo")],
                 ["run", "--no-progress", "--scenarios", "offline"]):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    [r] = store.iter_results({"dataset": "org/shape-masks", "processor": "segmentation"})
    assert r["model_name"] == "test/segformer-hub" and r["dataset_revision"] == doc["revision"] and r["split"] == "test"
    p = SEGMENTATION.decode(list(store.iter_predictions(r["inference_id"])))
    assert all(np.array_equal(a, b) for a, b in zip(p.y_true, test_masks)) and len(p.y_true) == 3
    ref = numpy_reference(p.y_true, p.y_pred, len(CLASSES))
    for key in ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou"):
        assert r["overall"][key] == pytest.approx(ref[key], abs=1e-12), key

    # the same repo without its id2label.json: refused, saying what is missing
    (repo_dir / "id2label.json").unlink()
    (repo_dir / "README.md").write_text((repo_dir / "README.md").read_text() + "\nno labels file\n")
    [refused] = add(ctx, {"repo": "org/shape-masks"})
    assert "no id2label.json naming its classes" in refused["error"], refused
    assert store.datasets()["org/shape-masks"]["hub"]["revision"] == sha  # the registered one is left as it was
