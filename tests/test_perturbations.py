"""Perturbations (exact pixel arithmetic, seeded typos) and the on-disk variant cache."""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from core.data import DataError, LocalDataset, write_dataset
from perturbations import ORIGINAL, PERTURBATIONS, get_perturbation
from perturbations.base import Perturbation
from perturbations.cache import (
    COMPLETE_MARKER,
    ensure_variant,
    is_complete,
    variant_fingerprint,
    variant_path,
)
from perturbations.image import Rotated90
from perturbations.text import Typos

# --------------------------------------------------------------------------- image perturbations

@pytest.fixture
def arr() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)


def _apply(name: str, arr: np.ndarray) -> np.ndarray:
    out = get_perturbation(name)(Image.fromarray(arr, "RGB"), seed=0, index=0)
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    return np.asarray(out)


def test_registry_has_all_variants():
    for name in ("greyscale", "flipped", "mirrored", "inverted", "rotated90", "lowercase", "uppercase", "typos"):
        p = get_perturbation(name)
        assert p.name == name and p.description and p.method
        assert p.datatype == ("text" if name in ("lowercase", "uppercase", "typos") else "image")
    assert get_perturbation(ORIGINAL) is None
    assert ORIGINAL not in PERTURBATIONS
    with pytest.raises(KeyError):
        get_perturbation("no-such-thing")


def test_flipped(arr):
    np.testing.assert_array_equal(_apply("flipped", arr), arr[::-1])


def test_mirrored(arr):
    np.testing.assert_array_equal(_apply("mirrored", arr), arr[:, ::-1])


def test_rotated90(arr):
    out = _apply("rotated90", arr)
    assert out.shape == (6, 4, 3)
    np.testing.assert_array_equal(out, np.rot90(arr, 1))
    # counter-clockwise: the top-right pixel ends up top-left
    np.testing.assert_array_equal(out[0, 0], arr[0, -1])


def test_inverted(arr):
    np.testing.assert_array_equal(_apply("inverted", arr), 255 - arr)


def test_greyscale(arr):
    out = _apply("greyscale", arr)
    expected = np.asarray(Image.fromarray(arr, "RGB").convert("L"))
    assert out.shape == arr.shape
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)


# --------------------------------------------------------------------------- text perturbations

TEXT = "Hello, World! This is a fairly long sentence, with 42 digits & punctuation... ok?"


def _non_letters(s: str) -> str:
    return "".join(c for c in s if not c.isalpha())


def test_lower_upper():
    assert get_perturbation("lowercase")("MiXeD 1!", 0, 0) == "mixed 1!"
    assert get_perturbation("uppercase")("MiXeD 1!", 0, 0) == "MIXED 1!"


def test_typos_deterministic_and_index_dependent():
    t = Typos(rate=0.3)
    a = t(TEXT, seed=7, index=3)
    assert a == t(TEXT, seed=7, index=3)
    assert a == Typos(rate=0.3)(TEXT, seed=7, index=3)
    assert a != TEXT
    assert a != t(TEXT, seed=7, index=4)
    assert a != t(TEXT, seed=8, index=3)


def test_typos_only_letters_change():
    t = Typos(rate=0.5)
    for index in range(20):
        out = t(TEXT, seed=1, index=index)
        assert _non_letters(out) == _non_letters(TEXT)


def test_typos_rate_zero_is_identity():
    t = Typos(rate=0.0)
    assert all(t(TEXT, seed=s, index=i) == TEXT for s in range(3) for i in range(5))


def test_typos_params_are_plain_data():
    t = Typos(rate=0.5)
    params = t.make_params(np.random.default_rng([0, 0]), TEXT)
    json.dumps(params)
    assert params["edits"] and t.transform(TEXT, params) == t(TEXT, 0, 0)
    assert Typos().params == {"rate": 0.05}
    with pytest.raises(ValueError):
        Typos(rate=1.5)


# --------------------------------------------------------------------------- cache fixtures

def _image_dataset(root, n_train=4, n_test=2) -> LocalDataset:
    (root / "img").mkdir(parents=True)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            a = np.full((3, 5, 3), (i * 40) % 256, dtype=np.uint8)
            a[0, 0] = (255, 0, 0)
            rel = f"img/{split}-{i}.png"
            Image.fromarray(a, "RGB").save(root / rel)
            rows.append({"id": f"{split}-{i}", "label": i % 2, "file": rel})
        splits[split] = rows
    write_dataset(root, {"name": "tiny-img", "datatype": "image", "classes": ["a", "b"]}, splits)
    return LocalDataset.open(root)


def _text_dataset(root) -> LocalDataset:
    rows = [{"id": str(i), "label": i % 2, "text": f"Sample Number {i}, Quite Long Text"} for i in range(5)]
    write_dataset(root, {"name": "tiny-txt", "datatype": "text", "classes": ["neg", "pos"]},
                  {"train": rows, "test": rows[:2]})
    return LocalDataset.open(root)


class Counting(Perturbation):
    """Mirror, counting calls; optionally failing on the n-th call or sleeping."""

    name = "counting"
    datatype = "image"
    description = "Counts its calls"
    method = "test"

    def __init__(self, fail_on: int | None = None, sleep: float = 0.0, **params):
        super().__init__(**params)
        self.calls = 0
        self.fail_on = fail_on
        self.sleep = sleep
        self.lock = threading.Lock()

    def transform(self, inpt, params):
        with self.lock:
            self.calls += 1
            n = self.calls
        if self.fail_on is not None and n == self.fail_on:
            raise RuntimeError("boom")
        if self.sleep:
            time.sleep(self.sleep)
        return inpt.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


# --------------------------------------------------------------------------- cache

def test_image_variant_content_and_metadata(tmp_path):
    ds = _image_dataset(tmp_path / "src")
    rev = ds.revision()
    p = get_perturbation("rotated90")
    seen = []
    v = ensure_variant(ds, rev, p, seed=3, cache_root=tmp_path / "cache", progress=lambda d, t: seen.append((d, t)))
    assert v.root == variant_path(tmp_path / "cache", ds, rev, p, 3)
    assert v.root.parent == tmp_path / "cache" / "tiny-img"
    assert v.root.name.startswith("rotated90-") and len(v.root.name) == len("rotated90-") + 16
    assert is_complete(v.root)
    assert v.splits == ds.splits and v.classes == ds.classes and v.datatype == "image"
    assert v.meta["parent_revision"] == rev
    assert v.meta["variant"] == {"name": "rotated90", "version": 1, "params": {}, "seed": 3,
                                 "description": p.description, "method": p.method}
    assert seen[-1] == (6, 6) and len(seen) == 6
    for split in ds.splits:
        src, out = list(ds.samples(split)), list(v.samples(split))
        assert [s.id for s in src] == [s.id for s in out] and [s.label for s in src] == [s.label for s in out]
        for s, o in zip(src, out):
            np.testing.assert_array_equal(np.asarray(o.input), np.rot90(np.asarray(s.input), 1))
        assert all(r["file"].startswith("images/") and r["file"].endswith(".png") for r in v.rows(split))


def test_text_variant_and_original(tmp_path):
    ds = _text_dataset(tmp_path / "src")
    rev = ds.revision()
    t = Typos(rate=0.3)
    v = ensure_variant(ds, rev, t, seed=5, cache_root=tmp_path / "cache")
    for split in ds.splits:
        for i, (s, o) in enumerate(zip(ds.samples(split), v.samples(split))):
            assert o.input == t(s.input, 5, index=i)
    assert ensure_variant(ds, rev, None, 5, tmp_path / "cache") is ds
    assert ensure_variant(ds, rev, ORIGINAL, 5, tmp_path / "cache") is ds


def test_datatype_mismatch(tmp_path):
    ds = _text_dataset(tmp_path / "src")
    with pytest.raises(ValueError, match="image.*text|text.*image"):
        ensure_variant(ds, ds.revision(), get_perturbation("flipped"), 0, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob(COMPLETE_MARKER))


def test_builds_once(tmp_path):
    ds = _image_dataset(tmp_path / "src")
    rev = ds.revision()
    p = Counting()
    v1 = ensure_variant(ds, rev, p, 0, tmp_path / "cache")
    assert p.calls == 6
    mtime = (v1.root / COMPLETE_MARKER).stat().st_mtime_ns
    v2 = ensure_variant(ds, rev, p, 0, tmp_path / "cache")
    assert p.calls == 6 and v2.root == v1.root
    assert (v2.root / COMPLETE_MARKER).stat().st_mtime_ns == mtime
    # another seed is another variant
    v3 = ensure_variant(ds, rev, p, 1, tmp_path / "cache")
    assert p.calls == 12 and v3.root != v1.root


def test_crash_mid_build_leaves_nothing_reusable(tmp_path):
    ds = _image_dataset(tmp_path / "src")
    rev = ds.revision()
    cache = tmp_path / "cache"
    bad = Counting(fail_on=3)
    with pytest.raises(RuntimeError, match="boom"):
        ensure_variant(ds, rev, bad, 0, cache)
    final = variant_path(cache, ds, rev, bad, 0)
    assert not final.exists()
    assert [p.name for p in final.parent.iterdir() if not p.name.endswith(".lock")] == []
    good = Counting()
    v = ensure_variant(ds, rev, good, 0, cache)
    assert good.calls == 6 and v.root == final and is_complete(final)
    assert sum(len(v.rows(s)) for s in v.splits) == 6


def test_stale_incomplete_and_temp_folders_are_cleaned(tmp_path):
    ds = _image_dataset(tmp_path / "src")
    rev = ds.revision()
    cache = tmp_path / "cache"
    p = Counting()
    final = variant_path(cache, ds, rev, p, 0)
    # an unmarked final folder (looks like a dataset, but is not complete) and a stale temp sibling
    write_dataset(final, {"name": "tiny-img", "datatype": "image", "classes": ["a", "b"]}, {"train": []})
    stale_tmp = final.parent / f".{final.name}.tmp-crashed"
    (stale_tmp / "images").mkdir(parents=True)
    v = ensure_variant(ds, rev, p, 0, cache)
    assert p.calls == 6 and is_complete(v.root)
    assert not stale_tmp.exists()
    assert sorted(v.splits) == ["test", "train"] and len(v.rows("train")) == 4


def test_unreadable_source_raises_dataerror(tmp_path):
    ds = _image_dataset(tmp_path / "src")
    rev = ds.revision()
    (tmp_path / "src" / "img" / "test-1.png").write_bytes(b"not a png")
    with pytest.raises(DataError):
        ensure_variant(ds, rev, get_perturbation("mirrored"), 0, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob(COMPLETE_MARKER))
    assert not variant_path(tmp_path / "cache", ds, rev, get_perturbation("mirrored"), 0).exists()


def test_concurrent_callers_build_once(tmp_path):
    ds = _image_dataset(tmp_path / "src")
    rev = ds.revision()
    p = Counting(sleep=0.05)
    results, errors = [], []

    def run():
        try:
            results.append(ensure_variant(ds, rev, p, 0, tmp_path / "cache").root)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and p.calls == 6
    assert len(set(results)) == 1 and is_complete(results[0])


def test_race_loser_uses_winners_variant(tmp_path):
    """A builder that ignores the lock finishes first: our temp folder is discarded, theirs is used."""
    ds = _image_dataset(tmp_path / "src")
    rev = ds.revision()
    cache = tmp_path / "cache"
    final = variant_path(cache, ds, rev, Counting(), 0)

    class Racer(Counting):
        def transform(self, inpt, params):
            if self.calls == 0:  # simulate the winner renaming its complete variant into place
                write_dataset(final, {"name": "winner", "datatype": "image", "classes": ["a", "b"]},
                              {"train": [], "test": []})
                (final / COMPLETE_MARKER).write_text("{}\n")
            return super().transform(inpt, params)

    v = ensure_variant(ds, rev, Racer(), 0, cache)
    assert v.root == final and v.name == "winner"
    assert [p.name for p in final.parent.iterdir() if ".tmp-" in p.name] == []


def test_fingerprint_sensitivity():
    class RotV2(Rotated90):
        version = 2

    base = variant_fingerprint("rev1", Rotated90(), 0)
    assert base == variant_fingerprint("rev1", Rotated90(), 0)
    assert len({
        base,
        variant_fingerprint("rev1", RotV2(), 0),
        variant_fingerprint("rev1", Rotated90(), 1),
        variant_fingerprint("rev2", Rotated90(), 0),
    }) == 4
    assert variant_fingerprint("r", Typos(rate=0.05), 0) != variant_fingerprint("r", Typos(rate=0.1), 0)
    assert variant_fingerprint("r", Typos(), 0) == variant_fingerprint("r", Typos(rate=0.05), 0)
    assert variant_fingerprint("r", None, 0) == "r"


def test_variant_path_respects_fingerprint(tmp_path):
    ds = _text_dataset(tmp_path / "src")
    a = variant_path(tmp_path, ds, "r1", Typos(rate=0.1), 0)
    b = variant_path(tmp_path, ds, "r1", Typos(rate=0.2), 0)
    assert a != b and a.parent == b.parent == tmp_path / "tiny-txt"
    assert os.path.basename(a).startswith("typos-")
