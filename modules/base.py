"""EvaluationModule template: declares (sources, task, dataset, split, processors, variants), decides
``accepts(model)`` from the model's metadata, and loads and runs a model. It never computes metrics."""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.registry import Registry


class ModelLoadError(Exception):
    """The model cannot be loaded (missing/corrupt config or weights, unsupported architecture)."""

    error_class = "model_load"


class UnsafeModelError(ModelLoadError):
    """The model would need remote code or unpickling of arbitrary objects; refused."""

    error_class = "unsafe_model"
    permanent = True  # the same revision is refused again: parked at once, not retried


class IncompleteWeightsError(ModelLoadError):
    """The checkpoint lacks parameters the model needs (e.g. a head that is not in the repo): loading would
    initialise them at random, so the scores would be noise that changes on every load; refused."""

    error_class = "incomplete_weights"
    permanent = True


class IncompatibleLibraryError(ModelLoadError):
    """The repo's weights are for a framework zooeval does not run (TensorFlow, Flax) or need a library
    version it does not have."""

    error_class = "incompatible_library"
    permanent = True


class InferenceError(Exception):
    """The model's outputs cannot be used (NaN or infinite, the wrong shape, labels it does not have)."""

    error_class = "inference_error"


@dataclass
class LoadedModel:
    """What a module's load() returns: the framework objects plus the model's label names."""

    model: Any
    preprocessor: Any
    id2label: dict[int, str]
    device: str
    extra: dict[str, Any] = field(default_factory=dict)


def dataset_key(name: Any) -> str:
    """A dataset name as compared between zoos: case, spaces and punctuation ignored, and a Hub namespace
    dropped ("WIDER FACE", "wider-face", "wider_face" and "CUHK/wider_face" are the same dataset)."""
    return _dataset_key(str(name))


@functools.lru_cache(maxsize=1 << 16)
def _dataset_key(name: str) -> str:
    """dataset_key of a string, remembered: planning asks it for every (model, module) pair, over few names."""
    text = name.strip().lower().rsplit("/", 1)[-1]
    return "".join(ch for ch in text if ch.isalnum())


class EvaluationModule(ABC):
    kind: ClassVar[str]  # e.g. "hf-text-classification"
    version: ClassVar[int] = 1
    sources: ClassVar[tuple[str, ...]]
    task: ClassVar[str]  # the task kind whose datasets it evaluates (tasks.base.TASKS)
    datatype: ClassVar[str]
    #: the model tasks (the Hub's pipeline_tag) it takes, when they are not its own task's name (a pair
    #: classifier is a "text-classification" model on the Hub)
    model_tasks: ClassVar[tuple[str, ...]] = ()
    #: given to every dataset of its task by the catalogue (False: only to datasets that name it)
    default: ClassVar[bool] = True
    #: False for zero-shot modules (a causal LM scored on every multiple-choice set): what a model was trained
    #: on does not decide whether it is evaluated, so no training dataset is inferred for its models
    needs_training_data: ClassVar[bool] = True

    def __init__(
        self,
        dataset: str,
        split: str = "test",
        processors: tuple[str, ...] = (),
        variants: tuple[str, ...] = ("original",),
        seed: int = 0,
    ) -> None:
        self.dataset = dataset
        self.split = split
        self.processors = tuple(processors)
        self.variants = tuple(variants)
        self.seed = seed

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.dataset}"

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """Source and task match, and the model was trained on this dataset or a compatible one (as declared,
        or, when it declares none, as inferred from its label set by scraper.training_data)."""
        if model.get("source") not in self.sources or model.get("task") not in (self.model_tasks or (self.task,)):
            return False
        trained = {dataset_key(d) for d in (model.get("datasets") or model.get("inferred_datasets") or [])}
        if dataset_key(self.dataset) in trained:
            return True
        compatible = {dataset_key(d) for d in (datasets.get(self.dataset) or {}).get("compatible_with") or []}
        return bool(trained & compatible)

    def trained_on(self, model: dict[str, Any], dataset: dict[str, Any] | None = None) -> bool:
        """The model was trained on this very dataset, as declared (or, when it declares none, as inferred
        from its label set), or on one whose classes the dataset document says it has in the same order
        (``same_class_order_as``: a subset of ImageNet-1k's test images has ImageNet-1k's 1,000 classes): generic
        or repeated label names may then be mapped by index."""
        trained = {dataset_key(d) for d in model.get("datasets") or model.get("inferred_datasets") or []}
        same_order = {dataset_key(d) for d in (dataset or {}).get("same_class_order_as") or []}
        return bool(trained & ({dataset_key(self.dataset)} | same_order))

    @abstractmethod
    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        """Load weights and preprocessor; raise ModelLoadError / UnsafeModelError with a clear reason."""

    @abstractmethod
    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        """Turn raw inputs (PIL images or strings) into CPU tensors. Runs in the prefetch thread."""

    @abstractmethod
    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> Any:
        """Logits (n, n_model_labels) for a prepared batch already on the device."""


MODULES: Registry[type[EvaluationModule]] = Registry("evaluation module", "zooeval.modules")


def evaluated_zero_shot(model_task: str | None) -> bool:
    """Whether a module evaluates models of this (zoo) task zero-shot (``needs_training_data`` False)."""
    return any(not cls.needs_training_data and model_task in (cls.model_tasks or (cls.task,)) for cls in MODULES)


def register_module(cls: type[EvaluationModule]) -> type[EvaluationModule]:
    """Class decorator: add a module class to the registry under its kind (pipeline.catalog then gives it to
    every registered dataset of its task, or, when it is not ``default``, to datasets that name it)."""
    MODULES.register(cls.kind, cls)
    return cls
