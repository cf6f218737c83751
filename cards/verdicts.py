"""Verdicts on a card's claims: does zooeval's measurement confirm the value a card states?

:func:`judge_claim` compares one claim (a record of ``model_index.parse_claims``) with one stored result and
gives one of ``VERDICTS``:

* ``confirmed``: the claimed value (widened by its reporting precision, see below) overlaps the measurement's
  confidence interval (level ``DEFAULT_LEVEL``) for its sample count;
* ``contradicted``: it lies outside; ``gap`` = claimed - measured (signed), ``gap_beyond_interval`` =
  the distance past the nearer interval bound (signed the same way);
* ``not comparable``, with the reason: no numeric value; an unknown metric; top-5 accuracy; the averaging of
  precision / recall / F1 not stated, or stated twice differently; another dataset (``dataset_matches``
  False, the caller matches dataset names); another split (or none stated: a value with no split cannot be
  held against one); another variant; a metric not measured for the result's task kind; a value outside the
  metric's range; a metric whose interval needs per-sample resampling that was not supplied; a dataset the
  caller registers as compatible with the claim's (same classes, other data: ``judge_against_results``);
* ``not yet measured``: there is no result, it does not hold this metric, or the processor that measures the
  metric has not scored the result's predictions yet (``zooeval run --processor mcc`` does, with no inference).

Scale: a claimed value above 1 for a metric bounded by 1 (and at most 100) is read as a percentage
(95.1 -> 0.951) and the verdict says so in ``scale_note``; above 100 it is not comparable. A value within the
range is taken as written (0.5 is 0.5, never 0.5%).

Reporting precision: cards round. A claim written with d decimals stands for [v - h, v + h] with
h = 0.5 * 10^-d on the metric's own scale (``"95.1%"`` and ``95.1`` have d = 3 as fractions), capped at
``ROUNDING_CAP`` so that ``1.0`` or ``1`` is not read as "anything from 0.5 to 1.5".

Intervals (``METRICS`` says which metric gets which, see ``intervals`` for the methods):

=================================  ==============  ====================================  =============================
claim                              processor       stored key                            interval
=================================  ==============  ====================================  =============================
accuracy (top-1)                   classification  overall.accuracy                      Wilson(correct, n)
f1/precision/recall average=micro  classification  overall.micro_*                       Wilson(correct, n)
recall average=weighted            classification  overall.weighted_recall (= accuracy)  Wilson(correct, n)
f1/precision/recall average=macro  classification  overall.macro_*                       bootstrap (matrix)
f1/precision average=weighted      classification  overall.weighted_*                    bootstrap (matrix)
balanced_accuracy                  classification  confusion matrix (truth's classes)    bootstrap (matrix)
f1 average=binary (2 classes)      classification  per_class[pos].f1                     bootstrap (matrix)
precision/recall average=binary    classification  per_class[pos].precision/recall       Wilson(tp, predicted/support)
matthews_correlation (mcc)         mcc             overall.mcc                           bootstrap (matrix)
pearsonr / spearmanr (cos_sim_*)   regression      overall.pearson / spearman, n         Fisher z
mAP / AP50 / AP75 / AR100          detection       overall.AP / AP50 / AP75 / AR100      replicates, or ±0.01
mean_iou                           segmentation    overall.mean_iou                      replicates, or ±0.01
=================================  ==============  ====================================  =============================

"bootstrap (matrix)" is the seeded percentile bootstrap over the stored confusion matrix (the ordinary
sample bootstrap; no per-sample data needed). Detection AP and mean IoU have no sufficient statistic in a
stored result: with ``bootstrap_replicates`` (the metric recomputed on resampled images, e.g. with
``intervals.bootstrap_indices``) they get a percentile interval; without, the documented tolerance
``REPLICATES_TOLERANCE`` (±0.01, one AP point) around the measurement stands in for it (method ``tolerance``,
no level): it is not a confidence interval, it covers a claim rounded to two decimals and the small differences
between COCO-style evaluators (area ranges, maxDets, crowd handling) that a careful author's number may carry. A
bootstrap interval that collapses to a point (a matrix with no errors, or a single cell) says nothing about
uncertainty, so a claim outside it is not comparable rather than contradicted.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cards.intervals import (
    BOOTSTRAP_REPLICATES,
    BOOTSTRAP_SEED,
    DEFAULT_LEVEL,
    bootstrap_confusion_interval,
    confusion_metric,
    fisher_z_interval,
    percentile_interval,
    wilson_interval,
)

CONFIRMED, CONTRADICTED, NOT_COMPARABLE, NOT_YET_MEASURED = (
    "confirmed", "contradicted", "not comparable", "not yet measured")
VERDICTS = (CONFIRMED, CONTRADICTED, NOT_COMPARABLE, NOT_YET_MEASURED)

#: Largest half-width a claim's rounding may add (a whole percentage point rounded: +-0.5 points).
ROUNDING_CAP = 0.005
#: The half-width of the tolerance that judges detection AP / AR and mean IoU claims when no bootstrap
#: replicates are given (see the module docstring): one point on the 0-100 scale cards write them on.
REPLICATES_TOLERANCE = 0.01
#: The variant a claim is about when its metric args name none (cards report the unperturbed dataset).
ORIGINAL = "original"
#: Split names that mean the same split.
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "validation": "validation", "dev": "validation",
                 "test": "test", "testing": "test", "train": "train", "training": "train"}
AVERAGES = ("macro", "micro", "weighted", "binary")


#: The task kinds (a result's ``task``) whose predictions each group of processors scores.
CLASSIFICATION_TASKS = ("image-classification", "text-classification", "text-pair-classification")


@dataclass(frozen=True)
class MetricSpec:
    """A metric family: the processor that measures it, the task kinds it is measured for (a result of another
    task cannot hold it) and the range of its values."""

    label: str
    processors: tuple[str, ...]
    tasks: tuple[str, ...]
    low: float = 0.0
    high: float = 1.0
    averaged: bool = False


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec("accuracy", ("classification",), CLASSIFICATION_TASKS),
    "f1": MetricSpec("F1", ("classification",), CLASSIFICATION_TASKS, averaged=True),
    "precision": MetricSpec("precision", ("classification",), CLASSIFICATION_TASKS, averaged=True),
    "recall": MetricSpec("recall", ("classification",), CLASSIFICATION_TASKS, averaged=True),
    "balanced_accuracy": MetricSpec("balanced accuracy", ("classification",), CLASSIFICATION_TASKS),
    "matthews_correlation": MetricSpec("Matthews correlation", ("mcc",), CLASSIFICATION_TASKS, low=-1.0),
    "pearson": MetricSpec("Pearson r", ("regression",), ("sentence-similarity",), low=-1.0),
    "spearman": MetricSpec("Spearman rho", ("regression",), ("sentence-similarity",), low=-1.0),
    "AP": MetricSpec("AP@[.50:.95]", ("detection",), ("object-detection",)),
    "AP50": MetricSpec("AP50", ("detection",), ("object-detection",)),
    "AP75": MetricSpec("AP75", ("detection",), ("object-detection",)),
    "AR100": MetricSpec("AR@100", ("detection",), ("object-detection",)),
    "mean_iou": MetricSpec("mean IoU", ("segmentation",), ("semantic-segmentation", "image-segmentation")),
}

#: Hub metric types (lower case, spaces and hyphens as "_", averaging words removed) -> METRICS key.
METRIC_ALIASES: dict[str, str] = {
    **{a: "accuracy" for a in ("accuracy", "acc", "top1", "top_1", "top1_accuracy", "top_1_accuracy",
                               "accuracy_top1", "accuracy_top_1", "top1_acc", "acc1", "acc@1", "accuracy@1")},
    **{a: "f1" for a in ("f1", "f1_score", "f_1", "fscore", "f_score", "f1score", "f_measure")},
    **{a: "precision" for a in ("precision", "prec")},
    **{a: "recall" for a in ("recall", "rec")},
    "balanced_accuracy": "balanced_accuracy",
    **{a: "matthews_correlation" for a in ("matthews_correlation", "mcc", "matthews_corrcoef",
                                           "matthews_correlation_coefficient")},
    **{a: "pearson" for a in ("pearsonr", "pearson", "pearson_r", "pearson_correlation", "cos_sim_pearson",
                              "cosine_pearson")},
    **{a: "spearman" for a in ("spearmanr", "spearman", "spearman_r", "spearman_correlation", "cos_sim_spearman",
                               "cosine_spearman")},
    **{a: "AP" for a in ("map", "ap", "mean_average_precision", "box_ap", "bbox_ap", "bbox_map", "box_map",
                         "coco_map", "map@[.5:.95]", "ap@[.5:.95]", "map@0.5:0.95", "ap@0.5:0.95",
                         "map@[0.5:0.95]", "ap@[0.5:0.95]")},
    **{a: "AP50" for a in ("ap50", "map50", "map_50", "ap_50", "map@0.5", "ap@0.5", "map@50", "ap@50",
                           "map@.5", "ap@.5", "box_ap50", "bbox_map_50")},
    **{a: "AP75" for a in ("ap75", "map75", "map_75", "ap_75", "map@0.75", "ap@0.75", "map@75", "ap@75",
                           "map@.75", "ap@.75", "bbox_map_75")},
    **{a: "AR100" for a in ("ar100", "ar@100", "ar_100", "mar_100", "mar100")},
    **{a: "mean_iou" for a in ("mean_iou", "miou", "mean_intersection_over_union")},
}
#: Metric types that are top-k accuracy with k > 1, which zooeval does not measure.
TOP_K_TYPES = {"top5", "top_5", "top5_accuracy", "top_5_accuracy", "accuracy_top5", "accuracy_top_5",
               "acc5", "acc@5", "accuracy@5", "top5_acc"}
_TOP_K_NAME = re.compile(r"top[\s_\-]?(?!1\b)\d+|acc(?:uracy)?@(?!1\b)\d+", re.IGNORECASE)
_AVERAGE_WORD = re.compile(r"\b(macro|micro|weighted|binary)\b", re.IGNORECASE)
_DETECTION_KEYS = {"AP": "AP", "AP50": "AP50", "AP75": "AP75", "AR100": "AR100"}


@dataclass
class _Target:
    """What a claim is compared with in a result, and how its interval is made."""

    family: str
    key: str  # dotted path for display: overall.macro_f1, per_class.pos.f1
    description: str
    method: str  # wilson | bootstrap-confusion | fisher-z | bootstrap-replicates
    overall_key: str | None = None
    confusion_stat: str | None = None
    positive_class: str | None = None
    part: str | None = None  # f1 / precision / recall for per-class targets


def _normalise_type(metric_type: str) -> str:
    return re.sub(r"[\s\-]+", "_", metric_type.strip().lower())


def _averaging(claim: Mapping[str, Any], type_tokens: set[str]) -> dict[str, str]:
    """The averaging each part of a claim states: {source: average}."""
    found: dict[str, str] = {}
    for token in type_tokens & set(AVERAGES):
        found["metric type"] = token
    config = claim.get("metric_config")
    if isinstance(config, str) and config.strip().lower() in AVERAGES:
        found["metric config"] = config.strip().lower()
    args = claim.get("metric_args")
    if isinstance(args, Mapping) and args.get("average") is not None:
        found["metric args"] = str(args["average"]).strip().lower()
    name = claim.get("metric_name")
    if isinstance(name, str):
        words = {w.lower() for w in _AVERAGE_WORD.findall(name)}
        if len(words) == 1:
            found["metric name"] = words.pop()
        elif len(words) > 1:
            found["metric name"] = "/".join(sorted(words))
    return found


def _top_k(claim: Mapping[str, Any], normalised: str) -> bool:
    if normalised in TOP_K_TYPES:
        return True
    args = claim.get("metric_args")
    if isinstance(args, Mapping):
        for key in ("top_k", "k", "topk"):
            if args.get(key) not in (None, 1, "1"):
                return True
    name = claim.get("metric_name")
    return isinstance(name, str) and bool(_TOP_K_NAME.search(name))


def resolve_metric(claim: Mapping[str, Any]) -> tuple[str | None, str | None, list[str], str | None]:
    """``(family, average, notes, reason)`` of a claim's metric: family is a METRICS key; reason, when not
    None, says why the claim cannot be compared whatever the measurement."""
    metric_type = claim.get("metric_type")
    if not isinstance(metric_type, str) or not metric_type.strip():
        return None, None, [], "the claim has no metric type"
    normalised = _normalise_type(metric_type)
    if _top_k(claim, normalised):
        return None, None, [], f"top-k accuracy ({metric_type!r}) is not measured by zooeval (top-1 only)"
    tokens = set(normalised.split("_"))
    base = "_".join(t for t in normalised.split("_") if t not in AVERAGES) or normalised
    family = METRIC_ALIASES.get(normalised) or METRIC_ALIASES.get(base)
    if family is None:
        return None, None, [], f"unknown metric {metric_type!r}"
    spec = METRICS[family]
    if not spec.averaged:
        return family, None, [], None
    found = _averaging(claim, tokens)
    notes: list[str] = []
    averages = set(found.values())
    if not averages:
        return family, None, notes, (f"the averaging of {spec.label} is not stated "
                                     "(macro, micro, weighted or binary)")
    if len(averages) > 1:
        said = ", ".join(f"{where} says {avg}" for where, avg in sorted(found.items()))
        return family, None, notes, f"the averaging of {spec.label} is stated inconsistently: {said}"
    average = averages.pop()
    if average not in AVERAGES:
        return family, None, notes, f"unknown averaging {average!r} for {spec.label}"
    if set(found) == {"metric name"}:
        notes.append(f"averaging {average!r} read from the metric name {claim.get('metric_name')!r}")
    return family, average, notes, None


def _target(family: str, average: str | None, claim: Mapping[str, Any], result: Mapping[str, Any],
            notes: list[str]) -> tuple[_Target | None, str | None]:
    """Where in ``result`` the claimed metric is, or the reason it cannot be found there."""
    spec = METRICS[family]
    if family == "accuracy":
        return _Target(family, "overall.accuracy", "accuracy", "wilson", overall_key="accuracy"), None
    if family == "balanced_accuracy":  # sklearn's: mean recall over the classes in the truth (not macro_recall,
        # which also counts a class only predicted, as 0)
        return _Target(family, "confusion_matrix", "balanced accuracy", "bootstrap-confusion",
                       confusion_stat="balanced_accuracy"), None
    if family == "matthews_correlation":
        return _Target(family, "overall.mcc", "Matthews correlation", "bootstrap-confusion",
                       overall_key="mcc", confusion_stat="matthews_correlation"), None
    if family in ("pearson", "spearman"):
        return _Target(family, f"overall.{family}", spec.label, "fisher-z", overall_key=family), None
    if family in _DETECTION_KEYS:
        key = _DETECTION_KEYS[family]
        return _Target(family, f"overall.{key}", spec.label, "bootstrap-replicates", overall_key=key), None
    if family == "mean_iou":
        return _Target(family, "overall.mean_iou", spec.label, "bootstrap-replicates", overall_key="mean_iou"), None
    # precision / recall / f1 with an averaging
    part = family
    if average == "binary":
        labels = (result.get("confusion_matrix") or {}).get("labels") or list((result.get("per_class") or {}))
        if len(labels) != 2:
            return None, f"average=binary needs a two-class dataset; this one has {len(labels)} classes"
        args = claim.get("metric_args") if isinstance(claim.get("metric_args"), Mapping) else {}
        pos = args.get("pos_label", 1)
        if isinstance(pos, str) and pos in labels:
            positive = pos
        elif isinstance(pos, int) and not isinstance(pos, bool) and pos in (0, 1):
            positive = labels[pos]
            notes.append(f"pos_label {pos} read as class {positive!r}, index {pos} of the stored class order")
        else:
            return None, f"pos_label {pos!r} names no class of {labels}"
        method = "bootstrap-confusion" if part == "f1" else "wilson"
        return _Target(family, f"per_class.{positive}.{part}", f"{part} of class {positive!r}", method,
                       confusion_stat=f"class_{part}", positive_class=positive, part=part), None
    key = f"{average}_{part}"
    proportion = average == "micro" or key == "weighted_recall"
    method = "wilson" if proportion else "bootstrap-confusion"
    return _Target(family, f"overall.{key}", f"{average} {spec.label}", method, overall_key=key,
                   confusion_stat=key), None


_LEADING_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)")


def reported_half_width(claim: Mapping[str, Any], rescaled: bool) -> float:
    """Half-width of the values a claim's rounding stands for, on the metric's scale (capped at
    ROUNDING_CAP); 0.0 when the written form is unknown."""
    raw = claim.get("value_raw")
    if isinstance(raw, bool) or raw is None:
        return 0.0
    text = repr(raw) if isinstance(raw, float) else str(raw)
    match = _LEADING_NUMBER.match(text)
    if not match:
        return 0.0
    try:
        exponent = Decimal(match.group(1)).as_tuple().exponent
    except InvalidOperation:  # pragma: no cover - the pattern only admits decimal numbers
        return 0.0
    if not isinstance(exponent, int):  # pragma: no cover - NaN / infinity never match the pattern
        return 0.0
    decimals = max(0, -exponent)
    if match.group(2) or rescaled:
        decimals += 2
    return min(0.5 * 10.0 ** (-decimals), ROUNDING_CAP)


def normalise_split(split: Any) -> str | None:
    """A split name with its common aliases merged (``val`` -> ``validation``); None stays None."""
    if split is None:
        return None
    text = str(split).strip().lower()
    return SPLIT_ALIASES.get(text, text)


def claim_variant(claim: Mapping[str, Any]) -> str:
    """The dataset variant a claim is about: its metric args' ``variant`` (zooeval's own cards), else original."""
    args = claim.get("metric_args")
    if isinstance(args, Mapping) and args.get("variant"):
        return str(args["variant"])
    return ORIGINAL


def _result_ref(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The identity of the result a verdict rests on (its stored ``_id`` as ``id``)."""
    if result is None:
        return None
    ref = {k: result.get(k) for k in ("model_name", "model_revision", "dataset", "split", "dataset_revision",
                                      "variant", "processor")}
    ref["id"] = result.get("_id")
    return ref


def _verdict(claim: Mapping[str, Any], result: Mapping[str, Any] | None, verdict: str, reason: str,
             **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "verdict": verdict,
        "reason": reason,
        "claim_position": claim.get("position"),
        "contradiction_group": claim.get("contradiction_group"),
        "claim_dataset": claim.get("dataset_type") or claim.get("dataset_name"),
        "claim_split": claim.get("split"),
        "metric_type": claim.get("metric_type"),
        "metric_key": None,
        "claimed": claim.get("value"),
        "claimed_as_written": claim.get("value_raw"),
        "claimed_on_metric_scale": None,
        "scale_note": None,
        "measured": None,
        "gap": None,
        "gap_beyond_interval": None,
        "interval": None,
        "method": None,
        "level": None,
        "n": None,
        "claim_half_width": None,
        "notes": [],
        "result": _result_ref(result),
    }
    out.update(fields)
    return out


def _averaging_candidates(result: Mapping[str, Any], family: str) -> dict[str, float]:
    overall = result.get("overall") or {}
    return {avg: overall[f"{avg}_{family}"] for avg in ("macro", "micro", "weighted")
            if isinstance(overall.get(f"{avg}_{family}"), (int, float))}


def _measure(target: _Target, result: Mapping[str, Any], level: float, n_boot: int, seed: int,
             replicates: Sequence[float] | None) -> tuple[float | None, tuple[float, float] | None, int | None, str]:
    """``(measured, interval, n, problem)``; problem is "" when the interval was made."""
    overall = result.get("overall") or {}
    confusion = result.get("confusion_matrix")
    if target.positive_class is not None:
        row = (result.get("per_class") or {}).get(target.positive_class) or {}
        measured = row.get(target.part)
        if measured is None:
            return None, None, None, f"the result has no {target.key}"
        tp, fp, fn = int(row.get("tp", 0)), int(row.get("fp", 0)), int(row.get("fn", 0))
        if target.method == "wilson":
            n = tp + fp if target.part == "precision" else tp + fn
            return float(measured), wilson_interval(tp, n, level), n, ""
    elif target.overall_key is not None:
        measured = overall.get(target.overall_key)
        if measured is None:
            return None, None, None, f"the result has no {target.key}"
    else:
        if not confusion:
            return None, None, None, "the result has no confusion matrix"
        measured = confusion_metric(confusion, target.confusion_stat)
    measured = float(measured)
    if target.method == "wilson":
        n, correct = overall.get("n"), overall.get("correct")
        if not isinstance(n, int) or not isinstance(correct, int):
            return measured, None, None, "the result has no sample counts (overall.n, overall.correct)"
        return measured, wilson_interval(correct, n, level), n, ""
    if target.method == "fisher-z":
        n = overall.get("n")
        if not isinstance(n, int):
            return measured, None, None, "the result has no sample count (overall.n)"
        try:
            return measured, fisher_z_interval(measured, n, level, target.family), n, ""
        except ValueError as error:
            return measured, None, n, str(error)
    if target.method == "bootstrap-confusion":
        if not confusion:
            return measured, None, None, "the result has no confusion matrix to resample"
        class_index = None
        if target.positive_class is not None:
            class_index = list(confusion["labels"]).index(target.positive_class)
        n = overall.get("n")
        interval = bootstrap_confusion_interval(confusion, target.confusion_stat, class_index, level, n_boot, seed)
        return measured, interval, n if isinstance(n, int) else None, ""
    # bootstrap-replicates
    n = overall.get("n_images", overall.get("n"))
    if measured < 0:
        return measured, None, n, f"the measured {target.description} is undefined (-1: no ground truth)"
    if replicates is None:  # the documented tolerance (judge_claim records method "tolerance", no level)
        return measured, (max(0.0, measured - REPLICATES_TOLERANCE), min(1.0, measured + REPLICATES_TOLERANCE)), n, ""
    return measured, percentile_interval(replicates, level), n, ""


def judge_claim(claim: Mapping[str, Any], result: Mapping[str, Any] | None, *, dataset_matches: bool,
                level: float = DEFAULT_LEVEL, n_boot: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED,
                bootstrap_replicates: Sequence[float] | None = None) -> dict[str, Any]:
    """The verdict on one claim given one stored result (None: nothing measured); see the module doc.

    ``dataset_matches`` says whether ``result``'s dataset is the claim's (the caller knows the names).
    ``bootstrap_replicates``: the metric on resampled units, for metrics with no stored sufficient statistic.

    The verdict record: verdict, reason, claim_position, claim_dataset, claim_split, metric_type,
    metric_key (where in the result: ``overall.macro_f1``, ``per_class.pos.f1``), claimed (the number read),
    claimed_as_written,
    claimed_on_metric_scale, scale_note, measured, gap (claimed - measured), gap_beyond_interval, interval
    ([low, high]), method (wilson | bootstrap-confusion | fisher-z | bootstrap-replicates), level, n,
    claim_half_width, notes, result (the result's identity fields and its ``id``), and ``candidates`` (the measured macro /
    micro / weighted values) when a claim's averaging is unknown.
    """
    if claim.get("value") is None:
        note = claim.get("note") or "no value"
        return _verdict(claim, result, NOT_COMPARABLE, f"the claim has no numeric value ({note})")
    family, average, notes, reason = resolve_metric(claim)
    if reason is not None:
        extra = {"candidates": _averaging_candidates(result, family)} if result is not None and family else {}
        return _verdict(claim, result, NOT_COMPARABLE, reason, notes=notes, **extra)
    spec = METRICS[family]
    if result is None:
        return _verdict(claim, None, NOT_YET_MEASURED, "zooeval has no result for this model and dataset",
                        notes=notes)
    if not dataset_matches:
        return _verdict(claim, result, NOT_COMPARABLE, "the result is on another dataset", notes=notes)
    wanted_variant = claim_variant(claim)
    if result.get("variant", ORIGINAL) != wanted_variant:
        return _verdict(claim, result, NOT_COMPARABLE,
                        f"the result is on the {result.get('variant')!r} variant, the claim on {wanted_variant!r}",
                        notes=notes)
    claim_split, result_split = normalise_split(claim.get("split")), normalise_split(result.get("split"))
    if claim_split is None:
        return _verdict(claim, result, NOT_COMPARABLE, "the claim names no split", notes=notes)
    if claim_split != result_split:
        return _verdict(claim, result, NOT_COMPARABLE,
                        f"the claim is on split {claim.get('split')!r}, the result on {result.get('split')!r}",
                        notes=notes)
    processor = result.get("processor")
    if processor not in spec.processors:
        measured_by = " or ".join(repr(p) for p in spec.processors)
        if result.get("task") in spec.tasks:
            return _verdict(claim, result, NOT_YET_MEASURED,
                            f"{spec.label} is measured by the {measured_by} processor, which has not scored this "
                            f"model on this dataset yet (`zooeval run --processor {spec.processors[0]}` adds it from "
                            "the stored predictions, with no inference)", notes=notes)
        return _verdict(claim, result, NOT_COMPARABLE,
                        f"{spec.label} is not measured by the {processor!r} processor (a {result.get('task')} result); "
                        f"the {measured_by} processor measures it", notes=notes)
    target, problem = _target(family, average, claim, result, notes)
    if target is None:
        return _verdict(claim, result, NOT_COMPARABLE, problem, notes=notes)

    value = float(claim["value"])
    scale_note = None
    rescaled = False
    if value > spec.high or value < spec.low:
        if spec.high == 1.0 and spec.low * 100 <= value <= 100.0:
            rescaled = True
            scale_note = (f"the claimed {value:g} lies outside {spec.label}'s range [{spec.low:g}, 1]: "
                          f"read as a percentage, {value / 100:g}")
            value /= 100.0
        else:
            return _verdict(claim, result, NOT_COMPARABLE,
                            f"the claimed {value:g} lies outside {spec.label}'s range [{spec.low:g}, {spec.high:g}]",
                            notes=notes, metric_key=target.key)
    half = reported_half_width(claim, rescaled)
    measured, interval, n, problem = _measure(target, result, level, n_boot, seed, bootstrap_replicates)
    tolerance = target.method == "bootstrap-replicates" and bootstrap_replicates is None
    method = "tolerance" if tolerance else target.method
    common = {"metric_key": target.key, "claimed_on_metric_scale": value, "scale_note": scale_note,
              "measured": measured, "method": method, "n": n, "claim_half_width": half, "notes": notes}
    if measured is None:
        return _verdict(claim, result, NOT_YET_MEASURED, problem, **common)
    common["gap"] = value - measured
    if interval is None:
        return _verdict(claim, result, NOT_COMPARABLE, problem, **common)
    lo, hi = interval
    common.update(interval=[lo, hi], level=None if tolerance else level)
    span = (f"documented tolerance ±{REPLICATES_TOLERANCE} [{lo:.4f}, {hi:.4f}] (no stored statistic gives an "
            f"interval; n={n})" if tolerance else f"{level:.0%} interval [{lo:.4f}, {hi:.4f}] ({method}, n={n})")
    if value + half >= lo and value - half <= hi:
        return _verdict(claim, result, CONFIRMED,
                        f"the claimed {value:.4g} lies within the measured {target.description}'s {span}", **common)
    beyond = value - hi if value > hi else value - lo
    if math.isclose(lo, hi, abs_tol=1e-12) and method.startswith("bootstrap"):
        return _verdict(claim, result, NOT_COMPARABLE,
                        f"the bootstrap interval of {target.description} collapses to {lo:.4f} (no variation "
                        "to resample), so it cannot tell whether the claim is wrong", **common)
    direction = "higher" if beyond > 0 else "lower"
    return _verdict(claim, result, CONTRADICTED,
                    f"the claimed {value:.4g} is {abs(value - measured):.4f} {direction} than the measured "
                    f"{target.description} {measured:.4f}, outside its {span}",
                    gap_beyond_interval=beyond, **common)


def judge_against_results(claim: Mapping[str, Any], results: Iterable[Mapping[str, Any]],
                          dataset_matches: Callable[[Mapping[str, Any], Mapping[str, Any]], bool], *,
                          compatible: Callable[[Mapping[str, Any], Mapping[str, Any]], bool] | None = None,
                          **options: Any) -> dict[str, Any]:
    """The verdict on a claim against a model's current results: the result on the claim's dataset
    (``dataset_matches(claim, result)``), variant and split if there is one; else the nearest reason.

    ``compatible(claim, result)``: the result is on a dataset zooeval registers as compatible with the claim's
    (the same classes, other data). Such a result is never held against the claim: with no result on the
    claim's own dataset the verdict is not comparable, naming the compatible datasets measured.
    ``options`` go to :func:`judge_claim`."""
    results = list(results)
    on_dataset = [r for r in results if dataset_matches(claim, r)]
    if not on_dataset:
        verdict = judge_claim(claim, None, dataset_matches=False, **options)
        related = sorted({str(r.get("dataset")) for r in results if compatible is not None and compatible(claim, r)})
        if verdict["verdict"] == NOT_YET_MEASURED and related:
            named = claim.get("dataset_type") or claim.get("dataset_name")
            verdict.update(verdict=NOT_COMPARABLE,
                           reason=(f"zooeval measured this model on {', '.join(related)}, registered as compatible with "
                                   f"{named!r} (the same classes, other data), not on {named!r} itself"))
        return verdict
    variant = claim_variant(claim)
    split = normalise_split(claim.get("split"))
    family, _, _, _ = resolve_metric(claim)
    processors = METRICS[family].processors if family else ()

    def rank(result: Mapping[str, Any]) -> tuple[int, int, int]:
        return (int(normalise_split(result.get("split")) != split),
                int(result.get("variant", ORIGINAL) != variant),
                int(bool(processors) and result.get("processor") not in processors))

    best = min(on_dataset, key=rank)
    verdict = judge_claim(claim, best, dataset_matches=True, **options)
    if verdict["verdict"] == NOT_COMPARABLE and rank(best)[0]:
        splits = sorted({str(r.get("split")) for r in on_dataset})
        verdict["reason"] += f" (zooeval measured this dataset on: {', '.join(splits)})"
    return verdict
