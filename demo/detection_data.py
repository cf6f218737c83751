"""Small real object-detection datasets in COCO format (core.coco), built from files inside installed wheels.

Nothing is downloaded. Three builders:

* ``build_shapes_dataset``: filled rectangles, ellipses and triangles (categories "rectangle", "ellipse",
  "triangle", supercategory "shape") in saturated colours, pasted without overlap on crops of real photos
  from ``skimage.data``. The shapes are drawn without anti-aliasing, so each box is the exact pixel extent of
  its shape (``[x, y, w, h]`` with ``x + w`` one past the last column) and ``area`` its exact pixel count.
  Sizes are drawn so that COCO's small (< 32^2 px), medium and large (> 96^2 px) ranges all occur; about one
  image in ten has no object. PNG files, so nothing is blurred by compression.
* ``build_faces_dataset``: category "face" (supercategory "person"): scikit-image's astronaut photo (Eileen
  Collins, NASA) with its one face box, measured by hand for this project on a 4x zoom with a 10 px grid:
  hairline to chin and cheek to cheek, ``[181, 77, 89, 101]`` (x 181..270, y 77..178); plus photos composed
  by pasting the real face crops of ``skimage.data.lfw_subset()`` (Labeled Faces in the Wild; its first 100
  images are faces, the last 100 non-faces: checked on a montage) upscaled to 64-120 px onto crops of real
  photos that contain no face. A pasted crop's box is its exact pasted extent.
* ``build_quokka_dataset``: imgaug 0.4.0's ``quokka.jpg`` (960x643 pixels, width x height) with the box of its
  ``quokka_annotations.json`` (x1 148, y1 50, x2 550, y2 642, label "animal"), category "quokka"
  (supercategory "animal"). imgaug is read as files, never imported.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np

from core.coco import write_coco_dataset
from core.data import DataError

SHAPES = ("rectangle", "ellipse", "triangle")
# Saturated colours, far from each other (the photos behind them are what makes the task non-trivial).
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (255, 255, 255), (0, 0, 0),
)
# Photos in scikit-image's own distribution (no download), with colour, without people.
BACKGROUND_PHOTOS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
SHAPE_BACKGROUND_PHOTOS = ("astronaut",) + BACKGROUND_PHOTOS
# Grey-level photos without people, used (as RGB) behind faces too.
GREY_BACKGROUND_PHOTOS = ("brick", "grass", "gravel", "coins", "moon")

ASTRONAUT_FACE_XYWH = (181, 77, 89, 101)
QUOKKA_ANNOTATION_FILE = "quokka_annotations.json"
LFW_FACES = 100  # lfw_subset(): images 0..99 are faces, 100..199 are not

# Size classes of a shape's bounding box side in pixels (its pixel area decides COCO's range).
SIZE_RANGES = {"small": (10, 24), "medium": (40, 80), "large": (110, 170)}

SHAPES_META = {
    "name": "shapes",
    "version": "1",
    "datatype": "image",
    "task": "object-detection",
    "description": "Filled rectangles, ellipses and triangles on crops of real photos (scikit-image data); "
                   "exact boxes; every COCO size range; a few images without objects.",
    "homepage": "https://scikit-image.org/docs/stable/api/skimage.data.html",
    "year": 2024,
    "reference": None,
    "compatible_with": [],
    "supported_variants": ["greyscale", "flipped", "mirrored", "inverted", "rotated90"],
    "synonyms": {"rect": "rectangle", "box": "rectangle", "square": "rectangle", "circle": "ellipse",
                 "oval": "ellipse"},
    "categories": [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)],
}

FACES_META = {
    "name": "faces",
    "version": "1",
    "datatype": "image",
    "task": "object-detection",
    "description": "Faces: scikit-image's astronaut photo (one hand-measured face box) and real face crops "
                   "from Labeled Faces in the Wild (skimage.data.lfw_subset) upscaled and pasted onto real "
                   "photos, with exact boxes.",
    "homepage": "http://vis-www.cs.umass.edu/lfw/",
    "year": 2007,
    "reference": "Huang et al., Labeled Faces in the Wild, UMass Amherst technical report 07-49, 2007",
    "compatible_with": ["wider_face", "celeba", "lfw"],
    "supported_variants": ["greyscale", "flipped", "mirrored", "inverted", "rotated90"],
    "synonyms": {"faces": "face", "human face": "face"},
    "categories": [{"id": 1, "name": "face", "supercategory": "person"}],
    # detection module kinds beyond the default ones (pipeline.catalog): a face set gets the face detector
    "modules": ["mtcnn-face-detection"],
}

QUOKKA_META = {
    "name": "quokka",
    "version": "1",
    "datatype": "image",
    "task": "object-detection",
    "description": "imgaug's quokka photo with its one annotated bounding box.",
    "homepage": "https://github.com/aleju/imgaug",
    "year": 2018,
    "reference": None,
    "compatible_with": [],
    "supported_variants": ["greyscale", "flipped", "mirrored", "inverted", "rotated90"],
    "synonyms": {"animal": "quokka"},
    "categories": [{"id": 1, "name": "quokka", "supercategory": "animal"}],
}


# ---------------------------------------------------------------------------------------------- helpers
def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def _crop(rng: np.random.Generator, photo: np.ndarray, width: int, height: int) -> np.ndarray:
    """A random crop of ``photo`` resized (if the photo is smaller) to height x width."""
    from PIL import Image

    h, w = photo.shape[:2]
    if h < height or w < width:
        scale = max(height / h, width / w)
        photo = np.asarray(Image.fromarray(photo).resize((int(np.ceil(w * scale)), int(np.ceil(h * scale))), Image.BILINEAR))
        h, w = photo.shape[:2]
    y = int(rng.integers(0, h - height + 1))
    x = int(rng.integers(0, w - width + 1))
    return photo[y : y + height, x : x + width].copy()


def shape_mask(shape: str, x0: int, y0: int, x1: int, y1: int, width: int, height: int,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Boolean mask of one filled shape inside the pixel box x0..x1, y0..y1 (inclusive), not anti-aliased.

    The shape touches all four sides of that box, so its pixel extent is exactly the box.
    """
    from PIL import Image, ImageDraw

    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "rectangle":
        draw.rectangle([x0, y0, x1, y1], fill=1)
    elif shape == "ellipse":
        draw.ellipse([x0, y0, x1, y1], fill=1)
    elif shape == "triangle":
        # apex on the top edge, base on the bottom edge spanning the full width
        apex = x0 + (int(rng.integers(0, x1 - x0 + 1)) if rng is not None else (x1 - x0) // 2)
        draw.polygon([(apex, y0), (x1, y1), (x0, y1)], fill=1)
    else:
        raise ValueError(f"unknown shape {shape!r}; shapes are {SHAPES}")
    return np.asarray(canvas, dtype=bool)


def mask_box(mask: np.ndarray) -> tuple[list[float], int]:
    """``([x, y, w, h], pixel count)`` of a non-empty mask: the exact pixel extent."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)], int(mask.sum())


def _overlaps(box: tuple[int, int, int, int], taken: list[tuple[int, int, int, int]], gap: int) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 <= b[2] + gap and b[0] <= x1 + gap and y0 <= b[3] + gap and b[1] <= y1 + gap for b in taken)


def _package_file(package: str, name: str) -> Path:
    """A data file of an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise DataError(f"the package {package!r} is not installed (install {package} with --no-deps)")
    path = Path(spec.origin).resolve().parent / name
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed {package} package")
    return path


def _fresh(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    if (folder / "dataset.json").exists():
        raise FileExistsError(f"{folder} already holds a dataset; remove it first")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------------------------------------- shapes
def build_shapes_dataset(folder: str | os.PathLike, n_images: int = 60, seed: int = 0, split: str = "test",
                         plain_background: tuple[int, int, int] | None = None) -> Path:
    """Write the shapes dataset (COCO format) to ``folder``; returns the folder.

    Every tenth image (index 9, 19, ...) has no object; the others have 1 to 4 shapes of random kind, colour
    and size class (small / medium / large). ``plain_background`` (an RGB colour) replaces the photos, for
    checking the boxes against the rendered pixels.
    """
    from PIL import Image

    folder = _fresh(folder)
    rng = np.random.default_rng(seed)
    photos = {} if plain_background else {name: _photo(name) for name in SHAPE_BACKGROUND_PHOTOS}
    images, annotations = [], []
    for i in range(n_images):
        width, height = int(rng.integers(256, 385)), int(rng.integers(256, 385))
        if plain_background:
            canvas = np.empty((height, width, 3), np.uint8)
            canvas[:] = plain_background
        else:
            canvas = _crop(rng, photos[SHAPE_BACKGROUND_PHOTOS[i % len(SHAPE_BACKGROUND_PHOTOS)]], width, height)
        n_objects = 0 if i % 10 == 9 else int(rng.integers(1, 5))
        taken: list[tuple[int, int, int, int]] = []
        for _ in range(n_objects):
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            size_class = ("small", "medium", "large")[int(rng.integers(3))]
            lo, hi = SIZE_RANGES[size_class]
            for _attempt in range(30):
                w, h = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
                x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                box = (x0, y0, x0 + w - 1, y0 + h - 1)
                if not _overlaps(box, taken, gap=3):
                    break
            else:
                continue  # no free place for it: leave it out
            taken.append(box)
            mask = shape_mask(shape, *box, width, height, rng)
            colour = PALETTE[int(rng.integers(len(PALETTE)))]
            canvas[mask] = colour
            bbox, area = mask_box(mask)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": SHAPES.index(shape) + 1,
                                "bbox": bbox, "area": float(area), "iscrowd": 0})
        file_name = f"{split}/{i:05d}.png"
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(canvas).save(folder / "images" / file_name, compress_level=1)
        images.append({"id": i + 1, "file_name": file_name, "width": width, "height": height})
    meta = dict(SHAPES_META)
    if plain_background:
        meta["description"] = SHAPES_META["description"] + f" Plain background {list(plain_background)}."
    return write_coco_dataset(folder, meta, {split: {"images": images, "annotations": annotations}})


# ---------------------------------------------------------------------------------------------- faces
def lfw_faces() -> np.ndarray:
    """The 100 face crops of ``skimage.data.lfw_subset()`` as uint8 (100, 25, 25) grey images."""
    import skimage.data

    crops = skimage.data.lfw_subset()[:LFW_FACES]
    return np.clip(np.round(crops * 255), 0, 255).astype(np.uint8)


def build_faces_dataset(folder: str | os.PathLike, seed: int = 0, n_composed: int = 30, split: str = "test") -> Path:
    """Write the faces dataset (COCO format) to ``folder``; returns the folder.

    Image 1 is the astronaut photo (512x512, one face). Images 2.. are ``n_composed`` crops (320-480 x
    300-420 px) of face-free photos, each with 1 to 3 distinct LFW faces upscaled to 64-120 px and pasted
    without overlap; every 10th composed image has no face. Each LFW face is used at most once (there are 100).
    """
    from PIL import Image

    folder = _fresh(folder)
    (folder / "images" / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    faces = lfw_faces()
    order = rng.permutation(len(faces))
    next_face = 0
    images, annotations = [], []

    astronaut = _photo("astronaut")
    Image.fromarray(astronaut).save(folder / "images" / split / "astronaut.png", compress_level=1)
    images.append({"id": 1, "file_name": f"{split}/astronaut.png", "width": 512, "height": 512})
    annotations.append({"id": 1, "image_id": 1, "category_id": 1, "bbox": [float(v) for v in ASTRONAUT_FACE_XYWH],
                        "area": float(ASTRONAUT_FACE_XYWH[2] * ASTRONAUT_FACE_XYWH[3]), "iscrowd": 0})

    backgrounds = BACKGROUND_PHOTOS + GREY_BACKGROUND_PHOTOS
    photos = {name: _photo(name) for name in backgrounds}
    for i in range(n_composed):
        image_id = i + 2
        width, height = int(rng.integers(320, 481)), int(rng.integers(300, 421))
        canvas = _crop(rng, photos[backgrounds[i % len(backgrounds)]], width, height)
        n_faces = 0 if i % 10 == 9 else int(rng.integers(1, 4))
        taken: list[tuple[int, int, int, int]] = []
        for _ in range(min(n_faces, len(faces) - next_face)):
            for _attempt in range(30):
                size = int(rng.integers(64, 121))
                x0, y0 = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
                box = (x0, y0, x0 + size - 1, y0 + size - 1)
                if not _overlaps(box, taken, gap=8):
                    break
            else:
                continue
            taken.append(box)
            face = Image.fromarray(faces[order[next_face]]).resize((size, size), Image.BICUBIC).convert("RGB")
            next_face += 1
            canvas[y0 : y0 + size, x0 : x0 + size] = np.asarray(face)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [float(x0), float(y0), float(size), float(size)],
                                "area": float(size * size), "iscrowd": 0})
        file_name = f"{split}/{image_id:05d}.png"
        Image.fromarray(canvas).save(folder / "images" / file_name, compress_level=1)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    return write_coco_dataset(folder, FACES_META, {split: {"images": images, "annotations": annotations}})


# ---------------------------------------------------------------------------------------------- quokka
def quokka_box() -> list[float]:
    """The quokka's box ``[x, y, w, h]`` from imgaug's ``quokka_annotations.json``."""
    data = json.loads(_package_file("imgaug", QUOKKA_ANNOTATION_FILE).read_text())
    try:
        (box,) = data["bounding_boxes"]
        x1, y1, x2, y2 = (float(box[k]) for k in ("x1", "y1", "x2", "y2"))
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"imgaug's {QUOKKA_ANNOTATION_FILE} does not hold one bounding box: {exc}") from None
    return [x1, y1, x2 - x1, y2 - y1]


def build_quokka_dataset(folder: str | os.PathLike, split: str = "test") -> Path:
    """Write the one-image quokka dataset (COCO format) to ``folder``; returns the folder."""
    from PIL import Image

    folder = _fresh(folder)
    (folder / "images" / split).mkdir(parents=True, exist_ok=True)
    src = _package_file("imgaug", "quokka.jpg")
    shutil.copyfile(src, folder / "images" / split / "quokka.jpg")
    with Image.open(src) as img:
        width, height = img.size
    box = quokka_box()
    images = [{"id": 1, "file_name": f"{split}/quokka.jpg", "width": width, "height": height}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}]
    return write_coco_dataset(folder, QUOKKA_META, {split: {"images": images, "annotations": annotations}})
