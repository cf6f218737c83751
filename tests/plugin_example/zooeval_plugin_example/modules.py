"""A module kind of its own: zooeval's Transformers text classifier, run only on datasets whose dataset.json
names "plugin-text-classification" in ``modules``."""
from __future__ import annotations

from modules.base import register_module
from modules.hf import HFTextClassification


@register_module
class PluginTextClassification(HFTextClassification):
    kind = "plugin-text-classification"
    default = False
