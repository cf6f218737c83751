"""Multiple-choice accuracy as lm-evaluation-harness's ``multiple_choice`` output type computes it
(lm_eval/api/task.py ``process_results``, aggregated by ``mean`` with ``mean_stderr``):

* ``acc``: the item is right when the argmax of its endings' summed log-likelihoods is the gold ending;
* ``acc_norm``: the same with each log-likelihood divided by its ending's length in characters (``len(choice)``,
  the ending without the " " delimiter);
* ``acc_stderr`` / ``acc_norm_stderr``: the sample standard deviation (ddof 1) of the per-item 0/1 values over
  sqrt(n), lm-evaluation-harness's stderr of a mean.

Ties go to the first ending (numpy's argmax), as there. The per-item correctness (``per_item``: ids, acc,
acc_norm as 0/1) is stored for disaggregation, and the accuracy per gold position (``per_gold_position``), which
shows a model that prefers an ending by its place.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from processors.base import Processor, register_processor
from tasks.multiple_choice import MultipleChoicePredictions


def mean_stderr(values: np.ndarray) -> float:
    """lm-evaluation-harness's ``mean_stderr``: sample standard deviation / sqrt(n) (NaN below two values)."""
    n = len(values)
    if n < 2:
        return float("nan")
    return float(np.std(values, ddof=1) / math.sqrt(n))


@register_processor
class MultipleChoiceProcessor(Processor):
    """acc and acc_norm (with their standard errors) of stored multiple-choice log-likelihoods.

    State: per item its id, gold index, and 0/1 correctness by raw and by length-normalised log-likelihood."""

    name = "multiple-choice"
    version = 1
    tasks = ("multiple-choice",)
    metrics = [
        {"name": "acc", "description": "share of items whose most likely ending is the gold one",
         "calculation": "argmax over endings of the summed token log-likelihoods (lm-evaluation-harness acc)",
         "values": "0 to 1, higher is better; chance is 1 / number of endings"},
        {"name": "acc_norm", "description": "acc with each ending's log-likelihood divided by its length in characters",
         "calculation": "argmax of loglik / len(ending) (lm-evaluation-harness acc_norm)",
         "values": "0 to 1, higher is better"},
    ]

    def __init__(self, classes: list[str]) -> None:
        super().__init__(classes)
        self.ids: list[str] = []
        self.gold = np.zeros(0, dtype=np.int64)
        self.acc = np.zeros(0, dtype=np.int64)
        self.acc_norm = np.zeros(0, dtype=np.int64)

    def update(self, batch: MultipleChoicePredictions) -> None:
        """Add a batch of items' stored log-likelihoods."""
        n, flat = len(batch), int(np.sum(batch.n_endings))
        if len(batch.y_true) != n or len(batch.n_endings) != n:
            raise ValueError(f"{len(batch.y_true)} gold labels and {len(batch.n_endings)} ending counts for {n} items")
        if not (len(batch.loglik) == len(batch.chars) == flat):
            raise ValueError(f"{len(batch.loglik)} log-likelihoods and {len(batch.chars)} lengths for {flat} endings")
        bad = np.flatnonzero((batch.y_true < 0) | (batch.y_true >= batch.n_endings))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"item {batch.sample_ids[i]!r}: gold {int(batch.y_true[i])} is not one of its "
                             f"{int(batch.n_endings[i])} endings")
        if np.any(batch.chars <= 0):
            raise ValueError("an ending of length 0 cannot be length-normalised")
        self.ids += list(batch.sample_ids)
        self.gold = np.concatenate([self.gold, batch.y_true])
        self.acc = np.concatenate([self.acc, (batch.choices() == batch.y_true).astype(np.int64)])
        self.acc_norm = np.concatenate([self.acc_norm, (batch.choices("chars") == batch.y_true).astype(np.int64)])

    def merge(self, other: Processor) -> None:
        if not isinstance(other, MultipleChoiceProcessor):
            raise TypeError(f"cannot merge {type(other).__name__} into MultipleChoiceProcessor")
        self.ids += other.ids
        self.gold = np.concatenate([self.gold, other.gold])
        self.acc = np.concatenate([self.acc, other.acc])
        self.acc_norm = np.concatenate([self.acc_norm, other.acc_norm])

    def compute(self) -> dict[str, Any]:
        n = len(self.ids)
        overall: dict[str, Any] = {"n": n, "correct": int(self.acc.sum()), "correct_norm": int(self.acc_norm.sum()),
                                   "acc": float(self.acc.mean()) if n else 0.0,
                                   "acc_norm": float(self.acc_norm.mean()) if n else 0.0}
        if n >= 2:  # undefined (NaN) below two items: left out rather than stored as NaN
            overall.update(acc_stderr=mean_stderr(self.acc), acc_norm_stderr=mean_stderr(self.acc_norm))
        positions = {str(g): {"n": int((self.gold == g).sum()), "acc": float(self.acc[self.gold == g].mean()),
                              "acc_norm": float(self.acc_norm[self.gold == g].mean())}
                     for g in sorted(set(self.gold.tolist()))}
        return {"overall": overall, "per_class": {}, "per_gold_position": positions,
                "per_item": {"ids": list(self.ids), "acc": self.acc.tolist(), "acc_norm": self.acc_norm.tolist()}}
