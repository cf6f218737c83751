"""What kind of repo a model is, read from its stored metadata (library, files, config): the format its
weights are published in. Each module accepts the formats it can load faithfully, so a SetFit, timm or PEFT
repo is never loaded as a plain Transformers model (with a freshly initialised head) by mistake.

Formats: ``peft`` (an adapter: ``adapter_config.json``), ``setfit`` (a sentence-transformers body plus a
separate head), ``timm`` (``library_name: timm`` or a timm ``config.json`` with ``pretrained_cfg``),
and ``transformers`` (everything else, including sentence-transformers cross-encoders and repos whose
details are not fetched yet: taken on trust, and checked again at load time, where weights missing from the
checkpoint are refused).
"""
from __future__ import annotations

from typing import Any

PEFT, SETFIT, TIMM, TRANSFORMERS = "peft", "setfit", "timm", "transformers"


def model_format(model: dict[str, Any]) -> str:
    """The format of a stored model document (see the module docstring)."""
    files = model.get("files") or {}
    library = str(model.get("library") or "").lower()
    config = model.get("config") or {}
    if library == PEFT or "adapter_config.json" in files:
        return PEFT
    if library == SETFIT or "config_setfit.json" in files or any(f.startswith("model_head.") for f in files):
        return SETFIT
    if library == TIMM or config.get("pretrained_cfg"):
        return TIMM
    return TRANSFORMERS
