"""Segmentation masks through the image perturbations, and the variant cache of VOC-layout datasets.

A geometric perturbation moves the mask with the image, pixel for pixel (nearest neighbour: a class index is
never interpolated); a pixel the image gains that came from outside the original (none for the transposes
below) is IGNORE_INDEX (255), so it is not scored. The rules match the PIL transposes of perturbations.image
exactly:

* ``flipped`` (``FLIP_TOP_BOTTOM``): rows reversed;
* ``mirrored`` (``FLIP_LEFT_RIGHT``): columns reversed;
* ``rotated90`` (``ROTATE_90``, counter-clockwise): ``np.rot90(mask, 1)``, a height x width mask becomes width x
  height;
* ``rotated15`` (perturbations.rotation: ``Image.rotate(15)``, same size): the same rotation with nearest-neighbour
  resampling; the corners that enter the frame are 255.

Photometric perturbations (greyscale, inverted, the ImageNet-C corruptions) leave the mask as it is, except
``elastic_transform``, which displaces pixels by a random field the mask cannot follow here: it has no mask rule,
so it is not run on segmentation datasets (as any image perturbation nobody has described for masks).

A VOC variant (``ensure_voc_variant``) is built once into the same cache as every variant
(perturbations.cache: ``<cache>/<dataset>/<perturbation>-<fingerprint>/``, a completion marker, an atomic rename,
a per-variant lock), in the VOC layout: images as PNG (no compression loss), masks moved by their rule. An image
listed in several splits (VOC's ``trainval``) is perturbed once: image i is the i-th of the sorted ids of all
splits, whose position seeds its randomness.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.fingerprint import chain, fingerprint
from core.voc import IGNORE_INDEX, IMAGE_DIR, MASK_DIR, VocDataset, save_mask, write_voc_dataset
from perturbations.base import Perturbation
from perturbations.boxes import KEEPS_BOXES

#: ``mask -> moved mask`` (a (height, width) array of class indices)
MaskTransform = Callable[[np.ndarray], np.ndarray]

#: Version of the mask rules below: part of every segmentation variant's identity and cache fingerprint; bump it
#: when a rule changes, and segmentation variants and their results are made anew.
MASKS_VERSION = 1

#: Perturbations that displace pixels in a way their mask does not follow (no rule: not run on segmentation).
DISPLACING = frozenset(name for name in KEEPS_BOXES if name.startswith("elastic_transform"))
#: The unperturbed dataset and the photometric perturbations: the mask stays where it is.
KEEPS_MASKS = frozenset(KEEPS_BOXES - DISPLACING)


def keep_mask(mask: np.ndarray) -> np.ndarray:
    """The mask of a photometric perturbation: unchanged (a copy)."""
    return np.array(mask, copy=True)


def flip_mask(mask: np.ndarray) -> np.ndarray:
    """The mask of the image flipped upside down (``Image.Transpose.FLIP_TOP_BOTTOM``)."""
    return np.ascontiguousarray(np.asarray(mask)[::-1, :])


def mirror_mask(mask: np.ndarray) -> np.ndarray:
    """The mask of the image mirrored left to right (``Image.Transpose.FLIP_LEFT_RIGHT``)."""
    return np.ascontiguousarray(np.asarray(mask)[:, ::-1])


def rotate90_mask(mask: np.ndarray) -> np.ndarray:
    """The mask of the image rotated 90 degrees counter-clockwise (``Image.Transpose.ROTATE_90``)."""
    return np.ascontiguousarray(np.rot90(np.asarray(mask), 1))


def rotate15_mask(mask: np.ndarray) -> np.ndarray:
    """The mask of the image rotated 15 degrees counter-clockwise about its centre (perturbations.rotation), same
    size, nearest neighbour; pixels from outside the original are IGNORE_INDEX."""
    from PIL import Image

    rotated = Image.fromarray(np.asarray(mask, dtype=np.uint8)).rotate(15, resample=Image.Resampling.NEAREST,
                                                                      fillcolor=IGNORE_INDEX)
    return np.asarray(rotated).copy()


GEOMETRIC: dict[str, MaskTransform] = {"flipped": flip_mask, "mirrored": mirror_mask, "rotated90": rotate90_mask,
                                       "rotated15": rotate15_mask}


def mask_transform(variant: str) -> MaskTransform:
    """The mask rule of an image variant ("original", a perturbation name). ValueError for a variant with no
    rule (text perturbations, pixel-displacing ones, image perturbations nobody has described for masks yet),
    so a mask is never silently wrong."""
    if variant in GEOMETRIC:
        return GEOMETRIC[variant]
    if variant in KEEPS_MASKS:
        return keep_mask
    if variant in DISPLACING:
        raise ValueError(f"no mask rule for variant {variant!r}: it displaces pixels by a random field the mask "
                         "cannot follow")
    raise ValueError(f"no mask rule for variant {variant!r}: add it to perturbations.masks")


def voc_variant_revision(dataset_revision: str) -> str:
    """The revision a segmentation variant is derived from: the dataset's, chained with MASKS_VERSION."""
    return chain(dataset_revision, fingerprint({"masks_version": MASKS_VERSION}))


def _build_voc(dataset: VocDataset, revision: str, perturbation: Perturbation, seed: int, out: Path,
               progress: Callable[[int, int], Any] | None) -> None:
    """Write the perturbed VOC dataset into ``out``: every image through the perturbation, every mask through
    its rule, the split lists as they were; marker last."""
    from perturbations.cache import variant_fingerprint, variant_meta, write_marker

    move = mask_transform(perturbation.name)
    splits = {split: dataset.ids(split) for split in dataset.splits}
    all_ids = sorted({i for ids in splits.values() for i in ids})
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    for index, image_id in enumerate(all_ids):
        image, mask = dataset.load_sample(image_id)
        result = perturbation(image, seed, index=index)
        result = result if result.mode == "RGB" else result.convert("RGB")
        moved = move(mask)
        if result.size != (moved.shape[1], moved.shape[0]):
            raise ValueError(f"perturbation {perturbation.name!r} made image {image_id!r} {result.size[0]}x"
                             f"{result.size[1]} pixels, but its mask rule gives {moved.shape[1]}x{moved.shape[0]}")
        result.save(out / IMAGE_DIR / f"{image_id}.png", format="PNG")
        save_mask(moved, out / MASK_DIR / f"{image_id}.png")
        if progress is not None:
            progress(index + 1, len(all_ids))
    meta = variant_meta(dataset.meta, perturbation, seed, revision)
    meta["variant"]["masks"] = move.__name__
    write_voc_dataset(out, meta, splits)
    write_marker(out, variant_fingerprint(revision, perturbation, seed))


def ensure_voc_variant(dataset: VocDataset, dataset_revision: str, perturbation: Perturbation | str | None,
                       seed: int, cache_root: str | os.PathLike,
                       progress: Callable[[int, int], Any] | None = None) -> VocDataset:
    """The VOC dataset under ``perturbation`` and ``seed`` with its masks moved, built at most once into the
    variant cache; "original" (None) returns ``dataset`` itself. ValueError for a perturbation that is not an
    image one or has no mask rule."""
    from perturbations.cache import ensure_image_variant

    revision = voc_variant_revision(dataset_revision)
    return ensure_image_variant(dataset, revision, perturbation, seed, cache_root, "segmentation", mask_transform,
                                lambda p, tmp: _build_voc(dataset, revision, p, seed, tmp, progress), VocDataset.open)
