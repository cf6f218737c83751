"""VOC-layout segmentation datasets (core/voc.py): the real VOC2012 mask format (palette PNGs, 255 borders), clear
errors naming the file, registration; the stored form of segmentation predictions (exact round trip, chunks under
MongoDB's limit); and variants: geometric perturbations move the masks with the images (checked against PIL's own
transposes of the mask), photometric ones leave them, each variant built once."""
from __future__ import annotations

import json

import bson
import numpy as np
import pytest
from PIL import Image, ImageOps

import tasks.segmentation as seg
from core.data import DataError
from core.voc import IGNORE_INDEX, IMAGE_DIR, MASK_DIR, VocDataset, save_mask, write_voc_dataset
from perturbations import get_perturbation
from perturbations.masks import MASKS_VERSION, ensure_voc_variant, mask_transform
from scraper.datasets import dataset_document
from tasks.segmentation import SEGMENTATION, SegmentationPredictions, decode_segmentation, encode_segmentation

CLASSES = ["background", "cat", "dog"]


def voc_palette() -> list[int]:
    """PASCAL VOC's colour map (bit-interleaved, as its devkit's labelcolormap), 256 RGB entries."""
    out = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


def make_voc(root, n_images=4, width=30, height=20, palette=True, seed=0, splits=None):
    """A small folder in the real VOC2012 layout: JPEG images, palette masks with 255 borders, split lists."""
    rng = np.random.default_rng(seed)
    (root / IMAGE_DIR).mkdir(parents=True)
    (root / MASK_DIR).mkdir(parents=True)
    masks = {}
    for i in range(n_images):
        image_id = f"2007_{i:06d}"
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / IMAGE_DIR / f"{image_id}.jpg", quality=95)
        mask = rng.integers(0, len(CLASSES), (height, width)).astype(np.uint8)
        mask[0, :] = IGNORE_INDEX
        if palette:
            img = Image.fromarray(mask, mode="P")
            img.putpalette(voc_palette())
            img.save(root / MASK_DIR / f"{image_id}.png")
        else:
            save_mask(mask, root / MASK_DIR / f"{image_id}.png")
        masks[image_id] = mask
    ids = sorted(masks)
    splits = splits or {"train": ids[: n_images // 2], "val": ids[n_images // 2 :]}
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for split, names in splits.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    (root / "dataset.json").write_text(json.dumps({"name": root.name, "task": "semantic-segmentation", "format": "voc",
                                                   "classes": CLASSES, "supported_variants": ["flipped"]}))
    return masks


def test_real_voc_layout_palette_masks_and_registration(tmp_path):
    root = tmp_path / "voc-like"
    masks = make_voc(root, splits=None)
    with Image.open(root / MASK_DIR / "2007_000000.png") as img:
        assert img.mode == "P"  # as VOC2012's SegmentationClass files
    ds = VocDataset.open(root)
    assert ds.splits == ["train", "val"]  # from ImageSets/Segmentation, as dataset.json names none
    for image_id, mask in masks.items():
        image, loaded = ds.load_sample(image_id)
        assert image.size == (30, 20) and np.array_equal(loaded, mask)  # the palette index is the class
    doc, examples = dataset_document(root)
    assert doc["task"] == "semantic-segmentation" and [c["label"] for c in doc["classes"]] == CLASSES
    train = next(s for s in doc["splits"] if s["name"] == "train")
    train_masks = [masks[i] for i in ds.ids("train")]
    assert train["total"] == 2 and train["ignored_pixels"] == sum(int((m == 255).sum()) for m in train_masks)
    assert train["pixel_counts"] == {c: sum(int((m == k).sum()) for m in train_masks) for k, c in enumerate(CLASSES)}
    assert doc["revision"] == ds.revision() and examples and doc["supported_variants"] == ["flipped"]
    before = ds.revision()
    save_mask(masks["2007_000001"] * 0, root / MASK_DIR / "2007_000001.png")
    assert VocDataset.open(root).revision() != before  # a changed mask is a new content revision


def test_reader_errors_name_the_file(tmp_path):
    root = tmp_path / "broken"
    make_voc(root, palette=False)
    ds = VocDataset.open(root)
    (root / IMAGE_DIR / "2007_000000.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"cannot read image .*2007_000000\.jpg"):
        ds.load_sample("2007_000000")
    save_mask(np.zeros((21, 30), np.uint8), root / MASK_DIR / "2007_000001.png")
    with pytest.raises(DataError, match=r"mask .*2007_000001\.png is 30x21 pixels but its image 2007_000001\.jpg is 30x20"):
        ds.load_sample("2007_000001")
    save_mask(np.full((20, 30), 3, np.uint8), root / MASK_DIR / "2007_000002.png")
    with pytest.raises(DataError, match=r"mask .*2007_000002\.png holds value\(s\) \[3\] outside the 3 classes"):
        ds.load_sample("2007_000002")
    Image.new("RGB", (30, 20)).save(root / MASK_DIR / "2007_000003.png")
    with pytest.raises(DataError, match=r"mask .*2007_000003\.png is a RGB image; a class mask is a single-channel"):
        ds.load_sample("2007_000003")
    with pytest.raises(DataError, match=r"cannot read image .*2007_000000\.jpg"):
        dataset_document(root)  # registration reads every image and mask
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000009\n")
    with pytest.raises(DataError, match="no image for id '2007_000009'"):
        VocDataset.open(root).load_image("2007_000009")
    (root / "dataset.json").write_text(json.dumps({"name": "x", "format": "voc", "classes": []}))
    with pytest.raises(DataError, match="'classes' must be a non-empty list"):
        VocDataset.open(root)


def test_stored_form_round_trip_and_chunk_sizes(monkeypatch):
    rng = np.random.default_rng(0)
    truths = [rng.integers(0, 5, (h, w)).astype(np.uint8) for h, w in ((7, 9), (1, 1), (30, 2))]
    truths[0][0, 0] = IGNORE_INDEX
    preds = [rng.integers(0, 5, t.shape) for t in truths]
    preds[2][0, 0] = 300  # a value above 255: stored as uint16
    p = SegmentationPredictions(["a", "b", "c"], truths, preds)
    for chunk_bytes, chunk_images in ((seg.CHUNK_BYTES, seg.CHUNK_IMAGES), (40, 2), (5, 1)):
        monkeypatch.setattr(seg, "CHUNK_BYTES", chunk_bytes)
        monkeypatch.setattr(seg, "CHUNK_IMAGES", chunk_images)
        chunks = encode_segmentation(p)
        assert all(len(c["data"]) <= chunk_bytes and len(c["images"]) <= chunk_images for c in chunks)
        back = decode_segmentation([bson.decode(bson.encode(c)) for c in chunks])  # as MongoDB gives them back
        assert back.image_ids == p.image_ids
        for a, b in zip(back.y_true + back.y_pred, p.y_true + p.y_pred):
            assert a.shape == b.shape and np.array_equal(a, b)
    monkeypatch.undo()
    assert [c["dtype"] for c in encode_segmentation(p)[0]["images"]] == ["u1", "u1", "<u2"]
    # an incompressible 3000 x 3000 image (2 x 9 MB) spans chunks, each under MongoDB's 16 MB document limit
    noise = rng.integers(0, 255, (3000, 3000)).astype(np.uint8)
    big = SegmentationPredictions(["big"], [noise], [noise[::-1]])
    chunks = encode_segmentation(big)
    assert len(chunks) >= 3 and max(len(bson.encode(c)) for c in chunks) < 16 * 1024 * 1024
    back = decode_segmentation(chunks)
    assert np.array_equal(back.y_true[0], noise) and np.array_equal(back.y_pred[0], noise[::-1])
    assert decode_segmentation(encode_segmentation(SegmentationPredictions([], [], []))).image_ids == []


def pil_moved(mask: np.ndarray, transpose) -> np.ndarray:
    """The mask moved by PIL itself (an L image through the same transpose as the image)."""
    return np.asarray(Image.fromarray(mask).transpose(transpose))


@pytest.mark.parametrize("name,transpose", [("flipped", Image.Transpose.FLIP_TOP_BOTTOM),
                                            ("mirrored", Image.Transpose.FLIP_LEFT_RIGHT),
                                            ("rotated90", Image.Transpose.ROTATE_90)])
def test_geometric_variants_move_masks_with_images(tmp_path, name, transpose):
    root = tmp_path / "ds"
    ids = ["2007_000000", "2007_000001", "2007_000002"]
    masks = make_voc(root, n_images=3, splits={"train": ids[:2], "trainval": ids})  # VOC's trainval repeats train
    ds = VocDataset.open(root)
    variant = ensure_voc_variant(ds, ds.revision(), get_perturbation(name), 0, tmp_path / "cache")
    assert variant.splits == ["train", "trainval"] and variant.ids("trainval") == ds.ids("trainval")
    for image_id, mask in masks.items():
        image, moved = variant.load_sample(image_id)  # the reader checks the moved mask fits the moved image
        assert np.array_equal(moved, pil_moved(mask, transpose))
        assert np.array_equal(moved, mask_transform(name)(mask))
        assert np.array_equal(np.asarray(image), np.asarray(ds.load_image(image_id).transpose(transpose)))
    assert variant.meta["variant"]["masks"] == mask_transform(name).__name__
    # built once: a second call opens the same folder without writing anything
    marker = variant.root / "_COMPLETE"
    stamp = marker.stat().st_mtime_ns
    again = ensure_voc_variant(ds, ds.revision(), get_perturbation(name), 0, tmp_path / "cache")
    assert again.root == variant.root and marker.stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "cache" / "ds").iterdir())) == 2  # the variant and its lock file


def test_photometric_variants_keep_masks_and_displacing_ones_are_refused(tmp_path):
    root = tmp_path / "ds"
    masks = make_voc(root, n_images=2)
    ds = VocDataset.open(root)
    for name in ("inverted", "gaussian_noise-2"):
        variant = ensure_voc_variant(ds, ds.revision(), get_perturbation(name), 0, tmp_path / "cache")
        for image_id, mask in masks.items():
            image, kept = variant.load_sample(image_id)
            assert np.array_equal(kept, mask)
        if name == "inverted":
            assert np.array_equal(np.asarray(image), np.asarray(ImageOps.invert(ds.load_image(image_id))))
    assert SEGMENTATION.supports_variant(get_perturbation("rotated90")) is None
    why = SEGMENTATION.supports_variant(get_perturbation("elastic_transform-3"))
    assert "no mask rule for variant 'elastic_transform-3'" in why
    assert "not images" in SEGMENTATION.supports_variant(get_perturbation("typos"))
    assert SEGMENTATION.variant_identity(get_perturbation("flipped"), 0)["masks_version"] == MASKS_VERSION
    assert "masks_version" not in SEGMENTATION.variant_identity(None, 0)
    with pytest.raises(ValueError, match="no mask rule"):
        ensure_voc_variant(ds, ds.revision(), get_perturbation("elastic_transform-1"), 0, tmp_path / "cache")


def test_written_layout_reads_back(tmp_path):
    root = tmp_path / "written"
    (root / IMAGE_DIR).mkdir(parents=True)
    Image.new("RGB", (4, 3)).save(root / IMAGE_DIR / "a.png")
    save_mask(np.array([[0, 1, 255, 0]] * 3), root / MASK_DIR / "a.png")
    write_voc_dataset(root, {"name": "w", "task": "semantic-segmentation", "classes": ["x", "y"]}, {"test": ["a"]})
    ds = SEGMENTATION.open_dataset(root)
    assert ds.ids("test") == ["a"] and ds.load_mask("a").tolist() == [[0, 1, 255, 0]] * 3


def test_rotation_fills_new_pixels_with_ignore(tmp_path):
    """rotated15 brings black corners into the image: the mask's corners become 255 (not scored), the rest is the
    mask rotated by PIL with nearest-neighbour resampling (class indices are never interpolated)."""
    root = tmp_path / "ds"
    masks = make_voc(root, n_images=2, width=40, height=40)
    ds = VocDataset.open(root)
    variant = ensure_voc_variant(ds, ds.revision(), get_perturbation("rotated15"), 0, tmp_path / "cache")
    for image_id, mask in masks.items():
        image, moved = variant.load_sample(image_id)
        expected = Image.fromarray(mask).rotate(15, resample=Image.Resampling.NEAREST, fillcolor=IGNORE_INDEX)
        assert np.array_equal(moved, np.asarray(expected))
        corners = [moved[0, -1], moved[-1, 0], moved[-1, -1]]  # row 0 is 255 already (the VOC-like border)
        assert corners == [IGNORE_INDEX] * 3 and np.asarray(image)[-1, -1].tolist() == [0, 0, 0]
        assert set(np.unique(moved)) <= {0, 1, 2, IGNORE_INDEX}
        assert (moved == IGNORE_INDEX).sum() > (mask == IGNORE_INDEX).sum()


@pytest.mark.parametrize("kind", ["segmentation", "detection"])
def test_a_variant_whose_annotations_cannot_follow_is_refused_before_any_work(tmp_path, kind):
    """The frame both annotated image variants share (perturbations.cache.ensure_image_variant): "original" is the
    dataset itself; a text perturbation, an unknown kind of argument and an image perturbation with no rule for
    the masks or boxes are refused, naming what was wrong, and nothing is written to the cache."""
    from core.coco import CocoDataset
    from demo.detection_data import build_shapes_dataset
    from perturbations.cache import ensure_coco_variant

    if kind == "segmentation":
        make_voc(tmp_path / "ds", n_images=2)
        ds, ensure = VocDataset.open(tmp_path / "ds"), ensure_voc_variant
        unruled, rule = "elastic_transform-1", "no mask rule for variant 'elastic_transform-1'"
    else:
        ds, ensure = CocoDataset.open(build_shapes_dataset(tmp_path / "ds", n_images=2, seed=0)), ensure_coco_variant
        unruled, rule = "rotated15", "no box transform for variant 'rotated15'"
    cache = tmp_path / "cache"
    assert ensure(ds, ds.revision(), None, 0, cache) is ds and ensure(ds, ds.revision(), "original", 0, cache) is ds
    with pytest.raises(ValueError, match=f"perturbation 'typos' works on text data but dataset '{ds.name}' is an "
                                         f"image {kind} dataset"):
        ensure(ds, ds.revision(), get_perturbation("typos"), 0, cache)
    with pytest.raises(TypeError, match="expected a Perturbation, None or 'original', got 'flipped'"):
        ensure(ds, ds.revision(), "flipped", 0, cache)
    with pytest.raises(ValueError, match=rule):
        ensure(ds, ds.revision(), get_perturbation(unruled), 0, cache)
    assert not cache.exists()
