"""Small dataset repos in the Hugging Face Hub's layout, for the Hub stand-in (tests/hubserver.py).

A repo is what ``push_to_hub`` publishes: one parquet file per split (``data/<split>-00000-of-00001.parquet``,
or ``<config>/<split>-...`` for a named config), written by the ``datasets`` library so the schema carries the
features (ClassLabel names, Image), and a README.md whose YAML lists ``configs`` (data files per split) and
``dataset_info`` (features per config).
"""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import yaml

SENTIMENT = ["negative", "positive"]
NLI = ["entailment", "neutral", "contradiction"]
WORDS = {0: ["bad", "dull", "awful", "boring"], 1: ["good", "great", "lovely", "superb"]}
NOUNS = ["the film", "the plot", "the cast", "the score", "the ending"]


def write_repo(repo_dir: Path, configs: dict[str, dict[str, Any]], pretty_name: str | None = None) -> Path:
    """Write ``configs`` ({config name: {split: datasets.Dataset}}; ``default`` goes under ``data/``) as parquet
    files and the README.md card that declares them."""
    card: dict[str, Any] = {"configs": [], "dataset_info": []}
    if pretty_name:
        card["pretty_name"] = pretty_name
    for config, splits in configs.items():
        folder = "data" if config == "default" else config
        files = []
        for split, ds in splits.items():
            path = repo_dir / folder / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(path))
            files.append({"split": split, "path": f"{folder}/{split}-*"})
        card["configs"].append({"config_name": config, "data_files": files})
        features = next(iter(splits.values())).features
        card["dataset_info"].append({"config_name": config, "features": features._to_yaml_list()})
    (repo_dir / "README.md").write_text("---\n" + yaml.safe_dump(card, sort_keys=False) + "---\n\n# test dataset\n",
                                        encoding="utf-8")
    return repo_dir


def sentiment_split(n: int, seed: int, unlabelled: int = 0):
    """Short two-class sentences (a ClassLabel), the last ``unlabelled`` rows labelled -1 (no label)."""
    from datasets import ClassLabel, Dataset, Features, Value

    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    texts = [f"{rng.choice(NOUNS)} was {rng.choice(['really', 'quite', 'rather'])} {rng.choice(WORDS[y])}" for y in labels]
    labels[n - unlabelled:] = [-1] * unlabelled if unlabelled else []
    features = Features({"text": Value("string"), "label": ClassLabel(names=SENTIMENT)})
    return Dataset.from_dict({"text": texts, "label": labels}, features=features)


def digits_split(indices: list[int], column: str = "image"):
    """scikit-learn's digits (real 8x8 handwritten digits) as PNG bytes in an Image column, 10 ClassLabel classes."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    digits = load_digits()
    pngs = []
    for i in indices:
        buf = io.BytesIO()
        PILImage.fromarray(digit_pixels(digits.images[i]), mode="L").save(buf, format="PNG")
        pngs.append({"bytes": buf.getvalue(), "path": None})
    features = Features({column: Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    return Dataset.from_dict({column: pngs, "label": [int(digits.target[i]) for i in indices]}, features=features)


def digit_pixels(image: Any) -> Any:
    """A digits image (values 0..16) as uint8 grey levels."""
    import numpy as np

    return (np.asarray(image) * 15).astype(np.uint8)


def similarity_split(n: int, seed: int):
    """Sentence pairs with a float similarity score in [0, 5] (STS-B's layout: sentence1, sentence2, label)."""
    from datasets import Dataset, Features, Value

    rng = random.Random(seed)
    first = [f"{rng.choice(NOUNS)} was {rng.choice(WORDS[i % 2])}" for i in range(n)]
    second = [f"{rng.choice(NOUNS)} was {rng.choice(WORDS[(i // 2) % 2])}" for i in range(n)]
    scores = [round(rng.uniform(0, 5), 2) for _ in range(n)]
    features = Features({"sentence1": Value("string"), "sentence2": Value("string"), "label": Value("float32")})
    return Dataset.from_dict({"sentence1": first, "sentence2": second, "label": scores}, features=features)


def nli_split(n: int, seed: int):
    """Premise / hypothesis pairs with three ClassLabel classes (MNLI's layout)."""
    from datasets import ClassLabel, Dataset, Features, Value

    rng = random.Random(seed)
    premise = [f"{rng.choice(NOUNS)} was {rng.choice(WORDS[1])}" for _ in range(n)]
    hypothesis = [f"{rng.choice(NOUNS)} was {rng.choice(WORDS[0])}" for _ in range(n)]
    features = Features({"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=NLI)})
    return Dataset.from_dict({"premise": premise, "hypothesis": hypothesis, "label": [i % 3 for i in range(n)]},
                             features=features)


def qa_split(n: int):
    """Columns no task kind reads: a question, its answers (a list) and an integer label that is not a ClassLabel."""
    from datasets import Dataset, Features, Sequence, Value

    features = Features({"question": Value("string"), "answers": Sequence(Value("string")), "label": Value("int64")})
    return Dataset.from_dict({"question": [f"q{i}?" for i in range(n)], "answers": [[f"a{i}"] for i in range(n)],
                              "label": [i % 2 for i in range(n)]}, features=features)


def segmentation_split(n: int, seed: int, image_column: str = "image", mask_column: str = "label"):
    """Shapes on real photos (demo.segmentation.render: 64x64, classes background/rectangle/ellipse/triangle, 255
    borders) as an Image column of PNG bytes and a mask Image column of 8-bit index PNGs, as the Hub's segmentation
    datasets hold them. Returns (the Dataset, the masks as arrays)."""
    import numpy as np
    from datasets import Dataset, Features, Image
    from PIL import Image as PILImage

    from demo.detection_data import SHAPE_BACKGROUND_PHOTOS, _photo
    from demo.segmentation import render

    rng = np.random.default_rng(seed)
    photos = [_photo(name) for name in SHAPE_BACKGROUND_PHOTOS[:3]]
    images, masks, arrays = [], [], []
    for i in range(n):
        image, mask = render(rng, photos[i % len(photos)])
        for target, array in ((images, image), (masks, mask)):
            buf = io.BytesIO()
            PILImage.fromarray(array).save(buf, format="PNG")
            target.append({"bytes": buf.getvalue(), "path": None})
        arrays.append(mask)
    features = Features({image_column: Image(), mask_column: Image()})
    return Dataset.from_dict({image_column: images, mask_column: masks}, features=features), arrays
