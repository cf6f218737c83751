"""Bounding boxes through the image perturbations, so detection ground truth moves with the image.

Boxes are ``(n, 4)`` arrays of ``[x, y, width, height]`` in pixel-edge coordinates (a box covering
pixel columns 2..4 has x = 2, width = 3), in an image ``width`` x ``height`` pixels. Each function
returns the new boxes and the new image size ``(width, height)``, exactly matching the PIL transposes
of ``perturbations.image``:

* ``flipped`` (``FLIP_TOP_BOTTOM``): y -> height - y - h;
* ``mirrored`` (``FLIP_LEFT_RIGHT``): x -> width - x - w;
* ``rotated90`` (``ROTATE_90``, counter-clockwise): the pixel at column x, row y moves to column y,
  row width - 1 - x, so a box [x, y, w, h] becomes [y, width - x - w, h, w] in a height x width image.

Photometric perturbations (greyscale, inverted and the ImageNet-C corruptions) leave boxes unchanged.
That is the usual convention for corrupted detection benchmarks; note that ``elastic_transform`` does
displace pixels locally (by a few pixels; more at severity 1-2 on small images), which the unchanged
boxes ignore.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from perturbations.corruptions import CORRUPTION_PERTURBATIONS

#: ``(boxes, width, height) -> (new boxes, (new width, new height))``
BoxTransform = Callable[[np.ndarray, float, float], tuple[np.ndarray, tuple[float, float]]]

#: Version of the box arithmetic below. It is part of every detection variant's identity and of its cache
#: fingerprint: bump it when a transform changes, and detection variants and their results are made anew.
BOXES_VERSION = 1

#: The unperturbed dataset and the photometric perturbations: boxes stay where they are.
KEEPS_BOXES = frozenset({"original", "greyscale", "inverted", *CORRUPTION_PERTURBATIONS})


def _boxes(boxes: np.ndarray) -> np.ndarray:
    arr = np.array(boxes, dtype=np.float64)  # a copy: the caller's array is never modified
    if arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (n, 4), got {arr.shape}")
    return arr


def flip_boxes(boxes: np.ndarray, width: float, height: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Boxes of the image flipped upside down (``Image.Transpose.FLIP_TOP_BOTTOM``)."""
    out = _boxes(boxes)
    out[:, 1] = height - out[:, 1] - out[:, 3]
    return out, (width, height)


def mirror_boxes(boxes: np.ndarray, width: float, height: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Boxes of the image mirrored left to right (``Image.Transpose.FLIP_LEFT_RIGHT``)."""
    out = _boxes(boxes)
    out[:, 0] = width - out[:, 0] - out[:, 2]
    return out, (width, height)


def rotate90_boxes(boxes: np.ndarray, width: float, height: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Boxes of the image rotated 90 degrees counter-clockwise (``Image.Transpose.ROTATE_90``)."""
    b = _boxes(boxes)
    out = np.stack([b[:, 1], width - b[:, 0] - b[:, 2], b[:, 3], b[:, 2]], axis=1)
    return out, (height, width)


def identity_boxes(boxes: np.ndarray, width: float, height: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Boxes of a photometric perturbation: unchanged (a copy)."""
    return _boxes(boxes), (width, height)


GEOMETRIC: dict[str, BoxTransform] = {"flipped": flip_boxes, "mirrored": mirror_boxes, "rotated90": rotate90_boxes}


def box_transform(variant: str) -> BoxTransform:
    """The box transform of an image variant ("original", a perturbation name).

    Raises ValueError for a variant that is not known to keep or move boxes (text perturbations, or a
    new image perturbation nobody has described for boxes yet), so boxes are never silently wrong.
    """
    if variant in GEOMETRIC:
        return GEOMETRIC[variant]
    if variant in KEEPS_BOXES:
        return identity_boxes
    raise ValueError(f"no box transform for variant {variant!r}: add it to perturbations.boxes")
