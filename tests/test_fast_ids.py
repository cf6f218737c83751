"""The planner's fast id paths (issue 15) give exactly the ids of the plain ones: model fingerprints written out by
hand, inference and result ids computed per batch, and a chunk's candidates in the planner's order."""
from __future__ import annotations

import hashlib
import json
import random

import pytest

from core import identity as ident
from core.fingerprint import SCHEMA_VERSION, chain, fingerprint
from modules.hf import HFImageClassification
from pipeline.planner import _Chunk, _Work
from processors.base import ProcessorSpec

AWKWARD = ["", "plain", 'quo"te', "back\\slash", "new\nline", "tab\t", "nul\x00", "\x1f", "\u2028sep", "é中文",
           "emoji 🦊", "/", "</script>", " spaced "]


def plain_fingerprint(data) -> str:
    """The definition: sha256 of the canonical JSON of {"schema": SCHEMA_VERSION, "data": data}."""
    payload = json.dumps({"schema": SCHEMA_VERSION, "data": data}, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def test_fingerprint_is_its_definition():
    for data in [{"model": {"name": "a"}}, [1, 2.5, None, True], "x", 3, {"b": {"d": [AWKWARD], "c": 1}, "a": {}}]:
        assert fingerprint(data) == plain_fingerprint(data)
    with pytest.raises(ValueError):
        fingerprint({"x": float("nan")})


def models() -> list[dict]:
    rng = random.Random(3)
    out = [{"source": rng.choice(["huggingface", "local"] + AWKWARD), "name": rng.choice(AWKWARD) + f"/m{n}",
            "revision": rng.choice([f"{n:040x}", None, ""] + AWKWARD)} for n in range(200)]
    out += [{"source": "huggingface", "name": "org/no-revision"},
            {"source": "huggingface", "name": "org/int-revision", "revision": 7},
            {"source": None, "name": "org/no-source", "revision": "r"},
            {"source": "huggingface", "name": "org/adapter", "revision": "r",
             "adapter": {"base_model": "org/base", "base_revision": "b" * 40}},
            {"source": "huggingface", "name": "org/adapter-unpinned", "revision": "r", "adapter": {"base_model": "é/base"}},
            {"source": "huggingface", "name": "org/empty-adapter", "revision": "r", "adapter": {}}]
    return out


def test_model_fingerprint_equals_the_plain_fingerprint():
    fps = [ident.model_fingerprint(m) for m in models()]
    assert fps == [plain_fingerprint({"model": ident.model_identity(m)}) for m in models()]
    assert len(set(fps)) == len(fps)
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate fails as it does in fingerprint()
        ident.model_fingerprint({"source": "huggingface", "name": "bad\ud800", "revision": "r"})


def test_batched_ids_equal_one_by_one():
    rng = random.Random(5)
    hexes = [f"{rng.getrandbits(256):064x}" for _ in range(50)]
    model_fp = ident.model_fingerprint({"source": "huggingface", "name": "org/m", "revision": "r"})
    infs = ident.inference_ids(model_fp, hexes)
    assert infs == [ident.inference_id(model_fp, w) for w in hexes]
    assert infs == [chain(model_fp, w) for w in hexes]
    for processor_fp in hexes[:3]:
        assert ident.result_ids(infs, processor_fp) == [ident.result_id(i, processor_fp) for i in infs]
    assert ident.inference_ids(model_fp, []) == [] and ident.result_ids([], model_fp) == []
    # any ascii text chains as in chain(); other text fails as it does there
    assert ident.inference_ids("p|x", ["", "a|b"]) == [chain("p|x", ""), chain("p|x", "a|b")]
    assert ident.result_ids(["", "a|b"], "c") == [chain("", "c"), chain("a|b", "c")]
    for call in (lambda: chain("é", "x"), lambda: ident.inference_ids("é", ["x"]), lambda: ident.result_ids(["é"], "x")):
        with pytest.raises(UnicodeEncodeError):
            call()


def test_chunk_ids_follow_the_planner_order_for_any_wanted_candidates():
    """A chunk's result ids, for every candidate and for subsets of variants and processors (what watermarks leave
    to plan), equal result_id(inference_id(...)) in (variant, processor) order."""
    rng = random.Random(11)
    module = HFImageClassification(dataset="d", variants=("original", "greyscale", "flipped"))
    variants = [(name, {"variant": name}, f"{rng.getrandbits(256):064x}") for name in module.variants]
    for n_processors in (1, 2, 3):
        processors = [(ProcessorSpec.parse("classification"), f"{rng.getrandbits(256):064x}")
                      for _ in range(n_processors)]
        w = _Work(module, variants, processors)
        w.every_candidate = [(i, list(range(n_processors))) for i in range(len(variants))]
        w.every_pair = [(i, j) for i, js in w.every_candidate for j in js]
        wanted_sets = [w.every_candidate, [(2, [0])], [(0, [n_processors - 1]), (2, list(range(n_processors)))]]
        if n_processors > 1:
            wanted_sets.append([(0, [1]), (1, [0]), (2, [1])])
        chunk = _Chunk()
        expected = []
        for m, wanted in enumerate(wanted_sets):
            model_fp = ident.model_fingerprint({"source": "huggingface", "name": f"org/m{m}", "revision": "r"})
            assert chunk.add({"key": f"m{m}"}, model_fp, w, wanted) == sum(len(js) for _, js in wanted)
            expected += [ident.result_id(ident.inference_id(model_fp, variants[i][2]), processors[j][1])
                         for i, js in wanted for j in js]
            _, _, pairs, inference_ids = chunk.groups[-1]
            assert pairs == [(i, j) for i, js in wanted for j in js]
            assert {i: inference_ids[i] for i, _ in wanted} == {
                i: ident.inference_id(model_fp, variants[i][2]) for i, _ in wanted}
        assert chunk.result_ids == expected
        assert chunk.starts == [0, *[sum(len(js) for ws in wanted_sets[:k] for _, js in ws)
                                     for k in range(1, len(wanted_sets))]]
