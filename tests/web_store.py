"""A small real store for the web tests (tests/test_web*.py): one real evaluation cycle (pipeline.executor) over

* the fault zoo's ``tinysent`` text set (tests/fault_repos.py) with its good model, a second tiny BERT trained
  with another seed (its card names the good one as ``base_model``), the truncated-weights model (a load
  failure) and the NaN model (an inference failure), on the original data and the ``typos`` variant;
* ``webdigits``: 240 scikit-learn digits as 32x32 PNGs (200 train, 40 test) and a tiny ResNet trained on
  them for a few epochs, on the original data and the ``greyscale`` variant (image thumbnails).

The cycle runs once per test session; each test gets the store in its own database (a copy made by
MongoDB's ``$out`` of every collection), so tests that write (runs, locks) never disturb each other.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from core.data import write_dataset
from demo.sources import model_card
from tests.fault_repos import DATASET, session_fault_zoo, train_tiny_model, write_good

DIGITS = "webdigits"
IMAGE_SIZE = 32
TEXT_VARIANTS = ("original", "typos")
IMAGE_VARIANTS = ("original", "greyscale")
_BUILT: dict[str, Any] = {}


def build_digits(root: Path, n_train: int = 200, n_test: int = 40) -> Path:
    """``webdigits``: the first scikit-learn digits as 32x32 RGB PNGs (real data, 10 classes)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = root / DIGITS
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_train + n_test):
        grey = np.clip(np.round(digits.images[i] * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        rel = f"images/{i:04d}.png"
        Image.fromarray(grey, mode="L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.NEAREST).convert("RGB").save(folder / rel)
        rows.append({"id": f"d-{i:04d}", "label": int(digits.target[i]), "file": rel})
    meta = {"name": DIGITS, "version": "1", "datatype": "image", "classes": [str(i) for i in range(10)],
            "description": "the first 240 scikit-learn digits (web tests)", "supported_variants": ["greyscale"],
            "synonyms": {}, "compatible_with": []}
    return write_dataset(folder, meta, {"train": rows[:n_train], "test": rows[n_train:]})


def train_digits_model(folder: Path, dest: Path, name: str, epochs: int = 8) -> Path:
    """A tiny ResNetForImageClassification trained on webdigits' train split, saved in Hugging Face format."""
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessor

    from core.data import LocalDataset

    processor = ViTImageProcessor(do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_rescale=True,
                                  rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    ds = LocalDataset.open(folder)
    train = list(ds.samples("train"))
    x = processor([s.input for s in train], return_tensors="pt")["pixel_values"]
    y = torch.tensor([s.label for s in train])
    labels = {i: str(i) for i in range(10)}
    config = ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
                          downsample_in_first_stage=False, num_labels=10, id2label=labels,
                          label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    model = ResNetForImageClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        for start in range(0, len(y), 50):
            opt.zero_grad()
            model(pixel_values=x[start:start + 50], labels=y[start:start + 50]).loss.backward()
            opt.step()
    model.eval()
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest), safe_serialization=True)
    processor.save_pretrained(str(dest))
    front = {"pipeline_tag": "image-classification", "library_name": "transformers", "license": "mit",
             "datasets": [DIGITS], "tags": ["image-classification", "zooeval-web-test"]}
    (dest / "README.md").write_text(model_card(front, f"# {name}\n\nA tiny ResNet for the web tests."))
    return dest


def build_zoo(tmp_path_factory) -> dict[str, Any]:
    """The datasets and model folders (once per session)."""
    if "zoo" in _BUILT:
        return _BUILT["zoo"]
    fault = session_fault_zoo(tmp_path_factory)
    root = tmp_path_factory.mktemp("web-zoo")
    datasets, zoo = root / "datasets", root / "zoo"
    shutil.copytree(fault["dataset_dir"], datasets / DATASET)
    build_digits(datasets)
    shutil.copytree(fault["repos"]["good"], zoo / "web/good")
    (zoo / "web/good/README.md").write_text(_text_card("web/good"))
    second = train_tiny_model(datasets / DATASET, seed=1, steps=12)
    write_good(zoo / "web/second", "web/second", second)
    (zoo / "web/second/README.md").write_text(_text_card("web/second", base_model="web/good"))
    for name in ("corrupt", "nan"):
        shutil.copytree(fault["repos"][name], zoo / f"web/{name}")
        (zoo / f"web/{name}/README.md").write_text(_text_card(f"web/{name}"))
    train_digits_model(datasets / DIGITS, zoo / "web/digits", "web/digits")
    _BUILT["zoo"] = {"root": root, "datasets": datasets, "zoo": zoo, "home": root / "home",
                     "second_accuracy": second["test_accuracy"]}
    return _BUILT["zoo"]


def _text_card(name: str, base_model: str | None = None) -> str:
    front = {"pipeline_tag": "text-classification", "library_name": "transformers", "license": "apache-2.0",
             "datasets": [DATASET], "tags": ["text-classification", "zooeval-web-test"]}
    if base_model:
        front["base_model"] = base_model
    return model_card(front, f"# {name}\n\nA tiny BERT sentiment classifier for the zooeval web tests.")


def run_cycle(store, zoo: dict[str, Any]) -> Any:
    """Register the datasets, scrape the zoo folder and run one real cycle (pipeline.executor.Executor)."""
    import processors.classification  # noqa: F401  (registers the classification processor)
    from modules.hf import HFImageClassification, HFTextClassification
    from pipeline.executor import Executor
    from scraper.datasets import register_catalogue, register_datasets
    from scraper.local import scrape_local

    register_catalogue(store)
    register_datasets(store, zoo["datasets"], log=lambda *a: None)
    scrape_local(store, zoo["zoo"], log=lambda *a: None)
    modules = [HFTextClassification(dataset=DATASET, variants=TEXT_VARIANTS),
               HFImageClassification(dataset=DIGITS, variants=IMAGE_VARIANTS)]
    return Executor(store, modules, zoo["home"], batch_size=16, progress=False, echo=lambda *a: None).run()


def session_web_store(tmp_path_factory, mongo_uri: str) -> dict[str, Any]:
    """The zoo and the database holding one finished cycle over it (built once per session)."""
    if "db" not in _BUILT:
        import uuid

        from core.store import Store

        zoo = build_zoo(tmp_path_factory)
        name = "zw_" + uuid.uuid4().hex[:10]
        store = Store(mongo_uri, name)
        try:
            summary = run_cycle(store, zoo)
        finally:
            store.close()
        _BUILT["db"] = {"db": name, "run_id": summary.run_id, **zoo}
    return _BUILT["db"]


def copy_database(mongo_uri: str, source: str, target: str) -> None:
    """Every collection (documents and indexes) of ``source`` into ``target`` on the same server, the collections
    copied at once (one after another, each a few majority-acknowledged commands, a copy took 2.3 s; 0.3-0.4 s so)."""
    from concurrent.futures import ThreadPoolExecutor

    from pymongo import IndexModel, MongoClient

    with MongoClient(mongo_uri) as client:
        src = client[source]

        def copy(name: str) -> None:
            src[name].aggregate([{"$match": {}}, {"$out": {"db": target, "coll": name}}])
            indexes = [IndexModel(list(index["key"].items()), **{k: v for k, v in index.items() if k not in ("v", "key")})
                       for index in src[name].list_indexes() if index["name"] != "_id_"]  # (name and options kept)
            if indexes:
                client[target][name].create_indexes(indexes)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(copy, src.list_collection_names()))  # (list: a copy that fails raises here)
