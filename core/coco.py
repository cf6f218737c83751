"""COCO-format object detection datasets on disk.

A dataset folder holds::

    dataset.json        metadata: name, version, datatype "image", task "object-detection", description,
                        homepage, year, reference, compatible_with, supported_variants, synonyms, splits,
                        classes (category names in id order), categories ({id, name, supercategory}) and
                        optionally modules (detection module kinds to run beyond the default ones, e.g.
                        ["mtcnn-face-detection"]; see pipeline.catalog)
    <split>.json        COCO instances: images ({id, file_name, width, height}), annotations ({id, image_id,
                        category_id, bbox [x, y, w, h] in pixels, area, iscrowd}) and categories
    images/             the image files; ``file_name`` is relative to it (``image_dirs`` in dataset.json
                        may name another folder per split, e.g. {"val2017": "val2017"})

``CocoDataset`` reads and validates it (every problem is a ``DataError`` that names the file and the entry);
``write_coco_dataset`` writes one. Category ids need not be contiguous (COCO's are 1..90 with gaps):
``classes[i]`` is the name of ``category_ids[i]``, in increasing id order.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from core.data import DataError, DatasetFolder, dataset_metadata, read_dataset_json, read_json_file

EXAMPLES_PER_CLASS = 20
DEFAULT_IMAGE_DIR = "images"


@dataclass
class CocoDataset(DatasetFolder):
    split_file = "{split}.json"
    _instances: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, root: str | os.PathLike) -> "CocoDataset":
        root = Path(root)
        meta, meta_path = read_dataset_json(root)
        for key in ("name", "splits"):
            if key not in meta:
                raise DataError(f"dataset metadata {meta_path} has no {key!r}")
        if meta.get("datatype", "image") != "image":
            raise DataError(f"dataset metadata {meta_path}: a COCO dataset has datatype 'image', not {meta['datatype']!r}")
        ds = cls(root, meta)
        if not meta.get("categories"):  # take them from the first split's instances file
            if not ds.splits:
                raise DataError(f"dataset metadata {meta_path} lists no splits")
            ds.meta = dict(meta, categories=ds._load(ds.splits[0])["categories"])
        ds.meta["categories"] = _check_categories(ds.meta["categories"], meta_path)
        return ds

    # ------------------------------------------------------------------ metadata
    @property
    def datatype(self) -> str:
        return "image"

    @property
    def task(self) -> str:
        return "object-detection"

    @property
    def categories(self) -> list[dict[str, Any]]:
        """``{"id", "name", "supercategory"}`` per category, in increasing id order."""
        return [dict(c) for c in self.meta["categories"]]

    @property
    def classes(self) -> list[str]:
        return [c["name"] for c in self.meta["categories"]]

    @property
    def category_ids(self) -> list[int]:
        """``category_ids[i]`` is the COCO id of ``classes[i]``."""
        return [int(c["id"]) for c in self.meta["categories"]]

    @property
    def supercategories(self) -> list[str | None]:
        return [c.get("supercategory") for c in self.meta["categories"]]

    def image_dir(self, split: str) -> Path:
        return self.root / (self.meta.get("image_dirs") or {}).get(split, DEFAULT_IMAGE_DIR)

    # ------------------------------------------------------------------ split contents
    def images(self, split: str) -> list[dict[str, Any]]:
        """The split's image entries (id, file_name, width, height, and ``_split`` so that ``load_image``
        finds the split's image folder), in file order."""
        return [dict(img) for img in self._load(split)["images"]]

    def annotations(self, split: str) -> dict[int, list[dict[str, Any]]]:
        """Annotations grouped by image id; every image of the split has an entry (maybe empty)."""
        data = self._load(split)
        out: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in data["images"]}
        for ann in data["annotations"]:
            out[ann["image_id"]].append(dict(ann))
        return out

    def instances(self, split: str) -> dict[str, Any]:
        """The validated COCO instances dict (images, annotations with area/iscrowd filled, categories)."""
        data = self._load(split)
        return {k: [dict(x) for x in data[k]] for k in ("images", "annotations", "categories")}

    def image_path(self, image: dict[str, Any], split: str | None = None) -> Path:
        split = split or image.get("_split") or (self.splits[0] if len(self.splits) == 1 else None)
        base = self.image_dir(split) if split else self.root / DEFAULT_IMAGE_DIR
        return base / image["file_name"]

    def load_image(self, image: dict[str, Any]) -> Any:
        """The image decoded to RGB (a PIL image)."""
        return self.read_image(self.image_path(image), f"image id {image.get('id')!r}")

    def class_counts(self, split: str) -> dict[str, int]:
        """Number of annotations per class in the split."""
        index = dict(zip(self.category_ids, self.classes))
        counts = {c: 0 for c in self.classes}
        for ann in self._load(split)["annotations"]:
            counts[index[ann["category_id"]]] += 1
        return counts

    def content_files(self, split: str) -> Iterator[Path]:
        return (self.image_path(img) for img in self._load(split)["images"])

    def dataset_doc(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The dataset document and examples, in the shape of ``scraper.datasets.dataset_doc``.

        Classes carry ``extra = {"supercategory", "category_id"}``; a split's ``total`` is its number of
        images and its ``class_counts`` the number of annotations per class; examples are up to 20 image
        file names per class, from the train split when there is one, else from every split.
        """
        meta = self.meta
        classes = self.classes
        cat_index = {cid: i for i, cid in enumerate(self.category_ids)}
        per_class = {i: 0 for i in range(len(classes))}
        examples: list[dict[str, Any]] = []
        splits = []
        for split in self.splits:
            data = self._load(split)
            counts = {c: 0 for c in classes}
            file_of = {img["id"]: img["file_name"] for img in data["images"]}
            seen: set[tuple[int, int]] = set()
            for ann in data["annotations"]:
                k = cat_index[ann["category_id"]]
                counts[classes[k]] += 1
                if split == "train" or "train" not in self.splits:
                    key = (k, ann["image_id"])
                    if per_class[k] < EXAMPLES_PER_CLASS and key not in seen:
                        seen.add(key)
                        per_class[k] += 1
                        examples.append({"class_id": k, "example": file_of[ann["image_id"]]})
            splits.append({"name": split, "total": len(data["images"]), "class_counts": counts,
                           "n_annotations": len(data["annotations"])})
        doc = {
            "name": self.name,
            "datatype": "image",
            "task": "object-detection",
            "format": "coco",
            **dataset_metadata(meta),
            "classes": [
                {"id": i, "label": c["name"], "extra": {"supercategory": c.get("supercategory"), "category_id": int(c["id"])}}
                for i, c in enumerate(self.meta["categories"])
            ],
            "splits": splits,
            "revision": self.revision(),
            "path": str(self.root.resolve()),
        }
        return doc, examples

    # ------------------------------------------------------------------ reading and validation
    def _load(self, split: str) -> dict[str, Any]:
        if split not in self._instances:
            self._instances[split] = self._read_split(split)
        return self._instances[split]

    def _read_split(self, split: str) -> dict[str, Any]:
        path = self.split_path(split)
        data = read_json_file(path, f"COCO instances file of split {split!r}")
        if not isinstance(data, dict):
            raise DataError(f"{path}: a COCO instances file is a JSON object, got {type(data).__name__}")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DataError(f"{path}: {key!r} is missing or not a list")
        categories = _check_categories(data["categories"], path)
        if "categories" in self.meta and [(c["id"], c["name"]) for c in categories] != [
            (int(c["id"]), c["name"]) for c in _check_categories(self.meta["categories"], self.root / "dataset.json")
        ]:
            raise DataError(f"{path}: its categories differ from those of dataset.json (or of the other splits)")
        cat_ids = {c["id"] for c in categories}

        images = []
        image_ids: set[int] = set()
        for n, img in enumerate(data["images"]):
            where = f"{path}: image #{n}"
            if not isinstance(img, dict):
                raise DataError(f"{where} is not an object")
            try:
                img_id, file_name = img["id"], img["file_name"]
                width, height = img["width"], img["height"]
            except KeyError as exc:
                raise DataError(f"{where} has no {exc.args[0]!r}") from None
            if not isinstance(img_id, int) or isinstance(img_id, bool):
                raise DataError(f"{where}: id {img_id!r} is not an integer")
            if img_id in image_ids:
                raise DataError(f"{where}: image id {img_id} appears twice")
            if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
                raise DataError(f"{where} (id {img_id}): width/height {width!r}x{height!r} are not positive integers")
            entry = {"id": img_id, "file_name": str(file_name), "width": int(width), "height": int(height), "_split": split}
            file_path = self.image_path(entry)
            if not file_path.is_file():
                raise DataError(f"dataset {self.name!r} split {split!r}: image {file_name!r} (id {img_id}) is missing: "
                                f"{file_path}")
            image_ids.add(img_id)
            images.append(entry)

        annotations = []
        ann_ids: set[Any] = set()
        for n, ann in enumerate(data["annotations"]):
            where = f"{path}: annotation #{n}"
            if not isinstance(ann, dict):
                raise DataError(f"{where} is not an object")
            try:
                ann_id, image_id, cat_id, bbox = ann["id"], ann["image_id"], ann["category_id"], ann["bbox"]
            except KeyError as exc:
                raise DataError(f"{where} has no {exc.args[0]!r}") from None
            where = f"{path}: annotation {ann_id!r}"
            if ann_id in ann_ids:
                raise DataError(f"{where} appears twice")
            if image_id not in image_ids:
                raise DataError(f"{where} refers to image id {image_id!r}, which is not in the split")
            if cat_id not in cat_ids:
                raise DataError(f"{where} has unknown category_id {cat_id!r}; the categories are {sorted(cat_ids)}")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_finite(v) for v in bbox)):
                raise DataError(f"{where}: bbox {bbox!r} is not [x, y, width, height] of 4 finite numbers")
            if bbox[2] < 0 or bbox[3] < 0:
                raise DataError(f"{where}: bbox {bbox!r} has a negative width or height")
            area = ann.get("area", float(bbox[2]) * float(bbox[3]))
            if not _is_finite(area) or area < 0:
                raise DataError(f"{where}: area {area!r} is not a non-negative number")
            ann_ids.add(ann_id)
            annotations.append({**ann, "bbox": [float(v) for v in bbox], "area": float(area),
                                "iscrowd": int(bool(ann.get("iscrowd", 0)))})
        return {"images": images, "annotations": annotations, "categories": categories}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_categories(categories: Any, path: Path) -> list[dict[str, Any]]:
    """Validated categories sorted by id: unique integer ids, unique non-empty names."""
    if not isinstance(categories, list) or not categories:
        raise DataError(f"{path}: 'categories' must be a non-empty list")
    out = []
    for n, c in enumerate(categories):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str) or not c["name"]:
            raise DataError(f"{path}: category #{n} {c!r} needs an integer 'id' and a non-empty 'name'")
        out.append({"id": int(c["id"]), "name": c["name"], "supercategory": c.get("supercategory")})
    ids = [c["id"] for c in out]
    names = [c["name"] for c in out]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: duplicate category ids {sorted({i for i in ids if ids.count(i) > 1})}")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: duplicate category names {sorted({x for x in names if names.count(x) > 1})}")
    return sorted(out, key=lambda c: c["id"])


def write_coco_dataset(folder: str | os.PathLike, meta: dict[str, Any], splits: dict[str, dict[str, list]]) -> Path:
    """Write dataset.json and one ``<split>.json`` per split; image files must already be under ``folder``.

    ``meta`` holds the dataset metadata including ``categories`` ({id, name, supercategory}); ``splits``
    maps a split name to ``{"images": [...], "annotations": [...]}`` (COCO entries). The categories are
    written into every instances file, ``classes`` and ``splits`` into dataset.json.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    if not meta.get("categories"):
        raise DataError("write_coco_dataset: meta has no 'categories'")
    categories = _check_categories(meta["categories"], folder / "dataset.json")
    meta.setdefault("datatype", "image")
    meta.setdefault("task", "object-detection")
    meta.setdefault("format", "coco")
    meta["categories"] = categories
    meta["classes"] = [c["name"] for c in categories]
    meta["splits"] = sorted(splits)
    for split, content in splits.items():
        instances = {
            "info": {"description": meta.get("description"), "version": str(meta.get("version", "1")),
                     "year": meta.get("year")},
            "images": list(content.get("images", [])),
            "annotations": list(content.get("annotations", [])),
            "categories": categories,
        }
        (folder / f"{split}.json").write_text(json.dumps(instances, ensure_ascii=False))
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    return folder
