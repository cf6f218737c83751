"""Text perturbations: lowercase, uppercase and seeded character typos, registered at import."""
from __future__ import annotations

from typing import Any

import numpy as np

from perturbations.base import Perturbation, register_perturbation

_KEYBOARD_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def _keyboard_neighbours() -> dict[str, str]:
    """Letters adjacent on a QWERTY keyboard (same row left/right, rows above/below)."""
    pos = {c: (r, i) for r, row in enumerate(_KEYBOARD_ROWS) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in pos.items():
        near = []
        for rr in (r - 1, r, r + 1):
            if not 0 <= rr < len(_KEYBOARD_ROWS):
                continue
            for ii in (i - 1, i, i + 1):
                if (rr, ii) != (r, i) and 0 <= ii < len(_KEYBOARD_ROWS[rr]):
                    near.append(_KEYBOARD_ROWS[rr][ii])
        out[c] = "".join(near)
    return out


NEIGHBOURS = _keyboard_neighbours()
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
TYPO_OPS = ("swap", "delete", "insert", "substitute")


class TextPerturbation(Perturbation):
    datatype = "text"


class Lowercase(TextPerturbation):
    name = "lowercase"
    description = "The text is converted to lower case"
    method = "str.lower"

    def transform(self, inpt: str, params: dict[str, Any]) -> str:
        return inpt.lower()


class Uppercase(TextPerturbation):
    name = "uppercase"
    description = "The text is converted to upper case"
    method = "str.upper"

    def transform(self, inpt: str, params: dict[str, Any]) -> str:
        return inpt.upper()


class Typos(TextPerturbation):
    """Each letter independently gets a typo with probability ``rate``.

    A typo is one of: swap with the following letter, delete, insert a keyboard-neighbour letter after
    it, or substitute it by a keyboard-neighbour letter (case preserved). Only letters are edited; every
    other character is kept, in order.
    """

    name = "typos"
    description = "Random letters of the text get keyboard typos (swap, deletion, insertion, substitution)"
    method = "seeded character edits with QWERTY neighbours (perturbations.text.Typos)"

    def __init__(self, rate: float = 0.05) -> None:
        rate = float(rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"typo rate must be within [0, 1], got {rate}")
        super().__init__(rate=rate)

    @staticmethod
    def _neighbour(rng: np.random.Generator, ch: str) -> str:
        pool = NEIGHBOURS.get(ch.lower(), _ALPHABET)
        new = pool[int(rng.integers(len(pool)))]
        return new.upper() if ch.isupper() else new

    def make_params(self, rng: np.random.Generator, inpt: str) -> dict[str, Any]:
        rate = self.params["rate"]
        draws = rng.random(len(inpt))  # one draw per character, so the pattern is stable per position
        edits: list[dict[str, Any]] = []
        i = 0
        while i < len(inpt):
            ch = inpt[i]
            if not ch.isalpha() or draws[i] >= rate:
                i += 1
                continue
            op = TYPO_OPS[int(rng.integers(len(TYPO_OPS)))]
            if op == "swap" and not (i + 1 < len(inpt) and inpt[i + 1].isalpha()):
                op = "substitute"
            if op == "swap":
                edits.append({"pos": i, "op": "swap"})
                i += 2  # the swapped partner is consumed
                continue
            if op in ("insert", "substitute"):
                edits.append({"pos": i, "op": op, "char": self._neighbour(rng, ch)})
            else:
                edits.append({"pos": i, "op": "delete"})
            i += 1
        return {"edits": edits}

    def transform(self, inpt: str, params: dict[str, Any]) -> str:
        by_pos = {e["pos"]: e for e in params.get("edits", [])}
        out: list[str] = []
        i = 0
        while i < len(inpt):
            e = by_pos.get(i)
            if e is None:
                out.append(inpt[i])
            elif e["op"] == "swap" and i + 1 < len(inpt):
                out.append(inpt[i + 1] + inpt[i])
                i += 1
            elif e["op"] == "delete":
                pass
            elif e["op"] == "insert":
                out.append(inpt[i] + e["char"])
            elif e["op"] == "substitute":
                out.append(e["char"])
            else:
                out.append(inpt[i])
            i += 1
        return "".join(out)


for _p in (Lowercase(), Uppercase(), Typos()):
    register_perturbation(_p)
