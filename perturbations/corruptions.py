"""The 19 ImageNet-C corruptions (corrupt-tta) at severities 1-5, registered at import as image
perturbations named ``<corruption>-<severity>`` (e.g. ``gaussian_noise-3``): 95 variants.

corrupt-tta draws its randomness from numpy's global generator. Each sample's corruption therefore runs
with that generator seeded from a 32-bit seed drawn in ``make_params`` from the per-sample generator
(seeded by (seed, sample index), see ``Perturbation.__call__``), under a lock, and the global state is
restored afterwards, so a variant is reproducible, can be built in shards and leaves other users of the
global generator undisturbed. The output is converted to uint8 by truncation after clipping to
[0, 255], as ImageNet-C's own ``np.uint8(...)`` does.

corrupt-tta is imported on first use, so importing ``perturbations`` stays cheap (it pulls in OpenCV,
SciPy and scikit-image).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from perturbations.base import Perturbation, register_perturbation

#: corrupt-tta's corruption functions, in ImageNet-C order (noise, blur, weather, digital, extra).
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
    "gaussian_blur", "glass_blur", "defocus_blur", "motion_blur", "zoom_blur",
    "fog", "frost", "snow", "spatter",
    "contrast", "brightness", "saturate", "jpeg_compression", "pixelate", "elastic_transform",
)
SEVERITIES = (1, 2, 3, 4, 5)
#: corrupt-tta's salt-and-pepper amounts for impulse_noise, by severity (see ``_impulse_noise``).
IMPULSE_AMOUNTS = (0.03, 0.06, 0.09, 0.17, 0.27)

_GLOBAL_RNG_LOCK = threading.Lock()


@contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Run a block with numpy's global generator seeded, restoring its previous state afterwards."""
    with _GLOBAL_RNG_LOCK:
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _impulse_noise(x: np.ndarray, severity: int) -> np.ndarray:
    """corrupt-tta's impulse_noise with a seeded generator.

    corrupt-tta calls ``skimage.util.random_noise`` without ``rng``, which seeds itself from the
    operating system and ignores numpy's global generator, so its output could never be reproduced.
    This is the same computation with ``rng`` drawn from the (seeded) global generator.
    """
    from skimage.util import random_noise

    rng = np.random.default_rng(np.random.randint(0, 2**32, dtype=np.uint64))
    out = random_noise(np.asarray(x) / 255.0, mode="s&p", amount=IMPULSE_AMOUNTS[severity - 1], rng=rng)
    return np.clip(out, 0, 1) * 255


def _corruption_function(corruption: str) -> Callable[[np.ndarray, int], np.ndarray]:
    if corruption == "impulse_noise":
        return _impulse_noise
    from corrupt_tta import corruption_dict

    return corruption_dict[corruption]


class Corruption(Perturbation):
    """One ImageNet-C corruption at one severity (PIL RGB in, PIL RGB uint8 out, same size)."""

    datatype = "image"
    version = 1

    def __init__(self, corruption: str, severity: int) -> None:
        if corruption not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {corruption!r}; known: {', '.join(CORRUPTIONS)}")
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
        super().__init__(corruption=corruption, severity=int(severity))
        self.corruption = corruption
        self.severity = int(severity)
        self.name = f"{corruption}-{severity}"
        self.description = f"ImageNet-C corruption {corruption.replace('_', ' ')} at severity {severity} of 5"
        self.method = (f"corrupt_tta {corruption}(image, severity={severity}) with numpy's global generator "
                       "seeded per sample; uint8 by truncation")

    def make_params(self, rng: np.random.Generator, inpt: Image.Image) -> dict[str, Any]:
        return {"seed": int(rng.integers(0, 2**32))}

    def transform(self, inpt: Image.Image, params: dict[str, Any]) -> Image.Image:
        x = np.asarray(inpt if inpt.mode == "RGB" else inpt.convert("RGB"))
        with _global_numpy_seed(params["seed"]):
            out = np.asarray(_corruption_function(self.corruption)(x, self.severity))
        if out.shape != x.shape:
            raise ValueError(f"{self.name} returned shape {out.shape} for an image of shape {x.shape}")
        return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


CORRUPTION_PERTURBATIONS = {
    f"{c}-{s}": register_perturbation(Corruption(c, s)) for c in CORRUPTIONS for s in SEVERITIES
}
