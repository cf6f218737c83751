"""Semantic segmentation datasets in the PASCAL VOC layout on disk.

A dataset folder holds::

    dataset.json                  name, task "semantic-segmentation", format "voc", classes (class i is
                                  mask value i), optionally splits (default: every ImageSets/Segmentation list)
                                  and the usual catalogue fields (core.data.dataset_metadata)
    JPEGImages/<id>.jpg           the images (.jpg as in VOC; .png, .jpeg, .bmp, .webp and .tif are read too)
    SegmentationClass/<id>.png    one mask per image, the same size: a single-channel index image whose value
                                  at a pixel is its class index; IGNORE_INDEX (255) marks pixels not scored
    ImageSets/Segmentation/<split>.txt   the image ids of each split, one per line

The real VOC2012 folder (VOCdevkit/VOC2012 with a dataset.json beside its folders) is read as it is: its
SegmentationClass PNGs are palette images whose palette index IS the class (the colours are only for display)
and its object borders are 255. Greyscale (8- or 16-bit) index PNGs are read the same way; an RGB mask is
refused (its colours would need a palette to mean classes).

``VocDataset`` reads and checks it: every problem is a ``DataError`` naming the file (an unreadable image or mask,
an image and mask of different sizes, a mask value that is neither a class index nor 255). ``write_voc_dataset``
writes the metadata and split lists of a folder whose images and masks are in place.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from core.data import DataError, DatasetFolder, dataset_metadata, read_dataset_json

IGNORE_INDEX = 255
#: class indices are mask values 0..254 (255 is IGNORE_INDEX)
MAX_CLASSES = 255
IMAGE_DIR = "JPEGImages"
MASK_DIR = "SegmentationClass"
SPLIT_DIR = "ImageSets/Segmentation"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
EXAMPLES_PER_CLASS = 20
#: mask modes read as class indices: palette, 8-bit grey, 16/32-bit grey, 1-bit
INDEX_MODES = ("P", "L", "I;16", "I;16L", "I;16B", "I", "1")


@dataclass
class VocDataset(DatasetFolder):
    split_file = SPLIT_DIR + "/{split}.txt"
    _ids: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "VocDataset":
        """The dataset folder at ``root``; DataError naming the file when its metadata or split lists are wrong."""
        root = Path(root)
        meta, meta_path = read_dataset_json(root)
        meta = {"name": root.name, **meta}
        classes = meta.get("classes")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
            raise DataError(f"dataset metadata {meta_path}: 'classes' must be a non-empty list of class names "
                            "(class i is mask value i)")
        if len(classes) > MAX_CLASSES:
            raise DataError(f"dataset metadata {meta_path}: {len(classes)} classes; a VOC-layout dataset has at most "
                            f"{MAX_CLASSES} (mask value {IGNORE_INDEX} marks ignored pixels)")
        if meta.get("datatype", "image") != "image":
            raise DataError(f"dataset metadata {meta_path}: a segmentation dataset has datatype 'image', "
                            f"not {meta['datatype']!r}")
        if "splits" not in meta:
            lists = sorted((root / SPLIT_DIR).glob("*.txt"))
            if not lists:
                raise DataError(f"dataset {meta['name']!r}: dataset.json names no splits and {root / SPLIT_DIR} holds "
                                "no <split>.txt lists")
            meta["splits"] = [p.stem for p in lists]
        return cls(root, {**meta, "datatype": "image"})

    # ------------------------------------------------------------------ metadata
    @property
    def datatype(self) -> str:
        return "image"

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def ids(self, split: str) -> list[str]:
        """The image ids of the split, in list order."""
        if split not in self._ids:
            path = self.split_path(split)
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise DataError(f"cannot read the split list {path}: {exc}") from None
            ids = [line.strip() for line in lines if line.strip()]
            seen: set[str] = set()
            for image_id in ids:
                if image_id in seen:
                    raise DataError(f"{path}: image id {image_id!r} is listed twice")
                if "/" in image_id or image_id.startswith("."):
                    raise DataError(f"{path}: {image_id!r} is not an image id (a file name without folder or suffix)")
                seen.add(image_id)
            self._ids[split] = ids
        return list(self._ids[split])

    # ------------------------------------------------------------------ files
    def image_path(self, image_id: str) -> Path:
        folder = self.root / IMAGE_DIR
        for suffix in IMAGE_SUFFIXES:
            path = folder / f"{image_id}{suffix}"
            if path.is_file():
                return path
        raise DataError(f"dataset {self.name!r}: no image for id {image_id!r} in {folder} "
                        f"(looked for {', '.join(image_id + s for s in IMAGE_SUFFIXES[:3])}, ...)")

    def mask_path(self, image_id: str) -> Path:
        return self.root / MASK_DIR / f"{image_id}.png"

    def load_image(self, image_id: str) -> Any:
        """The image decoded to RGB (a PIL image); DataError naming the file when it cannot be read."""
        return self.read_image(self.image_path(image_id))

    def image_size(self, image_id: str) -> tuple[int, int]:
        """(width, height) of the image, read from its header."""
        from PIL import Image

        path = self.image_path(image_id)
        try:
            with Image.open(path) as img:
                return img.size
        except (OSError, ValueError) as exc:
            raise DataError(f"dataset {self.name!r}: cannot read image {path}: {exc}") from None

    def load_mask(self, image_id: str, size: tuple[int, int] | None = None) -> np.ndarray:
        """The mask as a (height, width) uint8 array of class indices (IGNORE_INDEX where not scored), checked:
        DataError naming the file when it is unreadable, not an index image, of another size than ``size``
        (the image's width, height) or holds a value that is neither a class index nor IGNORE_INDEX."""
        from PIL import Image

        path = self.mask_path(image_id)
        try:
            with Image.open(path) as img:
                mode = img.mode
                if mode not in INDEX_MODES:
                    raise DataError(f"dataset {self.name!r}: mask {path} is a {mode} image; a class mask is a "
                                    "single-channel index PNG (palette or greyscale) whose values are class indices")
                values = np.asarray(img)
        except FileNotFoundError:
            raise DataError(f"dataset {self.name!r}: the mask of image {image_id!r} is missing ({path})") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"dataset {self.name!r}: cannot read mask {path}: {exc}") from None
        if values.ndim != 2:
            raise DataError(f"dataset {self.name!r}: mask {path} has shape {values.shape}, not (height, width)")
        if size is not None and (values.shape[1], values.shape[0]) != tuple(size):
            raise DataError(f"dataset {self.name!r}: mask {path} is {values.shape[1]}x{values.shape[0]} pixels but its "
                            f"image {self.image_path(image_id).name} is {size[0]}x{size[1]}")
        values = values.astype(np.int64)
        bad = (values != IGNORE_INDEX) & ((values < 0) | (values >= len(self.classes)))
        if bad.any():
            wrong = sorted({int(v) for v in np.unique(values[bad])})
            raise DataError(f"dataset {self.name!r}: mask {path} holds value(s) {wrong[:10]} outside the "
                            f"{len(self.classes)} classes (0..{len(self.classes) - 1}; {IGNORE_INDEX} = ignore)")
        return values.astype(np.uint8)

    def load_sample(self, image_id: str) -> tuple[Any, np.ndarray]:
        """(RGB image, mask) of one image, the mask checked against the image's size."""
        image = self.load_image(image_id)
        return image, self.load_mask(image_id, image.size)

    # ------------------------------------------------------------------ identity and registration
    def content_files(self, split: str) -> Iterator[Path]:
        for image_id in self.ids(split):
            yield self.image_path(image_id)
            yield self.mask_path(image_id)

    def dataset_doc(self, task: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The registered document and examples; every mask is read and checked against its image.

        A split's ``total`` is its number of images, ``class_counts`` the images in which each class occurs and
        ``pixel_counts`` its pixels (``ignored_pixels`` apart); examples are up to 20 image ids per class, from the
        train split when there is one."""
        classes = self.classes
        n = len(classes)
        per_class = [0] * n
        examples: list[dict[str, Any]] = []
        splits = []
        for split in self.splits:
            images = np.zeros(n, dtype=np.int64)
            pixels = np.zeros(n, dtype=np.int64)
            ignored = 0
            ids = self.ids(split)
            for image_id in ids:
                mask = self.load_mask(image_id, self.image_size(image_id))
                counts = np.bincount(mask.reshape(-1), minlength=IGNORE_INDEX + 1)
                ignored += int(counts[IGNORE_INDEX])
                present = np.flatnonzero(counts[:n])
                images[present] += 1
                pixels += counts[:n]
                if split == "train" or "train" not in self.splits:
                    for k in present:
                        if per_class[k] < EXAMPLES_PER_CLASS:
                            per_class[k] += 1
                            examples.append({"class_id": int(k), "example": image_id})
            splits.append({"name": split, "total": len(ids),
                           "class_counts": {c: int(v) for c, v in zip(classes, images)},
                           "pixel_counts": {c: int(v) for c, v in zip(classes, pixels)}, "ignored_pixels": ignored})
        doc = {
            "name": self.name,
            "task": task,
            "datatype": "image",
            "format": "voc",
            **dataset_metadata(self.meta),
            "classes": [{"id": i, "label": c, "extra": {}} for i, c in enumerate(classes)],
            "ignore_index": IGNORE_INDEX,
            "splits": splits,
            "revision": self.revision(),
            "path": str(self.root.resolve()),
        }
        return doc, examples


def write_voc_dataset(root: str | os.PathLike, meta: dict[str, Any], splits: dict[str, list[str]]) -> Path:
    """Write dataset.json (``meta`` with format "voc" and the split names) and one split list per split; the
    images and masks must already be in JPEGImages/ and SegmentationClass/."""
    root = Path(root)
    (root / SPLIT_DIR).mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (root / SPLIT_DIR / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    meta = {**meta, "format": "voc", "splits": sorted(splits)}
    (root / "dataset.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return root


def save_mask(mask: np.ndarray, path: str | os.PathLike) -> None:
    """Write a class-index mask ((height, width) values 0..255) as an 8-bit greyscale PNG."""
    from PIL import Image

    values = np.asarray(mask)
    if values.ndim != 2 or values.size and (values.min() < 0 or values.max() > IGNORE_INDEX):
        raise ValueError(f"a mask is a (height, width) array of values 0..{IGNORE_INDEX}, got shape {values.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8)).save(path, format="PNG")
