"""Processor template: streaming state (update / merge) and compute() that derives every number.

A processor declares the task kinds whose predictions it reads (``tasks``) and whether it runs for every
module of those tasks (``default``); it may take parameters, which are part of its identity (a result of
``evaluate:accuracy`` is not one of ``evaluate:f1``). ``ProcessorSpec`` is a processor named with its
parameters, as modules, the CLI (``--processor NAME[:VALUE | :KEY=VALUE,...]``) and the planner carry it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from core.registry import Registry


class Processor(ABC):
    """Turns predictions into standardised results.

    Subclasses set ``name``, ``version`` (bump it when the numbers it produces change) and ``tasks``.
    A processor instance holds the state of one evaluation; ``compute()`` returns a dict:
    ``{"overall": {metric: value}, "per_class": {label: {metric: value}}, ...extra JSON-able fields}``.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    tasks: ClassVar[tuple[str, ...]] = ()
    #: run for every module of its tasks (else only where a module or ``--processor`` names it)
    default: ClassVar[bool] = False
    #: the parameter that ``NAME:VALUE`` sets (e.g. evaluate's metric)
    main_param: ClassVar[str | None] = None
    #: the metrics it computes, for the catalogue: name, description, calculation, values (thesis table 3.3d)
    metrics: ClassVar[list[dict[str, str]]] = []

    def __init__(self, classes: list[str]) -> None:
        self.classes = list(classes)

    @classmethod
    def from_dataset(cls, dataset: dict[str, Any], **params: Any) -> "Processor":
        """An instance for a registered dataset document (its classes), with the spec's parameters."""
        return cls([c["label"] for c in dataset.get("classes") or []], **params)

    @classmethod
    def identity_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters as they enter the result identity (a subclass may add, e.g., its metric's code hash)."""
        return dict(params)

    @classmethod
    def dataset_params(cls, dataset: dict[str, Any]) -> dict[str, Any]:
        """What of the registered dataset the results depend on beyond its content revision (which is part of
        the inference identity), as it enters the result identity: e.g. the classification processor's class
        groups. Changing it makes the results stale; they are re-scored from the stored predictions."""
        return {}

    @abstractmethod
    def update(self, batch: Any) -> None:
        """Accumulate one batch of predictions."""

    @abstractmethod
    def merge(self, other: "Processor") -> None:
        """Add another instance's state (for sharded processing)."""

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """Derive every result from the accumulated state."""


PROCESSORS: Registry[type[Processor]] = Registry("processor", "zooeval.processors")


def register_processor(cls: type[Processor]) -> type[Processor]:
    """Class decorator: add a processor to the registry under its name."""
    PROCESSORS.register(cls.name, cls)
    return cls


def _value(text: str) -> Any:
    """A parameter value from the command line: an int, a float, true/false, or the text."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


@dataclass(frozen=True)
class ProcessorSpec:
    """A processor by name with its parameters (sorted (key, value) pairs, so a spec is hashable)."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: "str | ProcessorSpec") -> "ProcessorSpec":
        """``NAME``, ``NAME:VALUE`` (the processor's main parameter) or ``NAME:KEY=VALUE,KEY=VALUE``."""
        if isinstance(text, ProcessorSpec):
            return text
        name, _, rest = str(text).partition(":")
        name = name.strip()
        if not name:
            raise ValueError(f"processor spec {text!r} names no processor")
        if not rest:
            return cls(name)
        if "=" not in rest:
            main = PROCESSORS.get(name).main_param
            if not main:
                raise ValueError(f"processor {name!r} takes no {rest!r}: write {name}:KEY=VALUE")
            return cls(name, ((main, rest),))
        pairs = []
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"processor spec {text!r}: {item!r} is not KEY=VALUE")
            pairs.append((key.strip(), _value(value.strip())))
        return cls(name, tuple(sorted(pairs)))

    @property
    def processor(self) -> type[Processor]:
        return PROCESSORS.get(self.name)

    def identity(self, dataset: dict[str, Any] | None = None) -> dict[str, Any]:
        """name, version and (when there are any) the parameters, as the result identity holds them; with the
        registered ``dataset`` its ``dataset_params`` too."""
        cls = self.processor
        params = cls.identity_params(dict(self.params))
        if dataset is not None:
            params.update(cls.dataset_params(dataset))
        return {"name": cls.name, "version": cls.version, **({"params": params} if params else {})}

    def build(self, dataset: dict[str, Any]) -> Processor:
        return self.processor.from_dataset(dataset, **dict(self.params))

    def __str__(self) -> str:
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")


def processors_for_task(task: str, defaults: tuple[str, ...], extra: list[str | ProcessorSpec] = ()) -> tuple[ProcessorSpec, ...]:
    """A module's processors: its task kind's defaults, every registered default processor of that task, and
    the ``extra`` ones (e.g. from ``--processor``) that read that task's predictions."""
    specs = [ProcessorSpec.parse(n) for n in defaults]
    specs += [ProcessorSpec(cls.name) for cls in PROCESSORS if cls.default and task in cls.tasks]
    for spec in map(ProcessorSpec.parse, extra):
        if task in spec.processor.tasks:
            specs.append(spec)
    return tuple(dict.fromkeys(specs))


def processor_label(result: dict[str, Any]) -> str:
    """The processor a stored result was computed by, as the operator named it: the spec written with the result
    (``evaluate:accuracy``, ``ProcessorSpec`` as text), else the processor's name."""
    return result.get("processor_spec") or result["processor"]
