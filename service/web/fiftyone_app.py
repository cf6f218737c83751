"""``zooeval fiftyone MODEL --dataset D [--variant V]``: a FiftyOne dataset built from a result's stored
predictions (no inference), for browsing the samples in the FiftyOne App.

Image classification: each sample of the split (its image, from the folder the result was computed on: the variant
cache for a variant) gets ``ground_truth`` and ``predictions`` (top-1 class and its score, the other stored top-k
classes in ``topk``) as ``fo.Classification``; FiftyOne's own ``evaluate_classifications`` runs on them.

Object detection: each image of the split (of the variant dataset, whose boxes moved with the image) gets its
ground-truth boxes (``iscrowd`` kept) and the stored detections with their scores as ``fo.Detections`` (boxes
relative to the image size, as FiftyOne stores them); FiftyOne's own COCO-style ``evaluate_detections`` runs on
them (mAP over IoU 0.50:0.95, at most 100 detections per image, as pycocotools).

Either evaluation runs under the eval key ``zooeval``, so the App shows per-sample (per-box) correctness, and its
numbers equal zooeval's stored result.

FiftyOne keeps its datasets in MongoDB: ``FIFTYONE_DATABASE_URI`` is zooeval's server (service.mongo sets it),
in FiftyOne's own database (``fiftyone`` unless ``FIFTYONE_DATABASE_NAME`` says otherwise)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from core.store import Store
from service.web import media

#: the processors whose results the App shows (their stored predictions become FiftyOne labels)
SHOWN_PROCESSORS = ("classification", "detection")


class FiftyOneError(ValueError):
    """The model, dataset or result cannot be shown in FiftyOne (the message says why)."""


def find_result(store: Store, model: str, dataset: str, variant: str = "original",
                 split: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model document and its current classification or detection result on (dataset, split, variant)."""
    doc = store.get_model(model)
    if doc is None:
        raise FiftyOneError(f"no model {model!r} in the store (`zooeval models` lists them)")
    query: dict[str, Any] = {"model_key": doc["_id"], "dataset": dataset, "variant": variant}
    if split:
        query["split"] = split
    results = [r for r in store.latest_results(query) if r.get("processor") in SHOWN_PROCESSORS]
    if not results:
        have = sorted({f"{r['dataset']}/{r['split']} ({r['variant']})" for r in store.latest_results(
            {"model_key": doc["_id"], "processor": {"$in": list(SHOWN_PROCESSORS)}})})
        raise FiftyOneError(f"{doc['name']} has no classification or detection result on {dataset}"
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
    FiftyOne's evaluation results: ClassificationResults or COCODetectionResults)."""
    model_doc, result = find_result(store, model, dataset, variant, split)
    dataset_doc = store.datasets().get(dataset)
    if dataset_doc is None:
        raise FiftyOneError(f"dataset {dataset!r} is not registered")
    if dataset_doc.get("datatype") != "image":
        raise FiftyOneError(f"{dataset} holds {dataset_doc.get('datatype')} samples; the FiftyOne App shows images")
    chunks = list(store.iter_predictions(result["inference_id"]))
    if not chunks:
        raise FiftyOneError(f"the result {result['_id']} has no stored predictions")
    detection = result["processor"] == "detection"
    samples, classes = (_detection_samples if detection else _classification_samples)(dataset_doc, result, chunks, home, log)

    import fiftyone as fo

    name = dataset_name(model_doc, result)
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    fo_dataset = fo.Dataset(name, persistent=True)
    fo_dataset.add_samples(samples, progress=False)
    fo_dataset.info = {"zooeval_result": result["_id"], "model": model_doc["_id"], "model_revision":
                       result.get("model_revision"), "variant": result["variant"], "classes": classes}
    fo_dataset.save()
    if detection:
        evaluation = fo_dataset.evaluate_detections(
            "predictions", gt_field="ground_truth", eval_key="zooeval", method="coco", compute_mAP=True,
            classes=classes, progress=False)
        mine, theirs = "AP", f"mAP {evaluation.mAP():.4f}"
    else:
        evaluation = fo_dataset.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="zooeval",
                                                         classes=classes, progress=False)
        mine, theirs = "accuracy", f"accuracy {evaluation.metrics()['accuracy']:.4f}"
    log(f"FiftyOne dataset {name!r}: {len(samples)} samples of {dataset}/{result['split']} ({result['variant']}), "
        f"{theirs} (zooeval: {mine} {result['overall'][mine]:.4f})")
    return fo_dataset, result, evaluation


def _classification_samples(dataset_doc: dict[str, Any], result: dict[str, Any], chunks: list[dict[str, Any]],
                            home: Path, log: Callable[[str], None]) -> tuple[list[Any], list[str]]:
    """A sample per stored prediction: its image, ground truth, top-1 prediction and the stored top-k."""
    import fiftyone as fo

    from tasks.classification import IMAGE_CLASSIFICATION

    folder, note = media.sample_folder(dataset_doc, result, home)
    if folder is None:
        raise FiftyOneError(f"{dataset_doc['name']}: {note}")
    if note:
        log(f"note: {note}")
    rows = media.split_rows(folder, result["split"])
    predictions = IMAGE_CLASSIFICATION.decode(chunks)
    classes = [str(c["label"]) for c in dataset_doc["classes"]]
    samples = []
    for i, sample_id in enumerate(predictions.sample_ids):
        row = rows.get(sample_id)
        path = media.safe_file(folder, str(row["file"])) if row and row.get("file") else None
        if path is None:
            raise FiftyOneError(f"sample {sample_id!r} of {dataset_doc['name']}/{result['split']} has no image in {folder}")
        top = [(classes[int(c)], float(s)) for c, s in zip(predictions.topk_labels[i], predictions.topk_scores[i])]
        samples.append(fo.Sample(
            filepath=str(path), zooeval_id=str(sample_id),
            ground_truth=fo.Classification(label=classes[int(predictions.y_true[i])]),
            predictions=fo.Classification(label=top[0][0], confidence=top[0][1]),
            topk=fo.Classifications(classifications=[fo.Classification(label=c, confidence=s) for c, s in top])))
    return samples, classes


def _detection_samples(dataset_doc: dict[str, Any], result: dict[str, Any], chunks: list[dict[str, Any]],
                       home: Path, log: Callable[[str], None]) -> tuple[list[Any], list[str]]:
    """A sample per stored image: the (variant) image, its ground-truth boxes and the stored detections."""
    import fiftyone as fo

    from core.data import DataError
    from perturbations import get_perturbation
    from tasks.detection import DETECTION

    if result.get("dataset_revision") not in (None, dataset_doc.get("revision")):
        raise FiftyOneError(f"{dataset_doc['name']} changed since this result (revision {result['dataset_revision']} "
                            f"-> {dataset_doc.get('revision')}): its boxes may no longer match; `zooeval run` evaluates "
                            "the new revision")
    perturbation = None
    if result["variant"] != "original":
        try:
            perturbation = get_perturbation(result["variant"])
        except KeyError:
            raise FiftyOneError(f"the variant {result['variant']!r} is not an installed perturbation") from None
        if perturbation.version != result.get("variant_version") or perturbation.params != (result.get("variant_params") or {}):
            raise FiftyOneError(f"the installed {result['variant']} perturbation is not the one of this result "
                                f"(version {perturbation.version} vs {result.get('variant_version')}): the images "
                                "would not be the ones evaluated")
    try:
        ds = DETECTION.open_variant(DETECTION.open_dataset(dataset_doc["path"]), dataset_doc["revision"], perturbation,
                                    int(result.get("variant_seed") or 0), Path(home) / "variants")
    except (DataError, OSError, ValueError) as exc:
        raise FiftyOneError(f"{dataset_doc['name']} ({result['variant']}): {exc}") from None
    name_of = dict(zip(ds.category_ids, ds.classes))
    images = {img["id"]: img for img in ds.images(result["split"])}
    annotations = ds.annotations(result["split"])

    def box(xywh, img) -> list[float]:
        x, y, w, h = (float(v) for v in xywh)
        return [x / img["width"], y / img["height"], w / img["width"], h / img["height"]]

    samples = []
    for p in DETECTION.decode(chunks):
        img = images.get(p["image_id"])
        if img is None:
            raise FiftyOneError(f"image {p['image_id']!r} of the stored predictions is not in "
                                f"{dataset_doc['name']}/{result['split']}")
        gt = [fo.Detection(label=name_of[a["category_id"]], bounding_box=box(a["bbox"], img),
                           iscrowd=int(a.get("iscrowd", 0))) for a in annotations.get(img["id"], [])]
        pred = [fo.Detection(label=name_of[int(c)], bounding_box=box(b, img), confidence=float(s))
                for b, s, c in zip(p["boxes"], p["scores"], p["labels"])]
        samples.append(fo.Sample(filepath=str(ds.image_path(img, result["split"])), zooeval_id=str(img["id"]),
                                 ground_truth=fo.Detections(detections=gt), predictions=fo.Detections(detections=pred)))
    return samples, list(ds.classes)


def launch(fo_dataset, port: int = 5151, wait: bool = True):
    """The FiftyOne App on 127.0.0.1:``port`` showing ``fo_dataset``; with ``wait``, until interrupted."""
    import fiftyone as fo

    session = fo.launch_app(fo_dataset, address="127.0.0.1", port=port, remote=True, auto=False)
    if wait:
        session.wait(-1)
    return session
