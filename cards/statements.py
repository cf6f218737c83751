"""Plain-language statements about a model, generated from its stored classification results.

Every statement carries ``evidence`` (the numbers it rests on) and ``thresholds`` (the named constants
below that let it through), and says no more than those numbers show. A statement is made only when:

* **drop** under a perturbation: the dataset has at least ``MIN_SAMPLES`` samples in both the original and
  the variant, accuracy falls by at least ``MIN_DROP``, *and* the two Wilson intervals (``LEVEL``) do not
  overlap (non-overlap of two 95% intervals is a stricter test than a two-sample test at 5%). At most
  ``MAX_DROP_STATEMENTS`` per dataset and split, largest drop first.
* **weakest / strongest class** (and group, when the dataset declares groups of classes): among classes
  with support of at least ``MIN_CLASS_SUPPORT``, the lowest (highest) F1, stated only when it lies at
  least ``CLASS_GAP`` below (above) the overall accuracy and the class's recall or precision Wilson
  interval lies entirely below (above) the overall accuracy's. At most ``MAX_CLASS_STATEMENTS`` each way.
  A group pools its classes' counts (tp, support, predictions).
* **error bias**: at least ``MIN_ERRORS`` errors; the share of errors predicting one class is at least
  ``MIN_BIAS_EXCESS`` above the uniform share 1 / C (C = the number of classes; 0.5 for two) and its
  Wilson lower bound lies above the uniform share. Errors are counted from the per-class false positives
  (complete, unlike the capped list of misclassified samples). At most ``MAX_BIAS_STATEMENTS``.
* **never predicted**: classes with support > 0 that the model predicted for no sample at all; at most
  ``MAX_LISTED_CLASSES`` named, the rest counted.

A result with fewer than ``MIN_SAMPLES`` samples gets no statement. Detection results get none: a stored
detection result has no per-sample counts to give AP an interval, so no statement about it could be tested.
Class, bias and never-predicted statements are made for the unperturbed data (``variant == "original"``)
unless asked for other variants.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cards.intervals import wilson_interval

#: Fewest samples a result needs for any statement about it.
MIN_SAMPLES = 30
#: Smallest accuracy drop (absolute) under a perturbation worth a statement.
MIN_DROP = 0.05
#: Most drop statements per dataset and split.
MAX_DROP_STATEMENTS = 5
#: Fewest samples of a class (or group) for a statement about it.
MIN_CLASS_SUPPORT = 20
#: Smallest distance between a class's (group's) F1 and the overall accuracy for a weakest/strongest statement.
CLASS_GAP = 0.10
#: Most weakest (and most strongest) class statements per result, and per grouping.
MAX_CLASS_STATEMENTS = 3
#: Fewest errors for an error-bias statement.
MIN_ERRORS = 20
#: Smallest excess of a class's share of the errors over the uniform share 1 / C.
MIN_BIAS_EXCESS = 0.10
#: Most error-bias statements per result.
MAX_BIAS_STATEMENTS = 2
#: Most classes named in a never-predicted statement.
MAX_LISTED_CLASSES = 10
#: Confidence level of every interval a statement is tested with.
LEVEL = 0.95

THRESHOLDS = {name: globals()[name] for name in (
    "MIN_SAMPLES", "MIN_DROP", "MAX_DROP_STATEMENTS", "MIN_CLASS_SUPPORT", "CLASS_GAP", "MAX_CLASS_STATEMENTS",
    "MIN_ERRORS", "MIN_BIAS_EXCESS", "MAX_BIAS_STATEMENTS", "MAX_LISTED_CLASSES", "LEVEL")}

#: How a sentence names the data of a variant ("... on <phrase>").
VARIANT_PHRASES = {
    "greyscale": "greyscale images",
    "flipped": "images flipped upside down",
    "mirrored": "images mirrored left to right",
    "inverted": "images with inverted colours",
    "rotated90": "images rotated by 90 degrees",
    "lowercase": "lowercased text",
    "uppercase": "uppercased text",
    "typos": "text with typos",
}


def variant_phrase(variant: str, descriptions: Mapping[str, str] | None = None) -> str:
    """How a statement names the data of ``variant``: the caller's description, a known phrase, an ImageNet-C
    corruption ``name-severity``, or the quoted name."""
    if descriptions and variant in descriptions:
        return descriptions[variant]
    if variant in VARIANT_PHRASES:
        return VARIANT_PHRASES[variant]
    name, _, severity = variant.rpartition("-")
    if name and severity.isdigit():
        return f"images with {name.replace('_', ' ')} (severity {severity} of 5)"
    return f"the {variant!r} variant"


_PLURAL = {"class": "classes", "group": "groups"}


def _overall_counts(result: Mapping[str, Any]) -> tuple[int, int] | None:
    overall = result.get("overall") or {}
    n, correct = overall.get("n"), overall.get("correct")
    if isinstance(n, int) and isinstance(correct, int) and 0 <= correct <= n:
        return n, correct
    return None


def _on(result: Mapping[str, Any]) -> str:
    variant = result.get("variant", "original")
    on = f"On {result.get('dataset')} ({result.get('split')})"
    return on if variant == "original" else f"{on}, variant {variant}"


def _where(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: result.get(k) for k in ("model_name", "model_revision", "dataset", "split", "variant")}


def _statement(kind: str, text: str, result: Mapping[str, Any], evidence: dict[str, Any],
               thresholds: tuple[str, ...]) -> dict[str, Any]:
    return {"kind": kind, "text": text, **_where(result), "evidence": evidence,
            "thresholds": {name: THRESHOLDS[name] for name in thresholds}}


def drop_statements(results: Iterable[Mapping[str, Any]],
                    descriptions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Accuracy drops from the original data to each variant, per (dataset, split), largest first."""
    groups: dict[tuple[Any, Any], dict[str, Mapping[str, Any]]] = {}
    for result in results:
        if result.get("processor") != "classification" or _overall_counts(result) is None:
            continue
        groups.setdefault((result.get("dataset"), result.get("split")), {})[result.get("variant")] = result
    out: list[dict[str, Any]] = []
    for (dataset, split), by_variant in groups.items():
        original = by_variant.get("original")
        if original is None:
            continue
        n0, c0 = _overall_counts(original)
        if n0 < MIN_SAMPLES:
            continue
        acc0, (lo0, hi0) = c0 / n0, wilson_interval(c0, n0, LEVEL)
        found = []
        for variant, result in by_variant.items():
            if variant == "original":
                continue
            n1, c1 = _overall_counts(result)
            if n1 < MIN_SAMPLES:
                continue
            acc1, (lo1, hi1) = c1 / n1, wilson_interval(c1, n1, LEVEL)
            if acc0 - acc1 >= MIN_DROP and hi1 < lo0:
                found.append((acc0 - acc1, variant, result, acc1, n1, c1, (lo1, hi1)))
        found.sort(key=lambda f: (-f[0], f[1]))
        for drop, variant, result, acc1, n1, c1, interval1 in found[:MAX_DROP_STATEMENTS]:
            text = (f"{_on(original)}, accuracy falls from {acc0:.2f} to {acc1:.2f} on "
                    f"{variant_phrase(variant, descriptions)}.")
            evidence = {"original": {"accuracy": acc0, "correct": c0, "n": n0, "interval": [lo0, hi0]},
                        "perturbed": {"accuracy": acc1, "correct": c1, "n": n1, "interval": list(interval1)},
                        "drop": drop, "level": LEVEL}
            out.append(_statement("drop", text, result, evidence, ("MIN_SAMPLES", "MIN_DROP", "LEVEL",
                                                                   "MAX_DROP_STATEMENTS")))
    return out


def _rates(tp: int, support: int, predicted: int) -> dict[str, Any]:
    return {"tp": tp, "support": support, "predicted": predicted,
            "precision": tp / predicted if predicted else 0.0,
            "recall": tp / support if support else 0.0,
            "f1": 2 * tp / (support + predicted) if support + predicted else 0.0}


def _extremes(units: dict[str, dict[str, Any]], what: str, result: Mapping[str, Any],
              n: int, correct: int) -> list[dict[str, Any]]:
    """Weakest and strongest of ``units`` (classes or groups: name -> _rates), as statements."""
    accuracy = correct / n
    lo_all, hi_all = wilson_interval(correct, n, LEVEL)
    eligible = {name: r for name, r in units.items() if r["support"] >= MIN_CLASS_SUPPORT}
    if len(eligible) < 2:
        return []
    out = []
    for side in ("weakest", "strongest"):
        ordered = sorted(eligible.items(), key=lambda kv: (kv[1]["f1"] if side == "weakest" else -kv[1]["f1"], kv[0]))
        chosen = []
        for name, r in ordered[:MAX_CLASS_STATEMENTS]:
            recall_ci = wilson_interval(r["tp"], r["support"], LEVEL)
            precision_ci = wilson_interval(r["tp"], r["predicted"], LEVEL) if r["predicted"] else None
            if side == "weakest":
                far = r["f1"] <= accuracy - CLASS_GAP
                separate = recall_ci[1] < lo_all or (precision_ci is not None and precision_ci[1] < lo_all)
            else:
                far = r["f1"] >= accuracy + CLASS_GAP
                separate = recall_ci[0] > hi_all or (precision_ci is not None and precision_ci[0] > hi_all)
            if not (far and separate):
                break  # ordered by F1: the next one is no nearer the extreme
            chosen.append((name, r, recall_ci, precision_ci))
        rank = f"its {side} {what}" if len(chosen) == 1 else f"one of its {len(chosen)} {side} {_PLURAL[what]}"
        if len(eligible) < len(units):
            rank += f" (of the {_PLURAL[what]} with at least {MIN_CLASS_SUPPORT} samples)"
        for name, r, recall_ci, precision_ci in chosen:
            text = (f"{_on(result)}, {what} {name!r} is {rank}: F1 {r['f1']:.2f} (precision {r['precision']:.2f}, "
                    f"recall {r['recall']:.2f} over {r['support']} samples), against accuracy {accuracy:.2f} "
                    "overall.")
            evidence = {what: name, **r, "recall_interval": list(recall_ci),
                        "precision_interval": list(precision_ci) if precision_ci else None,
                        "overall_accuracy": accuracy, "overall_interval": [lo_all, hi_all], "level": LEVEL}
            out.append(_statement(f"{side} {what}", text, result, evidence,
                                  ("MIN_SAMPLES", "MIN_CLASS_SUPPORT", "CLASS_GAP", "MAX_CLASS_STATEMENTS", "LEVEL")))
    return out


def _class_counts(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    units = {}
    for name, row in (result.get("per_class") or {}).items():
        tp, fp, fn = int(row.get("tp", 0)), int(row.get("fp", 0)), int(row.get("fn", 0))
        units[name] = _rates(tp, tp + fn, tp + fp)
    return units


def class_statements(result: Mapping[str, Any],
                     groups: Mapping[str, Iterable[str]] | None = None) -> list[dict[str, Any]]:
    """Weakest / strongest classes and groups, error bias and never-predicted classes of one result."""
    counts = _overall_counts(result)
    if result.get("processor") != "classification" or counts is None or counts[0] < MIN_SAMPLES:
        return []
    n, correct = counts
    classes = _class_counts(result)
    out = _extremes(classes, "class", result, n, correct)
    if groups:
        pooled = {}
        for group, members in groups.items():
            rows = [classes[m] for m in members if m in classes]
            if rows:
                pooled[group] = _rates(sum(r["tp"] for r in rows), sum(r["support"] for r in rows),
                                       sum(r["predicted"] for r in rows))
        out += _extremes(pooled, "group", result, n, correct)
    out += _bias_statements(result, classes, n, correct)
    out += _never_predicted(result, classes)
    return out


def _bias_statements(result: Mapping[str, Any], classes: dict[str, dict[str, Any]],
                     n: int, correct: int) -> list[dict[str, Any]]:
    errors = n - correct
    if errors < MIN_ERRORS or len(classes) < 2:
        return []
    uniform = 1.0 / len(classes)
    found = []
    for name, r in classes.items():
        wrong_predictions = r["predicted"] - r["tp"]
        share = wrong_predictions / errors
        lo, hi = wilson_interval(wrong_predictions, errors, LEVEL)
        if share >= uniform + MIN_BIAS_EXCESS and lo > uniform:
            found.append((share, name, wrong_predictions, lo, hi))
    found.sort(key=lambda f: (-f[0], f[1]))
    out = []
    for share, name, count, lo, hi in found[:MAX_BIAS_STATEMENTS]:
        text = (f"{_on(result)}, {share:.0%} of its errors ({count} of {errors}) predict {name!r}, against "
                f"{uniform:.0%} if its errors were spread evenly over the {len(classes)} classes.")
        evidence = {"class": name, "errors_predicting_class": count, "errors": errors, "share": share,
                    "interval": [lo, hi], "uniform_share": uniform, "level": LEVEL}
        out.append(_statement("error bias", text, result, evidence,
                              ("MIN_SAMPLES", "MIN_ERRORS", "MIN_BIAS_EXCESS", "MAX_BIAS_STATEMENTS", "LEVEL")))
    return out


def _never_predicted(result: Mapping[str, Any], classes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    never = sorted(name for name, r in classes.items() if r["support"] > 0 and r["predicted"] == 0)
    if not never:
        return []
    named = never[:MAX_LISTED_CLASSES]
    listed = ", ".join(repr(c) for c in named)
    more = f" and {len(never) - len(named)} more" if len(never) > len(named) else ""
    samples = sum(classes[c]["support"] for c in never)
    noun = "class" if len(never) == 1 else f"{len(never)} classes"
    text = (f"{_on(result)}, it never predicts {noun} {listed}{more}: none of its predictions name "
            f"{'it' if len(never) == 1 else 'them'}, though {samples} samples belong to "
            f"{'it' if len(never) == 1 else 'them'}.")
    evidence = {"classes": never, "support": {c: classes[c]["support"] for c in never}}
    return [_statement("never predicted", text, result, evidence, ("MIN_SAMPLES", "MAX_LISTED_CLASSES"))]


def model_statements(results: Iterable[Mapping[str, Any]], groups: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
                     descriptions: Mapping[str, str] | None = None,
                     variants: Iterable[str] = ("original",)) -> list[dict[str, Any]]:
    """Every statement about one model's current results: drops first, then per-result statements for the
    given ``variants``. ``groups``: dataset name -> {group name: class names}."""
    results = list(results)
    out = drop_statements(results, descriptions)
    wanted = set(variants)
    for result in results:
        if result.get("variant") in wanted:
            out += class_statements(result, (groups or {}).get(result.get("dataset")))
    return out
