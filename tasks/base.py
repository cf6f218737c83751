"""A task kind owns everything that differs between tasks, so the executor, the store, the CLI, the catalogue
and the scrapers never compare task names:

* which datasets are of this kind (``reads``), how one is opened, registered (``dataset_doc``) and perturbed
  (``supports_variant``, ``variant_identity``, ``open_variant``: a detection variant moves its boxes);
* how a model's output labels map to the dataset (``map_labels``: classes, categories, or nothing);
* the runner that turns a module's forward outputs into predictions (``run``), their stored form (``encode``
  / ``decode``: plain or binary chunks) and the record processors consume (``processor_input``);
* the default processors, the columns ``zooeval results`` shows, and the zoo tags (Hub ``pipeline_tag``,
  FiftyOne tags) of the models the scrapers sync for it.

Task kinds register in ``TASKS`` (one name each; ``register_task``), found through the ``zooeval.tasks``
entry point group (core.registry.load_plugins).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from core import identity as ident
from core.registry import Registry

if TYPE_CHECKING:
    from modules.base import EvaluationModule, LoadedModel
    from perturbations.base import Perturbation


@dataclass
class Mapping:
    """A model's label mapping as the runner uses it (``index``) and as it is stored with the result (``doc``)."""

    index: Any = None
    doc: dict[str, Any] | None = None


@dataclass
class Column:
    """One column of ``zooeval results``: its header, the key in the result's ``overall`` and its decimals."""

    header: str
    key: str
    decimals: int = 4


@dataclass(eq=False)  # task kinds are compared by identity (and hashable)
class TaskKind(ABC):
    """One kind of evaluation task. Subclasses set the class attributes and implement the abstract methods."""

    name: str
    datatype: str
    #: the tags zoos give the models this kind evaluates ({"huggingface": pipeline tags, "fiftyone": tags}),
    #: which the scrapers sync
    zoo_tags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Transformers architecture name endings of its models ("ForImageClassification"), for repos whose card
    #: names no pipeline tag
    architecture_suffixes: tuple[str, ...] = ()
    default_processors: tuple[str, ...] = ()
    #: datasets whose dataset.json names no task but has this datatype are of this kind
    default_for_datatype: bool = False
    #: the largest batch a runner of this kind takes (None: the executor's batch size)
    max_batch_size: int | None = None
    columns: tuple[Column, ...] = ()
    unit: ClassVar[str] = "instance"  # what throughput counts (a detector's: images)

    # -- datasets -----------------------------------------------------------------------------------
    def reads(self, meta: dict[str, Any]) -> bool:
        """Whether a dataset with this dataset.json metadata is of this kind."""
        declared = meta.get("task")
        return declared == self.name if declared else (self.default_for_datatype and meta.get("datatype") == self.datatype)

    @abstractmethod
    def open_dataset(self, path: str | Path) -> Any:
        """The dataset folder as a reader object (core.data.LocalDataset, core.coco.CocoDataset, ...)."""

    @abstractmethod
    def dataset_doc(self, dataset: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The registered dataset document (name, task, datatype, classes, splits with counts, revision,
        catalogue fields) and up to a few examples per class."""

    def split_size(self, doc: dict[str, Any], split: str) -> int:
        return sum(s["total"] for s in doc["splits"] if s["name"] == split)

    # -- variants -----------------------------------------------------------------------------------
    def supports_variant(self, perturbation: "Perturbation") -> str | None:
        """None when the perturbation applies to this kind's datasets, else why not."""
        if perturbation.datatype != self.datatype:
            return f"it perturbs {perturbation.datatype} data, not {self.datatype}"
        return None

    def variant_identity(self, perturbation: "Perturbation | None", seed: int) -> dict[str, Any]:
        """The variant's part of an inference identity (what changes the perturbed data)."""
        if perturbation is None:
            return dict(ident.ORIGINAL_VARIANT)
        return {"name": perturbation.name, "version": perturbation.version, "params": perturbation.params, "seed": seed}

    @abstractmethod
    def open_variant(self, dataset: Any, revision: str, perturbation: "Perturbation | None", seed: int,
                     cache_root: Path) -> Any:
        """The dataset under the perturbation (built once into the variant cache), or itself for None."""

    # -- models -------------------------------------------------------------------------------------
    def model_labels(self, id2label: dict[int, str]) -> dict[int, str]:
        """The model labels that name classes (a detector's placeholders such as COCO's "N/A" left out)."""
        return id2label

    @abstractmethod
    def map_labels(self, id2label: dict[int, str], doc: dict[str, Any], trained_on_dataset: bool) -> Mapping:
        """Map the model's labels to the dataset (raise core.labels.LabelMappingError when they cannot)."""

    @abstractmethod
    def run(self, module: "EvaluationModule", loaded: "LoadedModel", dataset: Any, split: str, mapping: Mapping,
            batch_size: int, on_batch: Callable[[int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[Any, dict[str, Any]]:
        """Predict every sample of the split. Returns (predictions, runtime record)."""

    def sample_inputs(self, dataset: Any, split: str, n: int) -> list[Any] | None:
        """The model inputs of the split's first ``n`` samples, as ``run`` passes them to ``module.prepare``:
        the fixed sample the single-stream scenario times one by one. None: the kind has no such scenario."""
        return None

    # -- stored predictions ---------------------------------------------------------------------------
    @abstractmethod
    def encode(self, predictions: Any) -> list[dict[str, Any]]:
        """The predictions as stored chunks (each a BSON document under MongoDB's size limit)."""

    @abstractmethod
    def decode(self, chunks: list[dict[str, Any]]) -> Any:
        """Stored chunks back to predictions (exactly what ``run`` returned)."""

    @abstractmethod
    def processor_input(self, predictions: Any, dataset: Callable[[], Any], split: str) -> Any:
        """The record processors update with; ``dataset()`` opens the (variant) dataset when the ground
        truth is not part of the predictions."""

    def n_samples(self, predictions: Any) -> int:
        return len(predictions)


class TargetsMovedWithImages:
    """For a task kind whose ground truth is spatial (boxes, masks), mixed in before TaskKind: an image
    perturbation applies only where the targets can be moved with the images, and a variant's identity carries
    the version of the code that moves them (a fix there makes the variant, and its results, new)."""

    #: the key of that version in a variant's identity ("boxes_version", "masks_version")
    moved_targets_key: ClassVar[str]

    def target_transform(self, variant: str) -> Any:
        """How the targets follow the perturbation ``variant``; ValueError when they cannot."""
        raise NotImplementedError

    def moved_targets_version(self) -> int:
        raise NotImplementedError

    def supports_variant(self, perturbation: "Perturbation") -> str | None:
        if perturbation.datatype != "image":
            return f"it perturbs {perturbation.datatype} data, not images"
        try:
            self.target_transform(perturbation.name)
        except ValueError as exc:
            return str(exc)
        return None

    def variant_identity(self, perturbation: "Perturbation | None", seed: int) -> dict[str, Any]:
        vid = super().variant_identity(perturbation, seed)  # type: ignore[misc]  (TaskKind's, after this mixin)
        if perturbation is not None:
            vid[self.moved_targets_key] = self.moved_targets_version()
        return vid


TASKS: Registry[TaskKind] = Registry("task kind", "zooeval.tasks")


def register_task(task: TaskKind) -> TaskKind:
    """Add a task kind to the registry under its name."""
    return TASKS.register(task.name, task)


def task_for_dataset(meta: dict[str, Any]) -> TaskKind:
    """The task kind of a dataset (its dataset.json or registered document). Raises KeyError naming the known
    kinds when none reads it."""
    for task in TASKS:
        if task.reads(meta):
            return task
    declared = meta.get("task")
    raise KeyError(f"dataset {meta.get('name')!r}: no task kind reads it (task {declared!r}, datatype "
                   f"{meta.get('datatype')!r}); known task kinds: {', '.join(TASKS.names()) or 'none'}")


def task_for_result(result: dict[str, Any]) -> TaskKind | None:
    """The task kind of a stored result (results stored before they named it: their module's), or None
    when no installed kind is it."""
    from modules.base import MODULES

    name = result.get("task")
    if name is None:
        kind = str(result.get("module") or "").split("/")[0]
        name = MODULES.get(kind).task if kind in MODULES else None
    return TASKS.get(name) if name in TASKS else None


def task_for_architectures(architectures: list[str]) -> str | None:
    """The task a Transformers repo's ``architectures`` (config.json) name, or None."""
    for arch in architectures:
        for task in TASKS:
            if any(str(arch).endswith(suffix) for suffix in task.architecture_suffixes):
                return task.name
    return None


def zoo_tasks(zoo: str) -> dict[str, str]:
    """The tags a zoo gives the models the task kinds evaluate -> the task stored for such a model (the first
    kind that names the tag: a Hub "text-classification" model is stored as such, whatever kind takes it)."""
    out: dict[str, str] = {}
    for task in TASKS:
        for tag in task.zoo_tags.get(zoo, ()):
            out.setdefault(tag, task.name)
    return out
