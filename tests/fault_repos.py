"""Small, fast model repos in Hugging Face format for the fault tests (tests/test_faults.py).

Everything derives from one tiny real model: a BertForSequenceClassification (hidden size 32, 2 layers,
2 heads) with a WordPiece vocabulary made of the words of a tiny two-class text dataset (``tinysent``),
trained for a few seconds. The broken repos are that model with one thing wrong:

* ``corrupt``:     model.safetensors truncated to half its size
* ``pickle-evil``: weights only as pytorch_model.bin, whose pickle would create a marker file when unpickled
* ``remote-code``: config.json with ``auto_map`` (custom modelling code, which would create a marker file)
* ``nan``:         one classifier weight is NaN (every output is NaN)
* ``no-config``:   config.json removed
* ``pickle-ok``:   weights only as a plain tensor pytorch_model.bin (loads with ``weights_only=True``)

Every repo has a README.md card (``pipeline_tag: text-classification``, ``datasets: [tinysent]``), so
``scraper.local.scrape_local`` stores it with the right task and training dataset.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from core.data import write_dataset
from demo.sources import model_card

DATASET = "tinysent"
CLASSES = ["negative", "positive"]
POSITIVE = ["good", "great", "fine", "lovely", "superb", "brilliant", "charming", "wonderful"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "terrible", "clumsy", "tedious"]
SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the script", "the ending"]
FILLER = ["was", "is", "felt", "seemed", "really", "quite", "and", "but", "very", "rather", "somewhat"]
MAX_LENGTH = 16


class Evil:
    """Unpickling this opens (creates) ``path``: what a malicious checkpoint would do, harmlessly."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _sentence(rng: random.Random, label: int, mixed: bool) -> str:
    main = POSITIVE if label == 1 else NEGATIVE
    other = NEGATIVE if label == 1 else POSITIVE
    words = [rng.choice(SUBJECTS), rng.choice(FILLER[:4]), rng.choice(FILLER[4:]), rng.choice(main)]
    if mixed:  # a harder row: one word of each sentiment
        words += [rng.choice(["and", "but"]), rng.choice(other)]
    return " ".join(words)


def build_dataset(root: Path, n_test: int = 48, n_train: int = 64, seed: int = 0) -> Path:
    """The ``tinysent`` LocalDataset: short sentences, ``negative`` / ``positive``, a few mixed ones."""
    rng = random.Random(seed)

    def rows(prefix: str, n: int) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            label = i % 2
            text = _sentence(rng, label, mixed=i % 5 == 4)
            if prefix == "test" and i % 7 == 6:  # annotator noise: no model gets every test row right
                label = 1 - label
            out.append({"id": f"{prefix}-{i:03d}", "label": label, "text": text})
        return out

    meta = {
        "name": DATASET,
        "version": "1.0",
        "datatype": "text",
        "description": "Tiny synthetic two-class sentiment sentences for the fault tests.",
        "classes": list(CLASSES),
        "synonyms": {},
        "supported_variants": ["lowercase", "uppercase", "typos"],
        "compatible_with": [],
    }
    return write_dataset(root / DATASET, meta, {"train": rows("train", n_train), "test": rows("test", n_test)})


def vocabulary() -> list[str]:
    words = set(POSITIVE + NEGATIVE + FILLER)
    for s in SUBJECTS:
        words.update(s.split())
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]


def _rows(dataset_dir: Path, split: str) -> list[dict[str, Any]]:
    with open(dataset_dir / f"{split}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def train_tiny_model(dataset_dir: Path, seed: int = 0, steps: int = 60) -> dict[str, Any]:
    """A real (tiny) BertForSequenceClassification trained on tinysent's train split; its tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocabulary())}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocabulary()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=2,
        id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)},
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    train = _rows(dataset_dir, "train")
    enc = tokenizer([r["text"] for r in train], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    y = torch.tensor([r["label"] for r in train])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(**enc, labels=y).loss.backward()
        opt.step()
    model.eval()
    return {"model": model, "tokenizer": tokenizer, "test_accuracy": accuracy(model, tokenizer, dataset_dir)}


def predict(model, tokenizer, texts: list[str]) -> list[int]:
    """Top-1 class of each text with plain transformers (independent of zooeval's inference code)."""
    import torch

    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        return model(**enc).logits.argmax(-1).tolist()


def accuracy(model, tokenizer, dataset_dir: Path, split: str = "test") -> float:
    rows = _rows(dataset_dir, split)
    pred = predict(model, tokenizer, [r["text"] for r in rows])
    return sum(int(p == r["label"]) for p, r in zip(pred, rows)) / len(rows)


def _card(name: str, note: str = "") -> str:
    front = {
        "pipeline_tag": "text-classification",
        "library_name": "transformers",
        "license": "apache-2.0",
        "datasets": [DATASET],
        "tags": ["text-classification", "zooeval-fault-test"],
    }
    return model_card(front, f"# {name}\n\nA tiny BERT sentiment classifier for the zooeval fault tests. {note}")


def write_good(dest: Path, name: str, trained: dict[str, Any]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    trained["model"].save_pretrained(str(dest), safe_serialization=True)
    trained["tokenizer"].save_pretrained(str(dest))
    (dest / "README.md").write_text(_card(name))
    return dest


def copy_repo(src: Path, dest: Path, name: str, note: str = "") -> Path:
    shutil.copytree(src, dest)
    (dest / "README.md").write_text(_card(name, note))
    return dest


def make_corrupt(src: Path, dest: Path, name: str) -> Path:
    copy_repo(src, dest, name, "model.safetensors is truncated to half its size.")
    weights = dest / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return dest


def make_no_config(src: Path, dest: Path, name: str) -> Path:
    copy_repo(src, dest, name, "config.json is missing.")
    (dest / "config.json").unlink()
    return dest


def make_remote_code(src: Path, dest: Path, name: str, marker: Path) -> Path:
    copy_repo(src, dest, name, "The config names custom modelling code (auto_map).")
    cfg = json.loads((dest / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "modeling_evil.EvilConfig",
                       "AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    (dest / "modeling_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('remote code ran')\n"
        "from transformers import BertConfig as EvilConfig, BertForSequenceClassification as EvilModel\n"
    )
    return dest


def _state_dict(src: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(src / "model.safetensors"))


def make_nan(src: Path, dest: Path, name: str) -> Path:
    """One classifier weight NaN: the logit of class 0 is NaN for every input."""
    from safetensors.torch import save_file

    copy_repo(src, dest, name, "One classifier weight is NaN.")
    state = _state_dict(src)
    state["classifier.weight"] = state["classifier.weight"].clone()
    state["classifier.weight"][0, 0] = float("nan")
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def make_pickle(src: Path, dest: Path, name: str, marker: Path | None = None) -> Path:
    """Weights only as pytorch_model.bin; with ``marker``, the pickle also holds an object whose unpickling
    would create that file (a stand-in for arbitrary code execution)."""
    import torch

    copy_repo(src, dest, name, "Weights as a pickle checkpoint (pytorch_model.bin) only.")
    state = _state_dict(src)
    (dest / "model.safetensors").unlink()
    obj: dict[str, Any] = dict(state)
    if marker is not None:
        obj["_evil"] = Evil(str(marker))
    torch.save(obj, str(dest / "pytorch_model.bin"))
    return dest


def make_body_only(src: Path, dest: Path, name: str) -> Path:
    """The body without its head, as sentence-transformers and SetFit publish it: a ``BertModel`` checkpoint
    (no ``classifier.*``), under a card that says text-classification. Loaded as a sequence classifier, its head
    would be initialised at random."""
    from safetensors.torch import save_file

    copy_repo(src, dest, name, "Only the BERT body: the classification head is not in the checkpoint.")
    state = {k[len("bert."):]: v for k, v in _state_dict(src).items() if k.startswith("bert.")}
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((dest / "config.json").read_text())
    cfg["architectures"] = ["BertModel"]
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    return dest


def make_tf_only(src: Path, dest: Path, name: str) -> Path:
    """Weights only as ``tf_model.h5`` (TensorFlow). zooeval refuses the repo by its file list before reading
    any weights, so the file holds a placeholder (no TensorFlow is installed here to write a real one)."""
    copy_repo(src, dest, name, "Weights only for TensorFlow (tf_model.h5).")
    (dest / "model.safetensors").unlink()
    (dest / "tf_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1024))
    return dest


def build_trust_repos(good: Path, root: Path) -> dict[str, Path]:
    """Repo shapes people publish that must be refused, not scored: ``body-only``, ``tf-only``."""
    return {"body-only": make_body_only(good, root / "body-only", "trust/body-only"),
            "tf-only": make_tf_only(good, root / "tf-only", "trust/tf-only")}


def build_fault_zoo(root: Path) -> dict[str, Any]:
    """``root/datasets/tinysent`` and ``root/zoo/fault/<name>`` for every repo the fault tests use.

    Returns paths, the good model's test accuracy (computed with plain transformers) and marker paths that
    must never appear."""
    import time

    t0 = time.perf_counter()
    datasets = root / "datasets"
    zoo = root / "zoo"
    markers = root / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    ds_dir = build_dataset(datasets)
    trained = train_tiny_model(ds_dir)
    good = write_good(zoo / "fault/good", "fault/good", trained)
    repos = {"good": good}
    # same weights, other names: the test-only misbehaving module acts on the name
    for name in ("zz-after", "hang", "kill", "memhog", "oom", "oom-always"):
        repos[name] = copy_repo(good, zoo / f"fault/{name}", f"fault/{name}")
    repos["corrupt"] = make_corrupt(good, zoo / "fault/corrupt", "fault/corrupt")
    repos["no-config"] = make_no_config(good, zoo / "fault/no-config", "fault/no-config")
    repos["remote-code"] = make_remote_code(good, zoo / "fault/remote-code", "fault/remote-code", markers / "remote-code-ran")
    repos["nan"] = make_nan(good, zoo / "fault/nan", "fault/nan")
    repos["pickle-evil"] = make_pickle(good, zoo / "fault/pickle-evil", "fault/pickle-evil", markers / "pickle-ran")
    repos["pickle-ok"] = make_pickle(good, zoo / "fault/pickle-ok", "fault/pickle-ok")
    return {
        "root": root,
        "zoo": zoo,
        "datasets": datasets,
        "dataset_dir": ds_dir,
        "repos": repos,
        "accuracy": trained["test_accuracy"],
        "predictions": predict(trained["model"], trained["tokenizer"],
                               [r["text"] for r in _rows(ds_dir, "test")]),
        "markers": {"pickle": markers / "pickle-ran", "remote_code": markers / "remote-code-ran"},
        "seconds": time.perf_counter() - t0,
    }


_BUILT: dict[str, Any] = {}


def session_fault_zoo(tmp_path_factory) -> dict[str, Any]:
    """The fault zoo, built once per test session (shared by every test module's ``fault_zoo`` fixture)."""
    if "zoo" not in _BUILT:
        _BUILT["zoo"] = build_fault_zoo(tmp_path_factory.mktemp("fault-zoo"))
    return _BUILT["zoo"]
