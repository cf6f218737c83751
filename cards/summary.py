"""The thesis's chapter 5 figures (5.3a-c) over the claims of many model cards, plus the verdicts.

Input: one mapping per model, ``{"model_name", "claims": [...]}`` (records of ``model_index.parse_claims``),
optionally ``"verdicts": [...]`` (records of ``verdicts.judge_claim``) and ``"results_in_text": bool`` (whether
the card's prose reports performance, for figure 5.3a; None or absent when unknown).

A *value* is a claim whose ``value`` parsed to a number; claims without one (malformed) are counted apart.
"""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from cards.verdicts import CONFIRMED, CONTRADICTED, VERDICTS


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def summarise(models: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts and shares over the models' claims (each share is None when its denominator is 0):

    * ``models``, ``models_with_model_index`` (any claim record, malformed included), ``models_with_values``
      and its share (figure 5.3a's "Hugging Face format" cases);
    * ``reporting`` (5.3a): none / text only / model-index only / both, over models whose
      ``results_in_text`` is known;
    * ``values_per_card`` (5.3c) over models with values: mean, median, max and the histogram {count: models};
    * ``self_reported`` / ``verified`` (5.3b): value counts and shares;
    * ``malformed_claims``: claims kept with no numeric value;
    * ``self_contradictions``: models with a contradiction group, and the claims flagged;
      ``duplicates``: claims in a duplicate group;
    * ``verdicts``: counts per verdict; ``contradicted_share`` = contradicted / (confirmed + contradicted),
      ``contradicted_share_of_values`` = contradicted / all values.
    """
    n_models = with_index = with_values = 0
    per_card: list[int] = []
    self_reported = verified = malformed = flagged = duplicates = 0
    models_contradicting = 0
    reporting: Counter[str] = Counter()
    verdict_counts: Counter[str] = Counter({v: 0 for v in VERDICTS})
    for model in models:
        n_models += 1
        claims = list(model.get("claims") or [])
        values = [c for c in claims if c.get("value") is not None]
        if claims:
            with_index += 1
        if values:
            with_values += 1
            per_card.append(len(values))
        malformed += len(claims) - len(values)
        verified += sum(1 for c in values if c.get("verified") is True)
        self_reported += sum(1 for c in values if c.get("verified") is not True)
        contradicting = [c for c in claims if c.get("contradiction_group")]
        flagged += len(contradicting)
        models_contradicting += bool(contradicting)
        duplicates += sum(1 for c in claims if c.get("duplicate_group"))
        in_text = model.get("results_in_text")
        if in_text is not None:
            reporting[("text and model-index" if values else "text only") if in_text
                      else ("model-index only" if values else "none")] += 1
        for v in model.get("verdicts") or []:
            verdict_counts[v.get("verdict")] += 1
    n_values = self_reported + verified
    judged = verdict_counts[CONFIRMED] + verdict_counts[CONTRADICTED]
    return {
        "models": n_models,
        "models_with_model_index": with_index,
        "models_with_values": with_values,
        "models_with_values_share": _share(with_values, n_models),
        "reporting": {k: reporting[k] for k in ("none", "text only", "model-index only", "text and model-index")},
        "values": n_values,
        "values_per_card": {
            "mean": statistics.fmean(per_card) if per_card else None,
            "median": statistics.median(per_card) if per_card else None,
            "max": max(per_card) if per_card else None,
            "histogram": dict(sorted(Counter(per_card).items())),
        },
        "self_reported": self_reported,
        "self_reported_share": _share(self_reported, n_values),
        "verified": verified,
        "verified_share": _share(verified, n_values),
        "malformed_claims": malformed,
        "self_contradictions": {"models": models_contradicting, "claims": flagged},
        "duplicates": duplicates,
        "verdicts": dict(verdict_counts),
        "contradicted_share": _share(verdict_counts[CONTRADICTED], judged),
        "contradicted_share_of_values": _share(verdict_counts[CONTRADICTED], n_values),
    }
