"""Any metric of Hugging Face ``evaluate`` as a processor.

``--processor evaluate:accuracy`` (a metric of the Hub's ``evaluate-metric`` organisation, fetched from
``HF_ENDPOINT``), ``evaluate:org/name`` (a community metric) or ``evaluate:/path/to/metric`` (a folder
holding ``<name>.py``, or the ``.py`` itself). The other parameters are the metric's ``compute()`` arguments
(``evaluate:metric=f1,average=macro``); ``config_name`` selects the metric's configuration (``glue``'s
``mrpc``). The metric gets ``predictions=y_pred, references=y_true`` of the task's predictions: dataset class
indices for classification (the top-1 class), or whatever a task's records hold (floats for a regression).

An evaluate metric is Python code: zooeval runs only the metrics the operator names, and pins each in the
result identity by the sha256 of its script (``script_sha256``) and of the local modules the script imports
(``imports_sha256``), so a changed metric makes new results. What is hashed is the copy evaluate imported,
i.e. the code that ran (evaluate keeps one copy per hash of the code without its comments, so a script edited
only in its comments keeps its copy and its identity). A metric is loaded once per process with
``evaluate.load``: a local one again when its folder's ``.py`` files change, a Hub one re-checked after
``HUB_RECHECK_SECONDS``.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from processors.base import Processor, register_processor

#: A Hub metric is resolved again (an ETag check) when its cached load is older than this.
HUB_RECHECK_SECONDS = 3600.0
#: Array and text outputs up to this many values are stored (under ``outputs``); longer ones are dropped.
MAX_STORED_VALUES = 1000
#: Parameters that are not compute() arguments.
LOAD_PARAMS = ("metric", "config_name")
#: Keys identity_params adds (a spec may not set them).
IDENTITY_KEYS = ("name", "script_sha256", "imports_sha256")


class MetricError(RuntimeError):
    """An evaluate metric that cannot be loaded, does not fit, or fails to compute."""

    error_class = "processor_error"


@dataclass(frozen=True)
class LoadedMetric:
    """A metric loaded by ``evaluate.load``: its class and what identifies its code."""

    path: str  # as the operator named it
    config_name: str | None
    metric_class: type
    module_hash: str  # evaluate's hash of the code (names its copy in evaluate's module cache)
    name: str
    location: str  # the local script, or "hub:<org>/<name>"
    script_sha256: str
    imports_sha256: str | None
    compute_params: frozenset[str] | None  # None: compute() takes any keyword
    loaded_at: float

    def instance(self) -> Any:
        """A fresh metric object (no state left from an earlier compute), kept in memory."""
        metric = self.metric_class(config_name=self.config_name, keep_in_memory=True, hash=self.module_hash)
        metric.download_and_prepare()
        return metric

    def describe(self) -> dict[str, Any]:
        import evaluate

        doc = {"name": self.name, "path": self.location, "script_sha256": self.script_sha256,
               "evaluate_version": evaluate.__version__}
        if self.imports_sha256:
            doc["imports_sha256"] = self.imports_sha256
        if self.config_name:
            doc["config_name"] = self.config_name
        return doc


_cache: dict[tuple[str, str | None], tuple[str | None, LoadedMetric]] = {}
_cache_lock = threading.Lock()


def local_script(path: str) -> Path | None:
    """The script a local metric path names (``evaluate.load``'s rule: the ``.py`` itself, or ``<dir>/<dir
    name>.py``), or None when the path names no local script (a Hub metric)."""
    p = Path(path).expanduser()
    if p.suffix == ".py":
        return p.resolve() if p.is_file() else None
    candidate = p / f"{p.name}.py"
    return candidate.resolve() if candidate.is_file() else None


def _local_fingerprint(script: Path) -> str:
    """sha256 over the ``.py`` files of a local metric's folder: what a change of the metric changes."""
    h = hashlib.sha256()
    for f in sorted(script.parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _imported_script(metric_class: type) -> Path:
    """The copy of the metric's script that evaluate imported (``.../evaluate_modules/metrics/<org>--<name>/
    <code hash>/<name>.py`` for a Hub metric, ``.../metrics/<name>/<code hash>/<name>.py`` for a local one)."""
    return Path(inspect.getfile(sys.modules[metric_class.__module__]))


def _code_hashes(metric_class: type) -> tuple[str, str | None]:
    """sha256 of the script evaluate imported, and of the local modules copied beside it (None: none)."""
    script = _imported_script(metric_class)
    folder = script.parent
    helpers = sorted(p for p in folder.rglob("*.py") if p != script and p != folder / "__init__.py"
                     and "__pycache__" not in p.parts)
    script_sha = hashlib.sha256(script.read_bytes()).hexdigest()
    if not helpers:
        return script_sha, None
    h = hashlib.sha256()
    for p in helpers:
        h.update(p.relative_to(folder).as_posix().encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return script_sha, h.hexdigest()


def _compute_params(metric_class: type) -> frozenset[str] | None:
    """The keyword arguments the metric's ``_compute`` takes besides its inputs (None: any, it has **kwargs)."""
    params = inspect.signature(metric_class._compute).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(n for n in params if n not in ("self", "predictions", "references"))


def _evaluate_load(path: str, config_name: str | None) -> Any:
    """``evaluate.load(path)``, its failure a MetricError naming the path and why."""
    import evaluate

    try:
        return evaluate.load(path, config_name=config_name, keep_in_memory=True)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TypeError) and "'NoneType' object is not callable" in str(exc):
            why = "its script defines no evaluate.Metric subclass"
        elif isinstance(exc, FileNotFoundError):
            why += (" (a local metric is a folder holding <folder name>.py, or the .py file; a Hub metric is a name"
                    " such as 'accuracy' or 'org/name', fetched from HF_ENDPOINT)")
        raise MetricError(f"evaluate metric {path!r} cannot be loaded: {why}") from exc


def _load(path: str, config_name: str | None, script: Path | None) -> LoadedMetric:
    """The metric loaded and checked (it takes predictions and references), with what identifies its code and
    where it came from: the local script, or ``hub:<org>/<name>`` (the Space evaluate found it in, or evaluate's
    cached copy of it when the Hub was unreachable)."""
    metric = _evaluate_load(path, config_name)
    features = metric.features if isinstance(metric.features, list) else [metric.features]
    inputs = sorted(set(features[0]))
    if inputs != ["predictions", "references"]:
        raise MetricError(f"evaluate metric {path!r} ({metric.name}) needs the inputs {inputs}; zooeval gives "
                          f"predictions and references only")
    metric_class = type(metric)
    location = str(script) if script else "hub:" + _imported_script(metric_class).parents[1].name.replace("--", "/")
    script_sha, imports_sha = _code_hashes(metric_class)
    return LoadedMetric(path, config_name, metric_class, metric._hash, metric.name, location, script_sha,
                        imports_sha, _compute_params(metric_class), time.monotonic())


def load_metric(path: str, config_name: str | None = None) -> LoadedMetric:
    """The metric ``path`` names, loaded once per process (a local metric again when its folder's ``.py``
    files change; a Hub metric when the load is older than HUB_RECHECK_SECONDS). Raises MetricError."""
    if not isinstance(path, str) or not path.strip():
        raise MetricError(f"evaluate needs a metric: evaluate:<name or path>, got {path!r}")
    script = local_script(path)
    version = _local_fingerprint(script) if script else None
    key = (path, config_name)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == version and (
                script is not None or time.monotonic() - cached[1].loaded_at < HUB_RECHECK_SECONDS):
            return cached[1]
        loaded = _load(path, config_name, script)
        _cache[key] = (version, loaded)
        return loaded


def _split_params(params: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(metric path, config name, compute() arguments) of a spec's parameters; raises MetricError."""
    taken = [k for k in IDENTITY_KEYS if k in params]
    if taken:
        raise MetricError(f"evaluate: {', '.join(taken)} cannot be given, zooeval sets it from the metric's code")
    config_name = params.get("config_name")
    compute_kwargs = {k: v for k, v in params.items() if k not in LOAD_PARAMS}
    return params.get("metric"), None if config_name is None else str(config_name), compute_kwargs


def _check_compute_params(metric: LoadedMetric, kwargs: dict[str, Any]) -> None:
    if metric.compute_params is None:
        return
    unknown = sorted(set(kwargs) - metric.compute_params)
    if unknown:
        takes = ", ".join(sorted(metric.compute_params)) or "none"
        raise MetricError(f"evaluate metric {metric.path!r} ({metric.name}) takes no parameter "
                          f"{', '.join(map(repr, unknown))}; its compute() parameters: {takes}")


def _key(name: str) -> str:
    """A metric output name as a MongoDB field name (no '.', no leading '$')."""
    name = str(name).replace(".", "_")
    return "_" + name[1:] if name.startswith("$") else name


def _finite_or_none(value: float, where: str, notes: list[str]) -> float | None:
    if math.isfinite(value):
        return value
    notes.append(f"{where} was {value}; stored as null")
    return None


def flatten_outputs(output: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A metric's compute() output as (numeric values, other values kept, notes).

    Numbers (nested dicts flattened to ``a/b``) go to the first; NaN and infinities become None with a note.
    Arrays, lists and texts of up to MAX_STORED_VALUES values go to the second as lists; longer ones, and
    values of any other type, are dropped with a note."""
    numbers: dict[str, Any] = {}
    others: dict[str, Any] = {}
    notes: list[str] = []

    def put(name: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                put(f"{name}/{_key(k)}" if name else _key(k), v)
            return
        if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
            value = value.item()
        if isinstance(value, bool) or value is None:
            others[name] = value
        elif isinstance(value, int):
            numbers[name] = value
        elif isinstance(value, float):
            numbers[name] = _finite_or_none(value, name, notes)
        elif isinstance(value, str):
            if len(value) <= MAX_STORED_VALUES:
                others[name] = value
            else:
                notes.append(f"{name}: a text of {len(value)} characters, not stored")
        elif isinstance(value, (list, tuple, np.ndarray)):
            try:
                arr = np.asarray(value)
            except ValueError:  # ragged
                arr = np.asarray(value, dtype=object)
            if arr.size > MAX_STORED_VALUES:
                notes.append(f"{name}: {arr.size} values, more than {MAX_STORED_VALUES}; not stored")
            elif arr.dtype.kind in "biuf":
                values = arr.astype(float if arr.dtype.kind == "f" else int).tolist()
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    notes.append(f"{name} holds NaN or infinite values; stored as null")
                    values = _nulls(values)
                others[name] = values
            elif arr.dtype.kind == "U":
                others[name] = arr.tolist()
            else:
                notes.append(f"{name}: values of type {arr.dtype} ({type(value).__name__}), not stored")
        else:
            notes.append(f"{name}: a {type(value).__name__}, not stored")

    put("", output)
    return numbers, others, notes


def _nulls(values: Any) -> Any:
    """Nested lists with NaN and infinities as None."""
    if isinstance(values, list):
        return [_nulls(v) for v in values]
    return values if math.isfinite(values) else None


def _as_values(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numbers, got dtype {arr.dtype}")
    return arr


@register_processor
class EvaluateProcessor(Processor):
    """Any Hugging Face ``evaluate`` metric on the predictions' ``y_pred`` and ``y_true``
    (``--processor evaluate:<name or path>[,KEY=VALUE...]``)."""

    name = "evaluate"
    version = 1
    tasks = ("image-classification", "text-classification")
    default = False
    main_param = "metric"
    metrics = [
        {"name": "<the metric's outputs>", "description": "Any Hugging Face evaluate metric, run on the top-1 predicted "
         "class and the true class (or a task's y_pred and y_true); numbers in overall, short lists under outputs",
         "calculation": "metric.compute(predictions=y_pred, references=y_true, **params)",
         "values": "as the metric defines them"},
    ]

    def __init__(self, classes: list[str], **params: Any) -> None:
        super().__init__(classes)
        path, config_name, self.compute_kwargs = _split_params(params)
        self.params = dict(params)
        self.metric = load_metric(path, config_name)
        _check_compute_params(self.metric, self.compute_kwargs)
        self.y_true: list[np.ndarray] = []
        self.y_pred: list[np.ndarray] = []

    @classmethod
    def identity_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters plus the metric's name and the sha256 of its code (loading it once per process)."""
        path, config_name, compute_kwargs = _split_params(params)
        metric = load_metric(path, config_name)
        _check_compute_params(metric, compute_kwargs)
        out = {**params, "name": metric.name, "script_sha256": metric.script_sha256}
        if metric.imports_sha256:
            out["imports_sha256"] = metric.imports_sha256
        return out

    def update(self, batch: Any) -> None:
        y_true = _as_values(batch.y_true, "y_true")
        y_pred = _as_values(batch.y_pred, "y_pred")
        if y_true.shape != y_pred.shape:
            raise ValueError(f"y_true and y_pred differ in length: {y_true.shape[0]} != {y_pred.shape[0]}")
        self.y_true.append(y_true)
        self.y_pred.append(y_pred)

    def merge(self, other: Processor) -> None:
        if not isinstance(other, EvaluateProcessor):
            raise TypeError(f"cannot merge {type(other).__name__} into EvaluateProcessor")
        if other.params != self.params:
            raise ValueError(f"cannot merge evaluate processors with different parameters: {other.params} != {self.params}")
        self.y_true.extend(other.y_true)
        self.y_pred.extend(other.y_pred)

    def compute(self) -> dict[str, Any]:
        metric = self.metric
        y_true = np.concatenate(self.y_true) if self.y_true else np.zeros(0)
        y_pred = np.concatenate(self.y_pred) if self.y_pred else np.zeros(0)
        n = int(y_true.shape[0])
        result: dict[str, Any] = {"overall": {"n": n}, "metric": metric.describe()}
        if n == 0:
            result["notes"] = ["no samples: the metric was not computed"]
            return result
        try:
            output = metric.instance().compute(predictions=y_pred.tolist(), references=y_true.tolist(),
                                               **self.compute_kwargs)
        except Exception as exc:
            raise MetricError(f"evaluate metric {metric.path!r} ({metric.name}) failed on {n} samples: "
                              f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(output, dict):
            raise MetricError(f"evaluate metric {metric.path!r} ({metric.name}) returned a {type(output).__name__}, "
                              f"not a dict of results")
        numbers, others, notes = flatten_outputs(output)
        if "n" in numbers:  # "n" is the number of samples; the metric's own "n" is kept beside it
            numbers["metric_n"] = numbers.pop("n")
        result["overall"] = {**numbers, "n": n}
        if others:
            result["outputs"] = others
        if notes:
            result["notes"] = notes
        return result
