"""``zooeval fiftyone MODEL --dataset D [--variant V]``: a FiftyOne dataset built from a result's stored
predictions (no inference), for browsing the samples in the FiftyOne App.

Each sample of the split (its image, from the folder the result was computed on: the variant cache for a
variant) gets ``ground_truth`` and ``predictions`` (top-1 class and its score, the other stored top-k classes
in ``topk``) as ``fo.Classification``; FiftyOne's own ``evaluate_classifications`` runs on them under the eval
key ``zooeval``, so the App shows per-sample correctness, and its numbers equal zooeval's stored result.

FiftyOne keeps its datasets in MongoDB: ``FIFTYONE_DATABASE_URI`` is zooeval's server (service.mongo sets it),
in FiftyOne's own database (``fiftyone`` unless ``FIFTYONE_DATABASE_NAME`` says otherwise)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from core.store import Store
from service.web import media


class FiftyOneError(ValueError):
    """The model, dataset or result cannot be shown in FiftyOne (the message says why)."""


def find_result(store: Store, model: str, dataset: str, variant: str = "original",
                 split: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model document and its current classification result on (dataset, split, variant)."""
    doc = store.get_model(model)
    if doc is None:
        raise FiftyOneError(f"no model {model!r} in the store (`zooeval models` lists them)")
    query: dict[str, Any] = {"model_key": doc["_id"], "dataset": dataset, "variant": variant}
    if split:
        query["split"] = split
    results = [r for r in store.latest_results(query) if r.get("processor") == "classification"]
    if not results:
        have = sorted({f"{r['dataset']}/{r['split']} ({r['variant']})" for r in store.latest_results(
            {"model_key": doc["_id"], "processor": "classification"})})
        raise FiftyOneError(f"{doc['name']} has no classification result on {dataset}"
                            f"{'/' + split if split else ''} ({variant}); it has: {', '.join(have) or 'none'}")
    if len({r["split"] for r in results}) > 1:
        raise FiftyOneError(f"{doc['name']} has results on several splits of {dataset}: "
                            f"{', '.join(sorted({r['split'] for r in results}))}; choose one with --split")
    return doc, results[0]


def dataset_name(model_doc: dict[str, Any], result: dict[str, Any]) -> str:
    """The FiftyOne dataset's name: zooeval, the model, dataset, split and variant."""
    text = f"zooeval-{model_doc['name']}-{result['dataset']}-{result['split']}-{result['variant']}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def build_dataset(store: Store, home: Path, model: str, dataset: str, variant: str = "original",
                  split: str | None = None, log: Callable[[str], None] = print):
    """Build (or rebuild) the FiftyOne dataset of one result. Returns (fo.Dataset, the stored result,
    FiftyOne's ClassificationResults)."""
    from tasks.classification import IMAGE_CLASSIFICATION

    model_doc, result = find_result(store, model, dataset, variant, split)
    dataset_doc = store.datasets().get(dataset)
    if dataset_doc is None:
        raise FiftyOneError(f"dataset {dataset!r} is not registered")
    if dataset_doc.get("datatype") != "image":
        raise FiftyOneError(f"{dataset} holds {dataset_doc.get('datatype')} samples; the FiftyOne App shows images")
    folder, note = media.sample_folder(dataset_doc, result, home)
    if folder is None:
        raise FiftyOneError(f"{dataset}: {note}")
    if note:
        log(f"note: {note}")
    rows = media.split_rows(folder, result["split"])
    predictions = IMAGE_CLASSIFICATION.decode(list(store.iter_predictions(result["inference_id"])))
    if len(predictions) == 0:
        raise FiftyOneError(f"the result {result['_id']} has no stored predictions")
    classes = [str(c["label"]) for c in dataset_doc["classes"]]

    import fiftyone as fo

    samples = []
    for i, sample_id in enumerate(predictions.sample_ids):
        row = rows.get(sample_id)
        path = media.safe_file(folder, str(row["file"])) if row and row.get("file") else None
        if path is None:
            raise FiftyOneError(f"sample {sample_id!r} of {dataset}/{result['split']} has no image in {folder}")
        top = [(classes[int(c)], float(s)) for c, s in zip(predictions.topk_labels[i], predictions.topk_scores[i])]
        samples.append(fo.Sample(
            filepath=str(path), zooeval_id=str(sample_id),
            ground_truth=fo.Classification(label=classes[int(predictions.y_true[i])]),
            predictions=fo.Classification(label=top[0][0], confidence=top[0][1]),
            topk=fo.Classifications(classifications=[fo.Classification(label=c, confidence=s) for c, s in top])))
    name = dataset_name(model_doc, result)
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    fo_dataset = fo.Dataset(name, persistent=True)
    fo_dataset.add_samples(samples, progress=False)
    fo_dataset.info = {"zooeval_result": result["_id"], "model": model_doc["_id"], "model_revision":
                       result.get("model_revision"), "variant": result["variant"], "classes": classes}
    fo_dataset.save()
    evaluation = fo_dataset.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="zooeval",
                                                     classes=classes, progress=False)
    log(f"FiftyOne dataset {name!r}: {len(samples)} samples of {dataset}/{result['split']} ({result['variant']}), "
        f"accuracy {evaluation.metrics()['accuracy']:.4f} (zooeval: {result['overall']['accuracy']:.4f})")
    return fo_dataset, result, evaluation


def launch(fo_dataset, port: int = 5151, wait: bool = True):
    """The FiftyOne App on 127.0.0.1:``port`` showing ``fo_dataset``; with ``wait``, until interrupted."""
    import fiftyone as fo

    session = fo.launch_app(fo_dataset, address="127.0.0.1", port=port, remote=True, auto=False)
    if wait:
        session.wait(-1)
    return session
