"""An enriched model card section from zooeval's measurements.

:func:`measured_model_index` turns stored results into Hugging Face ``model-index`` metadata, built with
huggingface_hub's own ``EvalResult`` / ``eval_results_to_model_index`` so the Hub's parser reads it back:

* one ``results`` entry per (task, dataset, split); every metric is marked as zooeval's: ``args.measured_by:
  zooeval``, and ``source: {name: zooeval, url}`` when a url is given (the Hub's format needs a url with a
  source name);
* the metrics of each processor (``MODEL_INDEX_METRICS``): classification ``accuracy``; ``f1``, ``precision``,
  ``recall`` with ``args.average: macro``; ``f1`` with ``args.average: weighted``. mcc:
  ``matthews_correlation``. regression: ``pearsonr``, ``spearmanr``. detection: ``mAP`` (AP@[.50:.95]),
  ``AP50``, ``AP75``, ``AR100``. segmentation: ``mean_iou``, ``pixel_accuracy``. A value that is undefined
  (None, or detection's -1) is left out;
* each metric's ``args`` carry what the Hub's fields cannot: ``variant`` (``original`` or the perturbation),
  ``model_revision``, ``dataset_revision`` (zooeval's content revision, not a Hub commit, so it is not put in
  ``dataset.revision``) and ``n`` (samples, or images for detection). Perturbed variants are named in the
  metric ``name`` too ("Accuracy (rotated90)"). ``verified`` is never set: only the Hub sets it.

:func:`metadata_yaml` gives that metadata as YAML; :func:`render_card` a whole card (front matter plus a
markdown section: results per dataset, split and variant with the accuracy's Wilson interval and the change
from the original data, per-class and per-group tables, other processors' metrics, runtime, claimed vs
measured, statements).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from huggingface_hub.repocard_data import EvalResult, eval_results_to_model_index
from huggingface_hub.utils import yaml_dump

from cards.intervals import DEFAULT_LEVEL, wilson_interval

SOURCE_NAME = "zooeval"
#: Per processor: the metrics put in the model-index, (stored key, Hub metric type, average, pretty name),
#: and the key of the sample count (images for detection).
MODEL_INDEX_METRICS: dict[str, tuple[tuple[tuple[str, str, str | None, str], ...], str]] = {
    "classification": ((
        ("accuracy", "accuracy", None, "Accuracy"),
        ("macro_f1", "f1", "macro", "Macro F1"),
        ("macro_precision", "precision", "macro", "Macro precision"),
        ("macro_recall", "recall", "macro", "Macro recall"),
        ("weighted_f1", "f1", "weighted", "Weighted F1"),
    ), "n"),
    "mcc": ((("mcc", "matthews_correlation", None, "Matthews correlation"),), "n"),
    "regression": ((("pearson", "pearsonr", None, "Pearson r"), ("spearman", "spearmanr", None, "Spearman rho")), "n"),
    "detection": ((
        ("AP", "mAP", None, "AP@[.50:.95]"),
        ("AP50", "AP50", None, "AP50"),
        ("AP75", "AP75", None, "AP75"),
        ("AR100", "AR100", None, "AR@100"),
    ), "n_images"),
    "segmentation": ((
        ("mean_iou", "mean_iou", None, "Mean IoU"),
        ("pixel_accuracy", "pixel_accuracy", None, "Pixel accuracy"),
    ), "n"),
}
#: Per-class table rows shown per result before the rest is only counted.
MAX_CLASS_ROWS = 100


def _task_type(result: Mapping[str, Any], task_types: Mapping[str, str] | None) -> str:
    if result.get("task"):
        return str(result["task"])
    dataset = result.get("dataset")
    if task_types and dataset in task_types:
        return task_types[dataset]
    if result.get("processor") == "detection":
        return "object-detection"
    raise ValueError(f"no task type for dataset {dataset!r}: the result has no 'task' and task_types does not "
                     "name it (e.g. {'digits': 'image-classification'})")


def _args(result: Mapping[str, Any], n: Any, average: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if average:
        args["average"] = average
    args["variant"] = result.get("variant", "original")
    args["measured_by"] = SOURCE_NAME
    for key in ("model_revision", "dataset_revision"):
        if result.get(key) is not None:
            args[key] = str(result[key])
    if isinstance(n, int):
        args["n"] = n
    return args


def _named(name: str, variant: str) -> str:
    return name if variant == "original" else f"{name} ({variant})"


def _defined(value: Any, processor: str) -> bool:
    """A stored metric value worth putting in a card: a finite number (detection's -1 means undefined)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return not (processor == "detection" and value < 0)


def measured_eval_results(results: Iterable[Mapping[str, Any]], *, source_url: str | None = None,
                          task_types: Mapping[str, str] | None = None,
                          dataset_ids: Mapping[str, str] | None = None,
                          dataset_names: Mapping[str, str] | None = None) -> list[EvalResult]:
    """huggingface_hub ``EvalResult``s of zooeval's stored results (see the module doc). ``task_types``,
    ``dataset_ids``, ``dataset_names``: per zooeval dataset name, the Hub task type (for results without a
    ``task``), the Hub dataset id and the pretty name (default: zooeval's dataset name)."""
    source = {"source_name": SOURCE_NAME, "source_url": source_url} if source_url else {}
    out: list[EvalResult] = []
    for result in results:
        processor = str(result.get("processor"))
        if processor not in MODEL_INDEX_METRICS:
            continue
        dataset = result.get("dataset")
        if not dataset:
            raise ValueError(f"a result of {result.get('model_name')!r} has no dataset")
        variant = str(result.get("variant", "original"))
        overall = result.get("overall") or {}
        common = {
            "task_type": _task_type(result, task_types),
            "dataset_type": (dataset_ids or {}).get(dataset, dataset),
            "dataset_name": (dataset_names or {}).get(dataset, dataset),
            "dataset_split": result.get("split"),
            **source,
        }
        metrics, n_key = MODEL_INDEX_METRICS[processor]
        for key, metric_type, average, name in metrics:
            if _defined(overall.get(key), processor):
                out.append(EvalResult(metric_type=metric_type, metric_value=float(overall[key]),
                                      metric_name=_named(name, variant),
                                      metric_args=_args(result, overall.get(n_key), average), **common))
    return out


def measured_model_index(model_name: str, results: Iterable[Mapping[str, Any]], *, source_url: str | None = None,
                         task_types: Mapping[str, str] | None = None,
                         dataset_ids: Mapping[str, str] | None = None,
                         dataset_names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The ``model-index`` metadata (a list) of zooeval's stored results; empty when none can be shown."""
    evals = measured_eval_results(results, source_url=source_url, task_types=task_types,
                                  dataset_ids=dataset_ids, dataset_names=dataset_names)
    return eval_results_to_model_index(model_name, evals) if evals else []


def metadata_yaml(model_index: list[dict[str, Any]]) -> str:
    """The YAML of ``{"model-index": model_index}``, as it goes between a card's ``---`` lines."""
    return yaml_dump({"model-index": model_index}, sort_keys=False)


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _ci(result: Mapping[str, Any], level: float) -> str:
    overall = result.get("overall") or {}
    n, correct = overall.get("n"), overall.get("correct")
    if not isinstance(n, int) or not isinstance(correct, int) or n == 0:
        return ""
    lo, hi = wilson_interval(correct, n, level)
    return f"[{lo:.4f}, {hi:.4f}]"


def _order(results: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(results, key=lambda r: (str(r.get("dataset")), str(r.get("split")),
                                          r.get("variant", "original") != "original", str(r.get("variant"))))


def _classification_section(results: list[Mapping[str, Any]], groups: Mapping[str, Mapping[str, Iterable[str]]],
                            max_class_rows: int, level: float) -> list[str]:
    originals = {(r.get("dataset"), r.get("split")): r for r in results if r.get("variant", "original") == "original"}
    lines = ["### Classification", "",
             f"Accuracy with its {level:.0%} Wilson interval; the change is against the original data of the "
             "same dataset and split.", ""]
    rows = []
    for r in results:
        o = r.get("overall") or {}
        base = originals.get((r.get("dataset"), r.get("split")))
        change = None
        if base is not None and base is not r and isinstance(o.get("accuracy"), (int, float)):
            change = f"{o['accuracy'] - (base.get('overall') or {}).get('accuracy', 0.0):+.4f}"
        rows.append([r.get("dataset"), r.get("split"), r.get("variant", "original"), o.get("n"), o.get("accuracy"),
                     _ci(r, level), change, o.get("macro_f1"), o.get("weighted_f1"),
                     r.get("model_revision"), r.get("dataset_revision")])
    lines += _table(["dataset", "split", "variant", "n", "accuracy", f"{level:.0%} interval", "change",
                     "macro F1", "weighted F1", "model revision", "dataset revision"], rows)
    for r in results:
        if r.get("variant", "original") != "original":
            continue
        per_class = r.get("per_class") or {}
        title = f"#### Per class: {r.get('dataset')} ({r.get('split')})"
        items = list(per_class.items())
        lines += ["", title, ""]
        lines += _table(["class", "support", "precision", "recall", "F1"],
                        [[name, row.get("support"), row.get("precision"), row.get("recall"), row.get("f1")]
                         for name, row in items[:max_class_rows]])
        if len(items) > max_class_rows:
            lines += ["", f"{len(items) - max_class_rows} more classes are in zooeval's export."]
        stored = r.get("per_group") or {}  # the classification processor's groups (the dataset's class_groups)
        if stored:
            lines += ["", f"#### Per group: {r.get('dataset')} ({r.get('split')})", ""]
            lines += _table(["group", "classes", "support", "precision", "recall", "F1"],
                            [[group, len(g.get("classes") or []), g.get("support"), g.get("micro_precision"),
                              g.get("micro_recall"), g.get("micro_f1")] for group, g in stored.items()])
        dataset_groups = {} if stored else groups.get(r.get("dataset")) or {}
        if dataset_groups:
            lines += ["", f"#### Per group: {r.get('dataset')} ({r.get('split')})", ""]
            group_rows = []
            for group, members in dataset_groups.items():
                rows_in = [per_class[m] for m in members if m in per_class]
                tp = sum(int(x.get("tp", 0)) for x in rows_in)
                support = sum(int(x.get("support", 0)) for x in rows_in)
                predicted = sum(int(x.get("tp", 0)) + int(x.get("fp", 0)) for x in rows_in)
                group_rows.append([group, len(rows_in), support, tp / predicted if predicted else 0.0,
                                   tp / support if support else 0.0,
                                   2 * tp / (support + predicted) if support + predicted else 0.0])
            lines += _table(["group", "classes", "support", "precision", "recall", "F1"], group_rows)
    return lines


def _detection_section(results: list[Mapping[str, Any]], max_class_rows: int) -> list[str]:
    lines = ["### Object detection", "", "COCO bounding-box metrics (-1: undefined, no ground truth).", ""]
    lines += _table(["dataset", "split", "variant", "images", "AP", "AP50", "AP75", "AR@100", "model revision",
                     "dataset revision"],
                    [[r.get("dataset"), r.get("split"), r.get("variant", "original"),
                      (r.get("overall") or {}).get("n_images"), *((r.get("overall") or {}).get(k)
                                                                  for k in ("AP", "AP50", "AP75", "AR100")),
                      r.get("model_revision"), r.get("dataset_revision")] for r in results])
    for r in results:
        if r.get("variant", "original") != "original":
            continue
        items = list((r.get("per_class") or {}).items())
        lines += ["", f"#### Per class: {r.get('dataset')} ({r.get('split')})", ""]
        lines += _table(["class", "supercategory", "AP", "AP50", "AR@100"],
                        [[name, row.get("supercategory"), row.get("AP"), row.get("AP50"), row.get("AR100")]
                         for name, row in items[:max_class_rows]])
        if len(items) > max_class_rows:
            lines += ["", f"{len(items) - max_class_rows} more classes are in zooeval's export."]
        supers = r.get("per_supercategory") or {}
        if supers:
            lines += ["", f"#### Per supercategory: {r.get('dataset')} ({r.get('split')})", ""]
            lines += _table(["supercategory", "classes", "AP", "AP50", "AR@100"],
                            [[name, len(row.get("classes") or []), row.get("AP"), row.get("AP50"), row.get("AR100")]
                             for name, row in supers.items()])
    return lines


def _other_section(results: list[Mapping[str, Any]]) -> list[str]:
    """The model-index metrics of the processors with no section of their own (mcc, regression)."""
    rows = []
    for r in results:
        metrics, n_key = MODEL_INDEX_METRICS[str(r.get("processor"))]
        overall = r.get("overall") or {}
        rows += [[r.get("dataset"), r.get("split"), r.get("variant", "original"), r.get("processor"), name,
                  overall.get(key), overall.get(n_key)]
                 for key, _, _, name in metrics if _defined(overall.get(key), str(r.get("processor")))]
    if not rows:
        return []
    return ["### Other metrics", ""] + _table(["dataset", "split", "variant", "processor", "metric", "value", "n"], rows)


def _runtime_section(results: list[Mapping[str, Any]]) -> list[str]:
    def number(value: Any) -> str | None:
        return f"{value:.4g}" if isinstance(value, (int, float)) else None

    rows, seen = [], set()
    for r in results:  # one row per inference: every processor's result of it carries the same runtime
        inference = r.get("inference_id") or (r.get("dataset"), r.get("split"), r.get("variant", "original"))
        if r.get("runtime") and inference not in seen:
            seen.add(inference)
            rows.append([r.get("dataset"), r.get("split"), r.get("variant", "original"),
                         *(number(r["runtime"].get(k)) for k in ("instances_per_second", "time_per_instance", "load_s"))])
    if not rows:
        return []
    return ["### Runtime", ""] + _table(["dataset", "split", "variant", "instances/s", "s per instance",
                                         "load s"], rows)


def _verdict_section(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    if not verdicts:
        return []
    rows = []
    for v in verdicts:
        interval = v.get("interval")
        claimed = v.get("claimed_as_written", v.get("claimed"))  # as the card wrote it, not re-rounded
        reason = v.get("reason") or ""
        if v.get("candidates"):
            reason += " (measured: " + ", ".join(f"{k} {x:.4f}" for k, x in v["candidates"].items()) + ")"
        if v.get("contradiction_group"):
            reason += "; the card states this value more than once, differently"
        rows.append([v.get("metric_type"), v.get("claim_dataset"), v.get("claim_split"),
                     None if claimed is None else str(claimed),
                     v.get("measured"), f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "",
                     v.get("method"), v.get("verdict"), reason])
    return ["### Claimed vs measured", "",
            "The card's own `model-index` values against zooeval's measurements.", ""] + _table(
        ["metric", "dataset", "split", "claimed", "measured", "interval", "method", "verdict", "why"], rows)


def _statement_section(statements: Sequence[Mapping[str, Any]]) -> list[str]:
    if not statements:
        return []
    lines = ["### Observations", "",
             "Each follows from the numbers shown with it and the thresholds named (zooeval's statements module).",
             ""]
    for s in statements:
        thresholds = ", ".join(f"{k}={v}" for k, v in (s.get("thresholds") or {}).items())
        lines.append(f"* {s.get('text')} ({s.get('kind')}; thresholds: {thresholds})")
    return lines


def render_section(model_name: str, results: Iterable[Mapping[str, Any]], *, source_url: str | None = None,
                   verdicts: Sequence[Mapping[str, Any]] = (), statements: Sequence[Mapping[str, Any]] = (),
                   groups: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
                   max_class_rows: int = MAX_CLASS_ROWS, level: float = DEFAULT_LEVEL) -> str:
    """The markdown body of the enriched section (no front matter). ``groups``: dataset -> {group: classes}."""
    results = _order(list(results))
    zooeval = f"[zooeval]({source_url})" if source_url else "zooeval"
    lines = [f"## Evaluation by zooeval: {model_name}", "",
             f"Measured by {zooeval} on the model and dataset revisions named below; "
             "claims in this card's own metadata are compared with the measurements.", ""]
    classification = [r for r in results if r.get("processor") == "classification"]
    detection = [r for r in results if r.get("processor") == "detection"]
    other = [r for r in results if r.get("processor") in MODEL_INDEX_METRICS
             and r.get("processor") not in ("classification", "detection")]
    if classification:
        lines += _classification_section(classification, groups or {}, max_class_rows, level) + [""]
    if detection:
        lines += _detection_section(detection, max_class_rows) + [""]
    if other:
        lines += _other_section(other) + [""]
    if not classification and not detection and not other:
        lines += ["zooeval has no results for this model yet.", ""]
    for part in (_runtime_section(results), _verdict_section(verdicts), _statement_section(statements)):
        if part:
            lines += part + [""]
    return "\n".join(lines)


def render_card(model_name: str, results: Iterable[Mapping[str, Any]], *, source_url: str | None = None,
                verdicts: Sequence[Mapping[str, Any]] = (), statements: Sequence[Mapping[str, Any]] = (),
                groups: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
                task_types: Mapping[str, str] | None = None, dataset_ids: Mapping[str, str] | None = None,
                dataset_names: Mapping[str, str] | None = None, max_class_rows: int = MAX_CLASS_ROWS,
                level: float = DEFAULT_LEVEL) -> str:
    """A whole model card: ``---`` front matter with the measured ``model-index``, then :func:`render_section`."""
    results = list(results)
    model_index = measured_model_index(model_name, results, source_url=source_url, task_types=task_types,
                                       dataset_ids=dataset_ids, dataset_names=dataset_names)
    body = render_section(model_name, results, source_url=source_url, verdicts=verdicts, statements=statements,
                          groups=groups, max_class_rows=max_class_rows, level=level)
    front = metadata_yaml(model_index) if model_index else "{}\n"
    return f"---\n{front}---\n\n{body}"
