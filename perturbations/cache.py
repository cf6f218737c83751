"""On-disk cache of perturbed dataset variants.

A variant of a dataset under a perturbation and seed lives at
``cache_root/<dataset name>/<perturbation name>-<fingerprint[:16]>/`` in the LocalDataset format
(core.data), or, for a COCO detection dataset (``ensure_coco_variant``), in the core.coco format
with its boxes moved by perturbations.boxes. It is built once, in a temporary sibling folder, finished with a ``_COMPLETE`` marker
and renamed into place atomically, so a folder without the marker is never trusted. A per-variant
``fcntl`` lock keeps concurrent processes from doing the same work twice.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from core.data import DataError, LocalDataset, write_dataset
from core.fingerprint import chain, fingerprint
from perturbations.base import Perturbation

COMPLETE_MARKER = "_COMPLETE"
ORIGINAL = "original"

#: ``progress(done, total)`` is called after each sample is written (counts over all splits).
Progress = Callable[[int, int], Any]


def is_original(perturbation: Perturbation | str | None) -> bool:
    return perturbation is None or perturbation == ORIGINAL


def variant_fingerprint(dataset_revision: str, perturbation: Perturbation | str | None, seed: int) -> str:
    """Chained fingerprint of a variant: chain(dataset revision, fingerprint(identity + seed)).

    For the pseudo-variant "original" (None) it is the dataset revision itself.
    """
    if is_original(perturbation):
        return dataset_revision
    return chain(dataset_revision, fingerprint({**perturbation.identity(), "seed": int(seed)}))


def _safe(name: str) -> str:
    return name.replace(os.sep, "__").replace("/", "__")


def variant_path(cache_root: str | os.PathLike, dataset: LocalDataset, dataset_revision: str,
                 perturbation: Perturbation, seed: int) -> Path:
    """Where the variant lives (whether or not it is built yet)."""
    fp = variant_fingerprint(dataset_revision, perturbation, seed)
    return Path(cache_root) / _safe(dataset.name) / f"{_safe(perturbation.name)}-{fp[:16]}"


def is_complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def variant_meta(meta: dict[str, Any], perturbation: Perturbation, seed: int, dataset_revision: str,
                  drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A variant's dataset metadata: the parent's, with the variant's description and method (thesis table
    3.2e) and the parent revision it was made from."""
    out = {k: v for k, v in meta.items() if k not in ("variant", "parent_revision", *drop)}
    out["variant"] = {
        "name": perturbation.name,
        "version": perturbation.version,
        "params": perturbation.params,
        "seed": int(seed),
        "description": perturbation.description,
        "method": perturbation.method,
    }
    out["parent_revision"] = dataset_revision
    return out


#: The fields of a LocalDataset row each kind of perturbation changes: an image file, or every text of the row
#: (a sentence pair has two).
PERTURBED_FIELDS = {"image": ("file",), "text": ("text", "text_pair")}


def _perturb_row(dataset: LocalDataset, row: dict[str, Any], perturbation: Perturbation, seed: int, index: int,
                 out: Path, split: str) -> dict[str, Any]:
    """A row with its image (written as PNG under ``out``) or its texts perturbed (sample ``index`` of its split)."""
    new_row = dict(row)
    if perturbation.datatype == "image":
        result = perturbation(dataset.load_image(row), seed, index=index)
        rel = f"images/{_safe(split)}/{index:06d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (result if result.mode == "RGB" else result.convert("RGB")).save(out / rel, format="PNG")
        new_row["file"] = rel
        return new_row
    for key in PERTURBED_FIELDS["text"]:
        if key in row:
            result = perturbation(row[key], seed, index=index)
            if not isinstance(result, str):
                raise TypeError(f"text perturbation {perturbation.name!r} returned {type(result).__name__}")
            new_row[key] = result
    return new_row


def _build(dataset: LocalDataset, dataset_revision: str, perturbation: Perturbation, seed: int,
           out: Path, progress: Progress | None) -> None:
    """Write the whole variant into ``out`` (an empty folder), marker last."""
    all_rows = {split: dataset.rows(split) for split in dataset.splits}
    total = sum(len(r) for r in all_rows.values())
    done = 0
    new_splits: dict[str, list[dict[str, Any]]] = {}
    for split, rows in all_rows.items():
        new_rows = []
        for i, row in enumerate(rows):
            new_rows.append(_perturb_row(dataset, row, perturbation, seed, i, out, split))
            done += 1
            if progress is not None:
                progress(done, total)
        new_splits[split] = new_rows
    write_dataset(out, variant_meta(dataset.meta, perturbation, seed, dataset_revision), new_splits)
    write_marker(out, variant_fingerprint(dataset_revision, perturbation, seed))


def ensure_variant(dataset: LocalDataset, dataset_revision: str, perturbation: Perturbation | str | None,
                   seed: int, cache_root: str | os.PathLike, progress: Progress | None = None) -> LocalDataset:
    """The variant of every split of ``dataset`` under ``perturbation`` and ``seed``, built at most once.

    Sample i of a split (its position in the split) gets ``perturbation(input, seed, index=i)``: an image
    perturbation changes the row's image, a text one every text of the row (PERTURBED_FIELDS). The
    pseudo-variant "original" (``None`` or the string "original") returns ``dataset`` unchanged.

    Raises ValueError when the dataset's rows have nothing the perturbation changes, and lets
    core.data.DataError from unreadable source files propagate (no complete variant is left behind).
    """
    if is_original(perturbation):
        return dataset
    if not isinstance(perturbation, Perturbation):
        raise TypeError(f"expected a Perturbation, None or {ORIGINAL!r}, got {perturbation!r}")
    fields = PERTURBED_FIELDS.get(perturbation.datatype, ())
    first = next((rows[0] for rows in (dataset.rows(s) for s in dataset.splits) if rows), {})
    if not any(f in first for f in fields):
        raise ValueError(
            f"perturbation {perturbation.name!r} works on {perturbation.datatype} data but dataset "
            f"{dataset.name!r} holds {dataset.datatype} data"
        )

    final = variant_path(cache_root, dataset, dataset_revision, perturbation, seed)
    return ensure_built(final, lambda tmp: _build(dataset, dataset_revision, perturbation, seed, tmp, progress),
                         LocalDataset.open)


def ensure_built(final: Path, build: Callable[[Path], None], open_built: Callable[[Path], Any]) -> Any:
    """Open the complete variant at ``final``, building it first (at most once, under a per-variant lock)
    with ``build(tmp)`` into a temporary sibling folder that is renamed into place when done."""
    if is_complete(final):
        return open_built(final)

    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp_prefix = f".{final.name}.tmp-"
    with _locked(parent / f".{final.name}.lock"):
        if is_complete(final):  # built by another process while we waited
            return open_built(final)
        # We hold the lock, so any leftover temp folder or unmarked final folder is from a crashed build.
        for stale in parent.glob(tmp_prefix + "*"):
            _remove(stale)
        if final.exists() or final.is_symlink():
            _remove(final)

        tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix, dir=parent))
        try:
            build(tmp)
        except BaseException:
            _remove(tmp)
            raise
        try:
            os.rename(tmp, final)
        except OSError:
            # Someone (not honouring the lock) put a folder there first.
            if is_complete(final):
                _remove(tmp)  # lost the race: use the winner's variant
            else:
                _remove(final)
                try:
                    os.rename(tmp, final)
                except OSError:
                    _remove(tmp)
                    if not is_complete(final):
                        raise
    return open_built(final)


def write_marker(out: Path, fp: str) -> None:
    marker = out / COMPLETE_MARKER
    with open(marker, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"fingerprint": fp}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# ---------------------------------------------------------------------------------------------- COCO detection
def _build_coco(dataset: Any, dataset_revision: str, perturbation: Perturbation, seed: int, out: Path,
                progress: Progress | None) -> None:
    """Write the perturbed COCO dataset into ``out``: every image through the perturbation (sample i of a
    split is its i-th image), every box through perturbations.boxes.box_transform, image sizes updated."""
    from core.coco import write_coco_dataset
    from perturbations.boxes import box_transform

    move = box_transform(perturbation.name)
    all_images = {split: dataset.images(split) for split in dataset.splits}
    total = sum(len(v) for v in all_images.values())
    done = 0
    splits: dict[str, dict[str, list]] = {}
    for split, images in all_images.items():
        (out / "images" / _safe(split)).mkdir(parents=True, exist_ok=True)
        annotations = dataset.annotations(split)
        new_images, new_annotations = [], []
        for i, image in enumerate(images):
            result = perturbation(dataset.load_image(image), seed, index=i)
            if result.mode != "RGB":
                result = result.convert("RGB")
            anns = annotations.get(image["id"], [])
            boxes, (width, height) = move(np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
                                          image["width"], image["height"])
            if result.size != (int(width), int(height)):
                raise ValueError(f"perturbation {perturbation.name!r} made image {image['id']!r} {result.size[0]}x"
                                 f"{result.size[1]} pixels, but its box transform expects {width}x{height}")
            rel = f"{_safe(split)}/{i:06d}.png"
            result.save(out / "images" / rel, format="PNG")
            entry = {k: v for k, v in image.items() if not k.startswith("_")}
            new_images.append({**entry, "file_name": rel, "width": int(width), "height": int(height)})
            for ann, box in zip(anns, boxes):
                new_annotations.append({**ann, "bbox": [float(v) for v in box]})
            done += 1
            if progress is not None:
                progress(done, total)
        splits[split] = {"images": new_images, "annotations": new_annotations}
    meta = variant_meta(dataset.meta, perturbation, seed, dataset_revision, drop=("image_dirs",))
    meta["variant"]["boxes"] = getattr(move, "__name__", str(move))
    write_coco_dataset(out, meta, splits)
    write_marker(out, variant_fingerprint(dataset_revision, perturbation, seed))


def coco_variant_revision(dataset_revision: str) -> str:
    """The revision a detection variant is derived from: the dataset's, chained with the version of the box
    arithmetic (perturbations.boxes.BOXES_VERSION), so new box transforms make new variants."""
    from perturbations.boxes import BOXES_VERSION

    return chain(dataset_revision, fingerprint({"boxes_version": BOXES_VERSION}))


def ensure_image_variant(dataset: Any, revision: str, perturbation: Perturbation | str | None, seed: int,
                         cache_root: str | os.PathLike, task: str, follow: Callable[[str], Any],
                         build: Callable[[Perturbation, Path], None], open_built: Callable[[Path], Any]) -> Any:
    """The frame of a variant whose annotations move with its images (boxes: ``ensure_coco_variant``; masks:
    perturbations.masks.ensure_voc_variant): "original" (None) is ``dataset`` itself; a perturbation that is not
    an image one, or that ``follow(name)`` has no rule for (it raises ValueError), stops before any work; else the
    variant is built at most once (``build(perturbation, tmp)``) into the cache and opened with ``open_built``."""
    if is_original(perturbation):
        return dataset
    if not isinstance(perturbation, Perturbation):
        raise TypeError(f"expected a Perturbation, None or {ORIGINAL!r}, got {perturbation!r}")
    if perturbation.datatype != "image":
        raise ValueError(f"perturbation {perturbation.name!r} works on {perturbation.datatype} data but dataset "
                         f"{dataset.name!r} is an image {task} dataset")
    follow(perturbation.name)
    final = variant_path(cache_root, dataset, revision, perturbation, seed)
    return ensure_built(final, lambda tmp: build(perturbation, tmp), open_built)


def ensure_coco_variant(dataset: Any, dataset_revision: str, perturbation: Perturbation | str | None,
                        seed: int, cache_root: str | os.PathLike, progress: Progress | None = None) -> Any:
    """``ensure_variant`` for a COCO detection dataset (core.coco.CocoDataset): the images are perturbed
    and the ground-truth boxes moved with them (perturbations.boxes), built once into the same cache
    layout and returned as a CocoDataset. "original" (None) returns ``dataset`` unchanged.

    Raises ValueError for a perturbation that is not an image one or has no box transform."""
    from core.coco import CocoDataset
    from perturbations.boxes import box_transform

    revision = coco_variant_revision(dataset_revision)
    return ensure_image_variant(dataset, revision, perturbation, seed, cache_root, "detection", box_transform,
                                lambda p, tmp: _build_coco(dataset, revision, p, seed, tmp, progress), CocoDataset.open)


__all__ = ["COMPLETE_MARKER", "DataError", "coco_variant_revision", "ensure_coco_variant", "ensure_image_variant",
           "ensure_variant", "is_complete", "variant_fingerprint", "variant_path"]
