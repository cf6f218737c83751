"""Training dataset inferred from a model's label set when it declares none (real mongod)."""
from __future__ import annotations

from core.store import Store
from scraper.training_data import infer_missing_training_datasets, infer_training_datasets


def _ds(name: str, datatype: str, classes: list[str], synonyms: dict[str, str] | None = None) -> dict:
    return {"name": name, "datatype": datatype, "classes": [{"id": i, "label": c} for i, c in enumerate(classes)],
            "splits": [{"name": "test", "total": 1, "class_counts": {}}], "revision": f"rev-{name}",
            "synonyms": synonyms or {}, "path": "/nonexistent"}


DATASETS = {
    "rotten_tomatoes": _ds("rotten_tomatoes", "text", ["rotten", "fresh"], {"negative": "rotten", "positive": "fresh"}),
    "imdb": _ds("imdb", "text", ["neg", "pos"], {"negative": "neg", "positive": "pos"}),
    "digits": _ds("digits", "image", [str(i) for i in range(10)], {"zero": "0", "one": "1", "two": "2"}),
    "emotion": _ds("emotion", "text", ["sadness", "joy", "love", "anger", "fear", "surprise"]),
}


def model(task: str, labels: list[str] | None) -> dict:
    return {"task": task, "config": {"id2label": {str(i): label for i, label in enumerate(labels)} if labels is not None else {}}}


def test_exact_and_normalised_label_sets():
    names, ev = infer_training_datasets(model("text-classification", ["Fresh", "ROTTEN"]), DATASETS)
    assert names == ["rotten_tomatoes"] and ev["coverage"] == {"rotten_tomatoes": 1.0}
    names, _ = infer_training_datasets(model("text-classification", ["Sadness", "Joy", "Love", "Anger", "Fear", "Surprise"]),
                                       DATASETS)
    assert names == ["emotion"]
    names, _ = infer_training_datasets(model("image-classification", [f"{i} digit" for i in range(10)]), DATASETS)
    assert names == ["digits"]


def test_tie_keeps_every_equally_good_dataset():
    # negative/positive are synonyms in both sentiment datasets
    names, ev = infer_training_datasets(model("text-classification", ["negative", "positive"]), DATASETS)
    assert names == ["imdb", "rotten_tomatoes"]
    assert set(ev["coverage"]) == {"imdb", "rotten_tomatoes"}


def test_datatype_must_match():
    names, ev = infer_training_datasets(model("text-classification", [str(i) for i in range(10)]), DATASETS)
    assert names == [] and "match no known text-classification dataset" in ev["reason"]


def test_no_match_reasons():
    names, ev = infer_training_datasets(model("text-classification", ["LABEL_0", "LABEL_1"]), DATASETS)
    assert names == [] and "LABEL_0" in ev["reason"]
    names, ev = infer_training_datasets(model("text-classification", ["spam", "ham"]), DATASETS)
    assert names == [] and "spam" in ev["reason"]
    names, ev = infer_training_datasets(model("image-classification", ["0", "1"]), DATASETS)
    assert names == [] and "cover only 2 of the 10 classes of 'digits'" in ev["reason"]
    names, ev = infer_training_datasets(model("text-classification", ["sadness", "joy", "boredom"]), DATASETS)
    assert names == [] and "closest: 'emotion', 2 of 3 labels" in ev["reason"]
    names, ev = infer_training_datasets(model("text-classification", None), DATASETS)
    assert names == [] and "no labels" in ev["reason"]
    names, ev = infer_training_datasets(model("object-detection", ["cat"]), DATASETS)
    assert names == [] and "object-detection" in ev["reason"]


def test_store_pass_sets_evidence_and_reasons(mongo_uri, db_name):
    store = Store(mongo_uri, db_name)
    for d in DATASETS.values():
        store.upsert_dataset(d)
    docs = [
        {"_id": "local/a", "name": "a", "source": "local", "task": "text-classification", "datasets": [],
         "config": {"id2label": {"0": "rotten", "1": "fresh"}}, "revision": "1"},
        {"_id": "local/b", "name": "b", "source": "local", "task": "text-classification", "datasets": [],
         "config": {"id2label": {"0": "spam", "1": "ham"}}, "revision": "1"},
        {"_id": "local/c", "name": "c", "source": "local", "task": "text-classification", "datasets": ["imdb"],
         "config": {"id2label": {"0": "rotten", "1": "fresh"}}, "revision": "1"},
    ]
    store.upsert_models(docs)
    counts = infer_missing_training_datasets(store, log=lambda s: None)
    assert counts == {"inferred": 1, "unmatched": 1}
    a, b, c = (store.db.models.find_one({"_id": f"local/{x}"}) for x in "abc")
    assert a["inferred_datasets"] == ["rotten_tomatoes"] and a["datasets"] == []
    assert a["dataset_evidence"]["method"] == "label_set" and "unevaluated_reason" not in a
    assert b["inferred_datasets"] == [] and "spam" in b["unevaluated_reason"]
    assert "inferred_datasets" not in c  # declared datasets are left alone
    # a later scrape that finds a new label set updates the inference
    store.db.models.update_one({"_id": "local/b"}, {"$set": {"config.id2label": {"0": "neg", "1": "pos"}}})
    infer_missing_training_datasets(store, log=lambda s: None)
    b = store.db.models.find_one({"_id": "local/b"})
    assert b["inferred_datasets"] == ["imdb"] and "unevaluated_reason" not in b


def test_inferred_dataset_makes_a_model_evaluable():
    from modules.hf import HFTextClassification

    module = HFTextClassification(dataset="rotten_tomatoes")
    m = {"source": "local", "task": "text-classification", "datasets": [], "config": {"id2label": {"0": "rotten", "1": "fresh"}}}
    assert not module.accepts(m, DATASETS)
    m["inferred_datasets"], _ = infer_training_datasets(m, DATASETS)
    assert module.accepts(m, DATASETS)
    assert module.trained_on(m)  # inferred from its label names, which fix the order of its outputs
    # generic names carry no evidence: nothing is inferred, so they can never be mapped by index
    generic = {**m, "config": {"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}}
    generic.pop("inferred_datasets")
    assert infer_training_datasets(generic, DATASETS)[0] == []
    assert not module.trained_on(generic) and not module.accepts(generic, DATASETS)


def test_dataset_names_match_across_zoos_spelling():
    """FiftyOne slugs ("wider-face"), card names ("WIDER FACE") and Hub ids ("stanfordnlp/imdb") name the
    same datasets as the ones registered here ("wider_face", "imdb")."""
    from modules.base import dataset_key
    from modules.hf import HFTextClassification

    assert dataset_key("WIDER FACE") == dataset_key("wider-face") == dataset_key("CUHK/wider_face") == "widerface"
    datasets = {"rotten_tomatoes": {"compatible_with": ["imdb"]}}
    module = HFTextClassification(dataset="rotten_tomatoes")
    base = {"source": "huggingface", "task": "text-classification"}
    assert module.accepts({**base, "datasets": ["stanfordnlp/imdb"]}, datasets)
    assert module.accepts({**base, "datasets": ["Rotten-Tomatoes"]}, datasets)
    assert module.trained_on({**base, "datasets": ["cornell-movie-review-data/rotten_tomatoes"]})
    assert not module.accepts({**base, "datasets": ["sst2"]}, datasets)


def test_detection_models_match_detection_datasets_only():
    """A detector's categories (COCO's "N/A" gaps and the background ignored) are matched against detection
    datasets only, and a classifier never against a detection dataset with the same names."""
    datasets = {
        "shapes": {"datatype": "image", "task": "object-detection",
                   "classes": [{"label": c} for c in ("rectangle", "ellipse", "triangle")]},
        "shape-photos": {"datatype": "image", "classes": [{"label": c} for c in ("rectangle", "ellipse", "triangle")]},
    }
    detr = {"task": "object-detection",
            "config": {"id2label": {"0": "N/A", "1": "rectangle", "2": "ellipse", "3": "N/A", "4": "triangle"}}}
    assert infer_training_datasets(detr, datasets)[0] == ["shapes"]
    classifier = {"task": "image-classification", "config": {"id2label": {"0": "rectangle", "1": "ellipse", "2": "triangle"}}}
    assert infer_training_datasets(classifier, datasets)[0] == ["shape-photos"]
