"""The thesis's five image perturbations (PIL RGB in, PIL RGB out), registered at import."""
from __future__ import annotations

from typing import Any

from PIL import Image, ImageOps

from perturbations.base import Perturbation, register_perturbation


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


class ImagePerturbation(Perturbation):
    """Base for deterministic, parameter-free image perturbations."""

    datatype = "image"

    def transform(self, inpt: Image.Image, params: dict[str, Any]) -> Image.Image:
        return _rgb(self.apply(_rgb(inpt)))

    def apply(self, img: Image.Image) -> Image.Image:  # pragma: no cover - abstract in spirit
        raise NotImplementedError


class Greyscale(ImagePerturbation):
    name = "greyscale"
    description = "The image is converted to greyscale (three equal channels)"
    method = "PIL.ImageOps.grayscale"

    def apply(self, img: Image.Image) -> Image.Image:
        return ImageOps.grayscale(img).convert("RGB")


class Flipped(ImagePerturbation):
    name = "flipped"
    description = "The image is flipped upside down"
    method = "PIL.Image.transpose(Transpose.FLIP_TOP_BOTTOM)"

    def apply(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


class Mirrored(ImagePerturbation):
    name = "mirrored"
    description = "The image is mirrored left to right"
    method = "PIL.Image.transpose(Transpose.FLIP_LEFT_RIGHT)"

    def apply(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


class Inverted(ImagePerturbation):
    name = "inverted"
    description = "The image's colours are inverted (each channel value x becomes 255 - x)"
    method = "PIL.ImageOps.invert"

    def apply(self, img: Image.Image) -> Image.Image:
        return ImageOps.invert(img)


class Rotated90(ImagePerturbation):
    name = "rotated90"
    description = "The image is counter-clockwise rotated 90 degrees"
    method = "PIL.Image.transpose(Transpose.ROTATE_90)"

    def apply(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.Transpose.ROTATE_90)


IMAGE_PERTURBATIONS = [Greyscale(), Flipped(), Mirrored(), Inverted(), Rotated90()]
for _p in IMAGE_PERTURBATIONS:
    register_perturbation(_p)
