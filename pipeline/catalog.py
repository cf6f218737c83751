"""The modules this installation runs: one per (module class x registered dataset).

Every registered dataset gets the module classes of its task kind (``modules.base.MODULES``, filled by
plug-ins through the ``zooeval.modules`` entry points), each with the dataset's split (test, else its last),
the variants of the dataset's ``supported_variants`` that its task kind can apply (a detection variant needs
a box rule), and the processors of its task: the task kind's defaults, every registered default processor of
that task, the ones its dataset.json names in ``processors`` and the ones asked for (``--processor``).
A class that is not ``default`` (MTCNN, which detects only faces) runs only on datasets whose dataset.json
names it in ``modules``.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from core.registry import name_matches
from modules.base import MODULES, EvaluationModule
from perturbations import get_perturbation
from processors.base import processors_for_task
from tasks.base import task_for_dataset

log = logging.getLogger("zooeval")


def build_modules(datasets: dict[str, dict[str, Any]], include: list[str] | None = None,
                  exclude: list[str] | None = None, variants: list[str] | None = None,
                  processors: list[str] | None = None, warn: Callable[[str], Any] = log.warning) -> list[EvaluationModule]:
    """The modules for the registered datasets, filtered by name wildcards (``include``/``exclude``) and
    variants; ``processors`` adds processor specs (``NAME[:VALUE]``) to the modules whose task they read.
    What is left out (an unknown task, module kind, variant or processor) is told to ``warn``."""
    found: dict[str, EvaluationModule] = {}
    for name, doc in sorted(datasets.items()):
        try:
            task = task_for_dataset(doc)
        except KeyError as exc:
            warn(f"WARNING: {exc.args[0]}; it gets no modules")
            continue
        asked = set(doc.get("modules") or [])
        for kind in sorted(asked - set(MODULES.names())):
            warn(f"WARNING: dataset {name!r} names module kind {kind!r}, which is not installed "
                 f"(known: {', '.join(sorted(MODULES.names()))}); ignored")
        classes = [cls for cls in MODULES if cls.task == task.name and (cls.default or cls.kind in asked)]
        if not classes:
            continue
        split = "test" if any(s["name"] == "test" for s in doc["splits"]) else doc["splits"][-1]["name"]
        vs = ["original"]
        for v in doc.get("supported_variants") or []:
            if variants is not None and v not in variants:
                continue
            try:
                why = task.supports_variant(get_perturbation(v))
            except KeyError as exc:  # not installed (a plug-in's perturbation, uninstalled): the others still run
                why = exc.args[0]
            if why:
                warn(f"WARNING: dataset {name!r}: variant {v!r} skipped for {task.name}: {why}")
                continue
            vs.append(v)
        if variants is not None and "original" not in variants:
            vs.remove("original")
        extra = [*(doc.get("processors") or []), *(processors or [])]
        try:
            specs = tuple(str(s) for s in processors_for_task(task.name, task.default_processors, extra))
        except (KeyError, ValueError) as exc:  # an unknown processor: the dataset's modules keep the defaults
            warn(f"WARNING: dataset {name!r}: {exc.args[0]}; its modules run the default processors only")
            specs = tuple(str(s) for s in processors_for_task(task.name, task.default_processors))
        for cls in classes:
            module = cls(dataset=name, split=split, variants=tuple(vs), processors=specs)
            found[module.name] = module
    return [m for name, m in found.items() if name_matches(name, include, exclude)]
