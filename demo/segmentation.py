"""The demo's semantic segmentation case: a small honest VOC-layout set and a tiny SegFormer trained on it here.

* ``shape-masks``: filled rectangles, ellipses and triangles in saturated colours drawn on 64x64 crops of real
  photos from ``skimage.data`` (the shapes and photos of demo.detection_data), with their exact per-pixel masks
  (classes background, rectangle, ellipse, triangle; a later shape covers an earlier one). As VOC marks object
  borders, each shape's one-pixel inner border is 255 (not scored). Train and test splits, drawn with different
  seeds. Nothing is downloaded.
* ``demo/segformer-shape-masks``: a Transformers ``SegformerForSemanticSegmentation`` with a tiny configuration
  (hidden sizes 16/32/64/96, one layer per stage, first stage at 1/4 resolution, decoder width 64; about 0.24M
  parameters) trained from random initialisation on the train split with AdamW for a fixed number of epochs
  (cross-entropy with the background weighted 0.25, as it covers most pixels), saved as safetensors with its image
  processor and a model card that states the seconds it took, its test mIoU and pixel accuracy measured at build
  time (processors.segmentation, the metrics zooeval stores) and those of predicting background everywhere; a
  model that does not beat that baseline is labelled a plumbing check in its card.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.voc import IGNORE_INDEX, IMAGE_DIR, MASK_DIR, VocDataset, save_mask, write_voc_dataset

DATASET = "shape-masks"
MODEL = "demo/segformer-shape-masks"
CLASSES = ["background", "rectangle", "ellipse", "triangle"]
SIZE = 64
SPLIT_SIZES = {"train": 96, "test": 48}
SPLIT_SIZES_QUICK = {"train": 64, "test": 24}
EPOCHS, EPOCHS_QUICK = 14, 12
#: the loss weight of the background class (most pixels), so the shapes are not drowned out
BACKGROUND_WEIGHT = 0.25
SEED = 0
META = {
    "name": DATASET,
    "version": "1",
    "datatype": "image",
    "task": "semantic-segmentation",
    "description": "Filled rectangles, ellipses and triangles drawn on 64x64 crops of real photos (scikit-image data) "
                   "with exact per-pixel masks; each shape's one-pixel border is 255 (not scored), as in VOC.",
    "homepage": "https://scikit-image.org/docs/stable/api/skimage.data.html",
    "year": 2026,
    "classes": CLASSES,
    "supported_variants": ["greyscale", "flipped", "mirrored", "inverted", "rotated90", "rotated15"],
    "synonyms": {"rect": "rectangle", "box": "rectangle", "square": "rectangle", "circle": "ellipse", "oval": "ellipse",
                 "bg": "background"},
}


def inner_border(mask: np.ndarray) -> np.ndarray:
    """The pixels of a boolean mask with a 4-neighbour outside it (or on the image edge)."""
    padded = np.pad(mask, 1, constant_values=False)
    inside = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inside


def render(rng: np.random.Generator, photo: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One image (size x size RGB) of 1 to 3 shapes on a crop of ``photo``, and its class mask."""
    from demo.detection_data import PALETTE, SHAPES, _crop, shape_mask

    canvas = _crop(rng, photo, size, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        shape = int(rng.integers(len(SHAPES)))
        w, h = int(rng.integers(14, 37)), int(rng.integers(14, 37))
        x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        drawn = shape_mask(SHAPES[shape], x0, y0, x0 + w - 1, y0 + h - 1, size, size, rng)
        canvas[drawn] = PALETTE[int(rng.integers(len(PALETTE)))]
        mask[drawn] = CLASSES.index(SHAPES[shape])
        mask[inner_border(drawn)] = IGNORE_INDEX
    return canvas, mask


def build_shape_masks(folder: str | Path, sizes: dict[str, int] = SPLIT_SIZES, seed: int = SEED) -> Path:
    """Write the shape-masks set (VOC layout) to ``folder``; returns it."""
    from PIL import Image

    from demo.detection_data import SHAPE_BACKGROUND_PHOTOS, _photo

    folder = Path(folder)
    photos = [_photo(name) for name in SHAPE_BACKGROUND_PHOTOS]
    splits: dict[str, list[str]] = {}
    for k, (split, n) in enumerate(sorted(sizes.items())):
        rng = np.random.default_rng([seed, k])
        ids = []
        for i in range(n):
            image, mask = render(rng, photos[i % len(photos)])
            image_id = f"{split}_{i:05d}"
            (folder / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / IMAGE_DIR / f"{image_id}.png", compress_level=1)
            save_mask(mask, folder / MASK_DIR / f"{image_id}.png")
            ids.append(image_id)
        splits[split] = ids
    return write_voc_dataset(folder, META, splits)


def tiny_segformer_config(id2label: dict[int, str]):
    """The tiny SegFormer configuration the demo trains (about 0.24M parameters)."""
    from transformers import SegformerConfig

    return SegformerConfig(num_channels=3, num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[4, 2, 1, 1],
                           hidden_sizes=[16, 32, 64, 96], patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
                           num_attention_heads=[1, 1, 2, 2], mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=64,
                           id2label={int(k): v for k, v in id2label.items()}, label2id={v: int(k) for k, v in id2label.items()},
                           semantic_loss_ignore_index=IGNORE_INDEX)


def image_processor(size: int = SIZE):
    """The SegFormer image processor of the demo model: resize to size x size, ImageNet normalisation."""
    from transformers import SegformerImageProcessor

    return SegformerImageProcessor(size={"height": size, "width": size}, do_reduce_labels=False)


def _tensors(dataset: VocDataset, split: str, processor) -> tuple[Any, Any]:
    import torch

    samples = [dataset.load_sample(i) for i in dataset.ids(split)]
    pixels = processor(images=[img for img, _ in samples], return_tensors="pt")["pixel_values"]
    return pixels, torch.as_tensor(np.stack([m for _, m in samples]).astype(np.int64))


def train_segformer(dataset_dir: Path, epochs: int, seed: int = SEED,
                    log: Callable[[str], Any] = print) -> tuple[Any, dict[str, Any]]:
    """Train the tiny SegFormer on the train split; returns (model in eval mode, facts: epochs, seconds, test
    mIoU and pixel accuracy measured on the test split)."""
    import torch
    from transformers import SegformerForSemanticSegmentation

    from processors.segmentation import SegmentationProcessor

    dataset = VocDataset.open(dataset_dir)
    processor = image_processor()
    x_train, y_train = _tensors(dataset, "train", processor)
    x_test, y_test = _tensors(dataset, "test", processor)
    torch.manual_seed(seed)
    model = SegformerForSemanticSegmentation(tiny_segformer_config(dict(enumerate(dataset.classes))))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    class_weights = torch.tensor([BACKGROUND_WEIGHT] + [1.0] * (len(dataset.classes) - 1))
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), 16):
            idx = order[start : start + 16]
            logits = torch.nn.functional.interpolate(model(pixel_values=x_train[idx]).logits, size=y_train.shape[-2:],
                                                     mode="bilinear", align_corners=False)
            loss = torch.nn.functional.cross_entropy(logits, y_train[idx], weight=class_weights, ignore_index=IGNORE_INDEX)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        if epoch % 5 == 4 or epoch == epochs - 1:
            log(f"segformer epoch {epoch + 1}/{epochs}: train loss {total / len(order):.3f}")
    model.eval()
    seconds = time.perf_counter() - t0
    metrics = SegmentationProcessor(dataset.classes)
    baseline = SegmentationProcessor(dataset.classes)  # "background" everywhere
    with torch.inference_mode():
        logits = model(pixel_values=x_test).logits
        up = torch.nn.functional.interpolate(logits, size=y_test.shape[-2:], mode="bilinear", align_corners=False)
        for truth, pred in zip(y_test.numpy(), up.argmax(1).numpy()):
            metrics.add_image(truth, pred)
            baseline.add_image(truth, np.zeros_like(pred))
    overall, trivial = metrics.compute()["overall"], baseline.compute()["overall"]
    return model, {"epochs": epochs, "train_seconds": round(seconds, 1), "train_images": len(x_train),
                   "test_images": len(x_test), "test_mean_iou": overall["mean_iou"],
                   "test_pixel_accuracy": overall["pixel_accuracy"], "background_only_mean_iou": trivial["mean_iou"],
                   "background_only_pixel_accuracy": trivial["pixel_accuracy"],
                   "beats_background_only": overall["mean_iou"] > trivial["mean_iou"], "seed": seed,
                   "parameters": sum(p.numel() for p in model.parameters())}


def model_card_text(info: dict[str, Any]) -> str:
    """The demo SegFormer's model card (front matter as the demo's other cards)."""
    from demo.sources import model_card

    above = "above" if info["test_pixel_accuracy"] > info["background_only_pixel_accuracy"] else "below"
    verdict = (f"Its mIoU is above that baseline's and its pixel accuracy {above} it." if info["beats_background_only"]
               else "PLUMBING CHECK ONLY: in its short training it learned no more than predicting background "
                    "everywhere, so its numbers check zooeval's segmentation path, not a segmenter.")
    baseline = (f"mIoU {info['background_only_mean_iou']:.3f} and pixel accuracy "
                f"{info['background_only_pixel_accuracy']:.3f}")
    front = {"pipeline_tag": "image-segmentation", "library_name": "transformers", "license": "apache-2.0",
             "datasets": [DATASET], "metrics": ["mean_iou"], "tags": ["semantic-segmentation", "segformer", "zooeval-demo"]}
    body = f"""
# {MODEL}

A tiny SegFormer (Xie et al., SegFormer, arXiv:2105.15203; hidden sizes 16/32/64/96, one layer per stage,
{info['parameters']:,} parameters) trained from random initialisation for the zooeval demo zoo on the
`{DATASET}` train split ({info['train_images']} 64x64 images of shapes drawn on real photos; {info['epochs']}
epochs, AdamW, background loss weight {BACKGROUND_WEIGHT}, seed {info['seed']}).

Labels: {', '.join(f'{i} = {c}' for i, c in enumerate(CLASSES))}.

On the `{DATASET}` test split ({info['test_images']} images) at build time:
mIoU {info['test_mean_iou']:.3f}, pixel accuracy {info['test_pixel_accuracy']:.3f}.
Predicting "background" everywhere scores {baseline} there.
{verdict}
It has seen nothing but these synthetic shapes.
"""
    return model_card(front, body)


def build_dataset(tmp: Path, quick: bool) -> dict[str, Any]:
    """Write the shape-masks set into ``tmp`` (quick: fewer images); returns its split sizes."""
    sizes = SPLIT_SIZES_QUICK if quick else SPLIT_SIZES
    build_shape_masks(tmp, sizes)
    return {"name": DATASET, "splits": dict(sizes)}


def build_model(tmp: Path, dataset_dir: Path, quick: bool, log: Callable[[str], Any]) -> dict[str, Any]:
    """Train the SegFormer on the shape-masks set at ``dataset_dir`` and write it into ``tmp`` (config.json,
    model.safetensors, preprocessor_config.json, README.md); returns the facts its card states."""
    model, info = train_segformer(Path(dataset_dir), EPOCHS_QUICK if quick else EPOCHS, log=log)
    tmp = Path(tmp)
    model.save_pretrained(str(tmp), safe_serialization=True)
    image_processor().save_pretrained(str(tmp))
    (tmp / "README.md").write_text(model_card_text(info), encoding="utf-8")
    log(f"{MODEL}: trained in {info['train_seconds']} s; test mIoU {info['test_mean_iou']:.3f} (background only "
        f"{info['background_only_mean_iou']:.3f}), pixel accuracy {info['test_pixel_accuracy']:.3f}")
    return {"name": MODEL, **info}


def build_segmentation(tmp_dataset_dir: Path, tmp_model_dir: Path, quick: bool, log: Callable[[str], Any]) -> dict[str, Any]:
    """Write the shape-masks set into ``tmp_dataset_dir`` and the SegFormer trained on it into ``tmp_model_dir``.
    Returns ``{"dataset": {name, splits}, "model": {name, epochs, train_seconds, test_mean_iou, test_pixel_accuracy,
    background_only_mean_iou, ...}}``."""
    return {"dataset": build_dataset(Path(tmp_dataset_dir), quick),
            "model": build_model(Path(tmp_model_dir), Path(tmp_dataset_dir), quick, log)}
