"""Box transforms: hand-computed cases, and boxes rendered into images and put through the real
image perturbations."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from perturbations import get_perturbation
from perturbations.boxes import (
    box_transform,
    flip_boxes,
    identity_boxes,
    mirror_boxes,
    rotate90_boxes,
)

# A 10 x 6 image (width 10, height 6) with a box at columns 1..3, row 2: [x, y, w, h] = [1, 2, 3, 1].
BOX = np.array([[1.0, 2.0, 3.0, 1.0]])


@pytest.mark.parametrize("fn, expected, size", [
    (flip_boxes, [[1, 3, 3, 1]], (10, 6)),  # rows 2 -> 6 - 1 - 2 = 3
    (mirror_boxes, [[6, 2, 3, 1]], (10, 6)),  # columns 1..3 -> 8..6
    (rotate90_boxes, [[2, 6, 1, 3]], (6, 10)),  # column x -> row 9 - x: rows 8..6; row 2 -> column 2
    (identity_boxes, [[1, 2, 3, 1]], (10, 6)),
])
def test_hand_computed(fn, expected, size):
    out, new_size = fn(BOX, 10, 6)
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.float64))
    assert new_size == size


def test_inputs_are_not_modified_and_empty_boxes_work():
    boxes = BOX.copy()
    for fn in (flip_boxes, mirror_boxes, rotate90_boxes, identity_boxes):
        fn(boxes, 10, 6)
        assert fn(np.zeros((0, 4)), 10, 6)[0].shape == (0, 4)
    np.testing.assert_array_equal(boxes, BOX)
    with pytest.raises(ValueError, match="shape"):
        flip_boxes(np.zeros((2, 3)), 10, 6)


def test_twice_is_identity_and_four_rotations_are_identity():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 5, size=(20, 4))
    for fn in (flip_boxes, mirror_boxes):
        once, size = fn(boxes, 13, 7)
        np.testing.assert_allclose(fn(once, *size)[0], boxes)
    out, size = boxes, (13.0, 7.0)
    for _ in range(4):
        out, size = rotate90_boxes(out, *size)
    np.testing.assert_allclose(out, boxes)
    assert size == (13.0, 7.0)


def _nonzero_bbox(arr: np.ndarray, background: np.ndarray) -> list[float]:
    """[x, y, w, h] of the pixels that differ from the background colour."""
    rows, cols = np.nonzero(np.any(arr != background, axis=-1))
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1 - cols.min()), float(rows.max() + 1 - rows.min())]


@pytest.mark.parametrize("variant", ["flipped", "mirrored", "rotated90", "greyscale", "inverted"])
def test_rendered_rectangle_follows_the_image(variant):
    rng = np.random.default_rng(1)
    fn = box_transform(variant)
    for _ in range(20):
        width, height = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        x, y = int(rng.integers(0, width - 1)), int(rng.integers(0, height - 1))
        w, h = int(rng.integers(1, width - x + 1)), int(rng.integers(1, height - y + 1))
        arr = np.zeros((height, width, 3), dtype=np.uint8)
        arr[y:y + h, x:x + w] = (200, 60, 120)
        out = np.asarray(get_perturbation(variant)(Image.fromarray(arr, "RGB"), seed=0, index=0))
        background = np.asarray(get_perturbation(variant)(Image.new("RGB", (1, 1)), seed=0, index=0))[0, 0]
        boxes, (new_w, new_h) = fn(np.array([[x, y, w, h]]), width, height)
        assert (out.shape[1], out.shape[0]) == (new_w, new_h)
        assert boxes[0].tolist() == _nonzero_bbox(out, background)


def test_which_variants_have_box_transforms():
    assert box_transform("original") is identity_boxes
    assert box_transform("gaussian_noise-3") is identity_boxes
    assert box_transform("elastic_transform-5") is identity_boxes
    with pytest.raises(ValueError, match="no box transform"):
        box_transform("typos")
