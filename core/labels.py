"""Map a model's output labels to a dataset's classes, and say how each was mapped.

A label is never mapped to a class it merely looks like. The rules, tried in order for each model label; the
first rule that finds a candidate decides, and more than one candidate class is a refusal (ambiguous):

1. ``exact``: the label is a class name.
2. ``normalised``: equal after :func:`label_key` (case, accents, spaces / underscores, punctuation such as
   ``-_.,!()``), which keeps the characters that change a meaning: symbols (``+ < = > $ ° ©``, emoji, ...),
   ``# % & @ *`` and a leading sign (``-1`` is not ``1``; ``c#`` and ``c++`` are not ``c``). Classes that share
   a key (ImageNet's ``Cardigan`` and ``cardigan``) make that key ambiguous, so such labels map exactly only.
3. ``synonym``: the dataset's synonyms (alias -> class name), compared the same way.
4. ``plural``: one is the regular English plural of the other in its last word (``cats`` / ``cat``,
   ``2 stars`` / ``2 star``, ``boxes`` / ``box``, ``puppies`` / ``puppy``).
5. ``numeric``: the same number, one side bare (``5 stars`` -> ``5``, ``+1`` -> ``1``).
6. ``alias``: the first name of a comma-separated list that names a class, by rules 1-2 (Hugging Face's
   ImageNet label ``tabby, tabby cat`` -> ``tabby``).

A label made only of symbols or emoji (empty :func:`normalise`) maps only exactly, or by a synonym spelt
exactly so. Generic names (``LABEL_0``, ``LABEL_1``, ...) carry no meaning; they are mapped by index
(``index``) only when the model was trained on this very dataset and has exactly as many labels as it has
classes. A name the model uses for several outputs (every ImageNet-1k head calls classes 134 and 517
"crane"), or a label whose candidates are classes of one repeated name, is mapped by index
(``index (duplicate name)``) under the same two conditions, and only when the dataset's class at that index
is one the name can mean (``crane`` -> ``crane (bird)``); otherwise it is refused. Two model labels never
map to one class unless all but one of them get there by the dataset's synonyms (``positive`` and
``Positive`` in one head are both refused). A model whose labels cannot all be mapped raises
LabelMappingError, naming each label, why, and the candidate classes: it is never silently scored.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

_GENERIC = re.compile(r"^label[_ ]?(\d+)$", re.IGNORECASE)
#: A number with an optional sign and an optional unit word, on folded text: "5 stars", "+1", "2.5", "1st".
_NUMBER = re.compile(r"^([+-]?)\s*(\d+(?:\.\d+)?)(?:[\s-]*([^\W\d_]+))?$")
#: A class name with a trailing qualifier in parentheses: "crane (bird)".
_QUALIFIED = re.compile(r"^(.*?\S)\s*\([^()]*\)$")
#: Punctuation that carries meaning in a label ("c#", "50%", "r&b", "5*"); other punctuation separates words.
_MEANINGFUL_PUNCTUATION = frozenset("#%&@*")
_DUPLICATE_RULE = "index (duplicate name)"


class LabelMappingError(Exception):
    """Model labels that cannot be mapped. ``unmapped``: the failing labels in model order (a name the model
    uses for several outputs appears once per output); ``ambiguous``: label -> the candidate class names;
    ``reasons``: label -> why it was refused; ``duplicates``: the refused labels whose name repeats (in the model
    or the dataset) and that would map by index if the model were trained on the dataset (same class count,
    and the class at the output's index is one the name can mean)."""

    def __init__(self, message: str, unmapped: list[str], ambiguous: dict[str, list[str]] | None = None,
                 reasons: dict[str, str] | None = None, duplicates: list[str] | None = None):
        super().__init__(message)
        self.unmapped = unmapped
        self.ambiguous = dict(ambiguous or {})
        self.reasons = dict(reasons or {})
        self.duplicates = list(duplicates or [])


def _fold(label: str) -> str:
    """Compatibility-decomposed, accents stripped, lower case; the minus sign U+2212 as "-"."""
    text = unicodedata.normalize("NFKD", str(label)).replace("\u2212", "-")
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def normalise(label: str) -> str:
    """Lower case, accents stripped, every run of non-alphanumeric characters (punctuation, symbols, emoji,
    underscores) as one space, stripped. Loose: for names such as dataset slugs; labels match by label_key."""
    return " ".join(re.sub(r"[\W_]+", " ", _fold(label)).split())


def _meaningful(text: str, pos: int) -> bool:
    """Whether the non-alphanumeric character at ``pos`` changes a label's meaning: a symbol (Unicode S*:
    + < = > $ ° emoji ...), one of # % & @ *, or a sign ("-" starting a number: "-1", "x -1", not "covid-19")."""
    ch = text[pos]
    if ch in _MEANINGFUL_PUNCTUATION or unicodedata.category(ch).startswith("S"):
        return True
    follows_number = pos + 1 < len(text) and text[pos + 1].isdigit()
    return ch == "-" and follows_number and (pos == 0 or text[pos - 1] in " ([")


def label_key(label: str) -> str:
    """The form labels are compared in: folded (see normalise), words and meaningful symbols as
    space-separated tokens, other punctuation dropped: "Not_Spam" -> "not spam", "C#" -> "c #", "+1" -> "+ 1"."""
    text = " ".join(_fold(label).split())
    tokens: list[str] = []
    word = ""
    for pos, ch in enumerate(text):
        if ch.isalnum():
            word += ch
            continue
        if word:
            tokens.append(word)
            word = ""
        if _meaningful(text, pos):
            tokens.append(ch)
    if word:
        tokens.append(word)
    return " ".join(tokens)


def _symbols_only(label: str) -> bool:
    """A label with no letter or digit ("+", "?", an emoji): compared exactly only."""
    return not normalise(label)


def _plural(key: str) -> str | None:
    """The key with its last word in the regular English plural, or None when the last word is not a word."""
    head, _, last = key.rpartition(" ")
    if len(last) < 2 or not last.isalpha():
        return None
    if re.search(r"(s|x|z|ch|sh)$", last):
        last += "es"
    elif re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def _number(label: str) -> tuple[Decimal, str] | None:
    """(value, unit word or "") of a numeric label ("5 stars" -> (5, "stars"), "+1" -> (1, "")), else None."""
    m = _NUMBER.match(" ".join(_fold(label).split()))
    return (Decimal(m.group(1) + m.group(2)), m.group(3) or "") if m else None


def _alias_names(label: str) -> list[str]:
    """The names of a comma- or semicolon-separated list ("tabby, tabby cat"), or [] for a single name."""
    parts = [p.strip() for p in re.split(r"[,;]", str(label))]
    return [p for p in parts if p and not _symbols_only(p)] if len(parts) > 1 else []


class _ClassIndex:
    """Dataset classes (and synonyms) indexed by every form a rule compares."""

    def __init__(self, classes: list[str], synonyms: dict[str, str] | None):
        self.classes = classes
        self.exact: dict[str, set[int]] = {}
        self.key: dict[str, set[int]] = {}
        self.plural_of: dict[str, set[int]] = {}  # plural key -> classes of that singular
        self.number: list[tuple[Decimal, str, int]] = []
        self.qualified: dict[str, set[int]] = {}  # key of the name before "(...)" -> classes
        for i, name in enumerate(classes):
            self.exact.setdefault(name, set()).add(i)
            if _symbols_only(name):
                continue
            key = label_key(name)
            self.key.setdefault(key, set()).add(i)
            if plural := _plural(key):
                self.plural_of.setdefault(plural, set()).add(i)
            if (num := _number(name)) is not None:
                self.number.append((num[0], num[1], i))
            if m := _QUALIFIED.match(name):
                self.qualified.setdefault(label_key(m.group(1)), set()).add(i)
        self.synonym_exact: dict[str, set[int]] = {}
        self.synonym_key: dict[str, set[int]] = {}
        for alias, target in (synonyms or {}).items():
            found = self.exact.get(target) or (set() if _symbols_only(target) else self.key.get(label_key(target)))
            if not found:  # a synonym for a class the dataset does not have names nothing
                continue
            self.synonym_exact.setdefault(alias, set()).update(found)
            if not _symbols_only(alias):
                self.synonym_key.setdefault(label_key(alias), set()).update(found)

    def _by_name(self, name: str) -> tuple[str, set[int]] | None:
        if name in self.exact:
            return "exact", self.exact[name]
        if not _symbols_only(name) and (found := self.key.get(label_key(name))):
            return "normalised", found
        return None

    def rules(self, label: str) -> Iterable[tuple[str, set[int]]]:
        """(rule, candidate classes) for every rule that finds candidates, in rule order."""
        if hit := self._by_name(label):
            yield hit
        if label in self.synonym_exact:
            yield "synonym", self.synonym_exact[label]
        if _symbols_only(label):
            return
        key = label_key(label)
        if found := self.synonym_key.get(key):
            yield "synonym", found
        plural = self.plural_of.get(key, set()) | self.key.get(_plural(key) or "", set())
        if plural:
            yield "plural", plural
        if (num := _number(label)) is not None:
            value, unit = num
            found = {i for v, u, i in self.number if v == value and not (unit and u)}
            if found:
                yield "numeric", found
        for name in _alias_names(label):
            if hit := self._by_name(name):
                yield "alias", hit[1]
                break

    def meanings(self, label: str) -> set[int]:
        """Every class the label could name: the candidates of every rule, and classes whose name is the label
        with a qualifier ("crane" -> "crane (bird)", "crane (machine)")."""
        found = set().union(*(cands for _, cands in self.rules(label)))
        for name in [label, *_alias_names(label)]:
            if not _symbols_only(name):
                found |= self.qualified.get(label_key(name), set())
        return found


@dataclass
class LabelMapping:
    """``model_to_dataset[i]`` is the dataset class index of model output i."""

    model_to_dataset: list[int]
    methods: dict[str, str] = field(default_factory=dict)  # model label -> rule used
    method: str = "name"  # "name" or "index"

    def to_doc(self, classes: list[str], id2label: dict[int, str]) -> dict[str, Any]:
        return {
            "method": self.method,
            "pairs": [
                {"model_label": id2label[i], "dataset_class": classes[d], "rule": self.methods.get(id2label[i], self.method)}
                for i, d in enumerate(self.model_to_dataset)
            ],
        }


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _class_list(classes: list[str], indices: Iterable[int]) -> str:
    """Candidate classes for a message; a name the dataset repeats gets its index."""
    chosen = sorted(indices)
    names = [classes[i] for i in chosen]
    return ", ".join(f"{n!r} (class {i})" if names.count(n) > 1 else repr(n) for i, n in zip(chosen, names))


@dataclass
class _Refused:
    """Why one model output is not mapped."""

    why: str
    candidates: set[int] = field(default_factory=set)  # classes it could mean (ambiguous when more than one)
    duplicate: bool = False  # refused only because its name repeats and the index rule does not apply


def _refusal(labels: list[str], refused: dict[int, _Refused], classes: list[str]) -> LabelMappingError:
    """The error for the refused outputs, naming labels refused for one reason together."""
    order = sorted(refused)
    reasons = {labels[i]: refused[i].why for i in order}
    labels_for: dict[str, list[str]] = {}
    for lab, why in reasons.items():
        labels_for.setdefault(why, []).append(lab)
    shown = "; ".join(f"{_quoted(labs)}: {why}" for why, labs in list(labels_for.items())[:20])
    more = f"; and {len(labels_for) - 20} more reasons" if len(labels_for) > 20 else ""
    return LabelMappingError(
        f"{len(order)} of {len(labels)} model labels cannot be mapped to a dataset class: {shown}{more} "
        f"(dataset classes: {classes[:20]}{'...' if len(classes) > 20 else ''})",
        [labels[i] for i in order],
        {labels[i]: [classes[c] for c in sorted(refused[i].candidates)] for i in order if len(refused[i].candidates) > 1},
        reasons,
        [labels[i] for i in order if refused[i].duplicate],
    )


def _map_output(i: int, labels: list[str], index: _ClassIndex, outputs: list[int], trained_on_dataset: bool
                ) -> tuple[int, str] | _Refused:
    """(class index, rule) for model output i, whose label the model uses for ``outputs``, or why not."""
    classes, lab = index.classes, labels[i]
    by_index = trained_on_dataset and len(labels) == len(classes)
    rule, found = next(iter(index.rules(lab)), ("", set()))
    repeated_class = len(found) > 1 and len({classes[c] for c in found}) == 1
    if len(outputs) > 1 or repeated_class:
        meant = index.meanings(lab)
        if by_index and i in meant:
            return i, _DUPLICATE_RULE
        where = (f"the model names outputs {outputs} all {lab!r}" if len(outputs) > 1
                 else f"the dataset names classes {sorted(found)} all {classes[min(found)]!r}")
        if by_index:
            why = f"{where}, but the dataset's class {i}, {classes[i]!r}, is not one that name can mean"
        else:
            why = (f"{where}; such outputs map by index only for a model trained on this dataset with exactly its "
                   f"{len(classes)} classes (this model has {len(labels)} labels and "
                   f"{'is' if trained_on_dataset else 'is not'} declared trained on it)")
        if len(meant) > 1:
            why += f"; candidates: {_class_list(classes, meant)}"
        return _Refused(why, meant, duplicate=not trained_on_dataset and len(labels) == len(classes) and i in meant)
    if len(found) == 1:
        return next(iter(found)), rule
    if found:
        return _Refused(f"ambiguous by the {rule} rule: could be {_class_list(classes, found)}", found)
    why = "no dataset class matches" + (" (a label made only of symbols maps only exactly)" if _symbols_only(lab) else "")
    if qualified := index.meanings(lab):
        why += f"; the dataset has the qualified {_class_list(classes, qualified)}: a synonym would say which"
    return _Refused(why, qualified)


def map_labels(
    id2label: dict[int, str],
    classes: list[str],
    synonyms: dict[str, str] | None = None,
    trained_on_dataset: bool = False,
) -> LabelMapping:
    """Map every model label to a dataset class index (rules in the module docstring) or raise
    LabelMappingError naming every label that cannot be mapped and why."""
    if not id2label:
        raise LabelMappingError("the model declares no labels (config id2label is empty)", [])
    ids = sorted(int(k) for k in id2label)
    if ids != list(range(len(ids))):
        raise LabelMappingError(f"the model's label ids are not 0..{len(ids) - 1}: {ids}", [])
    labels = [str(id2label[i]) for i in ids]
    if all(_GENERIC.match(lab) for lab in labels):
        in_order = all(int(_GENERIC.match(lab).group(1)) == i for i, lab in enumerate(labels))
        if trained_on_dataset and len(labels) == len(classes) and in_order:
            return LabelMapping(list(range(len(labels))), {lab: "index" for lab in labels}, method="index")
        why = (
            f"generic labels (LABEL_i) name no class; they map by index only for a model trained on this dataset "
            f"with exactly its {len(classes)} classes (this model has {len(labels)} labels and "
            f"{'is' if trained_on_dataset else 'is not'} declared trained on it)"
        )
        raise _refusal(labels, {i: _Refused(why) for i in range(len(labels))}, classes)

    index = _ClassIndex(classes, synonyms)
    outputs_of: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        outputs_of.setdefault(lab, []).append(i)
    mapped: dict[int, tuple[int, str]] = {}
    refused: dict[int, _Refused] = {}
    for i, lab in enumerate(labels):
        result = _map_output(i, labels, index, outputs_of[lab], trained_on_dataset)
        if isinstance(result, _Refused):
            refused[i] = result
        else:
            mapped[i] = result
    outputs_on: dict[int, list[int]] = {}
    for i, (cls, _) in mapped.items():
        outputs_on.setdefault(cls, []).append(i)
    for cls, outputs in outputs_on.items():  # one class for several labels: only as the synonyms say
        if sum(mapped[i][1] != "synonym" for i in outputs) > 1:
            for i in outputs:
                refused[i] = _Refused(f"model labels {_quoted(labels[o] for o in outputs)} would all map to the "
                                      f"dataset class {classes[cls]!r}, and the dataset's synonyms do not say they "
                                      f"are the same", {cls})
    if refused:
        raise _refusal(labels, refused, classes)
    return LabelMapping([mapped[i][0] for i in range(len(labels))], {lab: mapped[i][1] for i, lab in enumerate(labels)},
                        method="name")
