"""Rotation by a small angle, the image keeping its size: a geometric perturbation that brings pixels from outside
the original into the frame (black), so a segmentation mask that follows it gets pixels it cannot score
(perturbations.masks fills them with 255). Registered at import as ``rotated15``."""
from __future__ import annotations

from typing import Any

from PIL import Image

from perturbations.base import Perturbation, register_perturbation


class Rotated(Perturbation):
    """The image rotated ``degrees`` counter-clockwise about its centre, same size: the corners that leave the frame
    are lost, the ones that enter it are black."""

    datatype = "image"
    method = "PIL.Image.rotate(degrees, resample=BILINEAR, fillcolor=(0, 0, 0))"

    def __init__(self, degrees: float) -> None:
        super().__init__(degrees=degrees)
        self.name = f"rotated{degrees:g}"
        self.description = (f"The image is rotated {degrees:g} degrees counter-clockwise about its centre, keeping its "
                            "size (black corners)")

    def transform(self, inpt: Image.Image, params: dict[str, Any]) -> Image.Image:
        img = inpt if inpt.mode == "RGB" else inpt.convert("RGB")
        return img.rotate(self.params["degrees"], resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))


ROTATED15 = register_perturbation(Rotated(15))
