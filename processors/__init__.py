"""Reusable metric calculators. A processor never loads a model: it reads stored predictions."""
from processors.base import ClassificationPredictions, Processor, PROCESSORS, register_processor

__all__ = ["ClassificationPredictions", "Processor", "PROCESSORS", "register_processor"]
