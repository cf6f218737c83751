"""Small array helpers the metric code shares."""
from __future__ import annotations

import numpy as np


def safe_divide(num, den) -> np.ndarray:
    """Element-wise ``num / den`` as float64, with 0.0 where ``den == 0`` (scikit-learn's ``zero_division=0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out
