"""The store: the only code that talks to MongoDB.

Collections follow the metadata model of the thesis (section 3.2): models, tasks, datasets,
dataset_examples, variants, metrics, references; evaluation data: inferences (one per inference
identity, with runtime and label mapping), predictions (per-sample outputs, chunked), results (one per
result identity: overall, per class, confusion matrix, misclassifications); and runs and failures.
Every write is idempotent by a deterministic ``_id``, so a killed cycle that is restarted never duplicates.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Iterator

import numpy as np
from pymongo import ASCENDING, MongoClient, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, CollectionInvalid, DuplicateKeyError

PREDICTION_CHUNK = 5000
#: At most this many detections per stored chunk: 100,000 x (4 boxes + score + category) x 8 bytes is about
#: 4.8 MB, well under MongoDB's 16 MB document limit (an image never spans two chunks).
DETECTION_CHUNK_DETECTIONS = 100_000
DUPLICATE_KEY = 11000


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


_STR = {"bsonType": "string"}
VALIDATORS: dict[str, dict[str, Any]] = {
    "models": {
        "required": ["name", "source", "status"],
        "properties": {"name": _STR, "source": _STR, "status": {"enum": ["active", "removed"]}},
    },
    "datasets": {
        "required": ["name", "datatype", "classes", "splits", "revision"],
        "properties": {"name": _STR, "datatype": {"enum": ["image", "text"]}, "revision": _STR},
    },
    "inferences": {
        "required": ["model_key", "model_revision", "module", "dataset", "split", "variant", "runtime", "n_samples"],
        "properties": {"model_key": _STR, "model_revision": _STR, "n_samples": {"bsonType": ["int", "long"]}},
    },
    "predictions": {  # classification chunks, or detection chunks (see Store.save_inference)
        "required": ["inference_id", "chunk"],
        "properties": {"inference_id": _STR},
        "anyOf": [
            {"required": ["sample_ids", "y_true", "topk_labels", "topk_scores"]},
            {"required": ["kind", "image_ids", "counts", "boxes", "scores", "category_ids"],
             "properties": {"kind": {"enum": ["detection"]}, "boxes": {"bsonType": "binData"},
                            "scores": {"bsonType": "binData"}, "category_ids": {"bsonType": "binData"}}},
        ],
    },
    "results": {
        "required": [
            "inference_id", "model_key", "model_revision", "module", "processor", "dataset", "split",
            "dataset_revision", "variant", "overall", "created_at",
        ],
        "properties": {"inference_id": _STR, "model_key": _STR, "model_revision": _STR, "overall": {"bsonType": "object"}},
    },
    "failures": {
        "required": ["model_key", "error_class", "reason", "attempts"],
        "properties": {
            "error_class": {
                "enum": [
                    "model_load", "incompatible_library", "unknown_labels", "inference_error", "timeout",
                    "out_of_memory", "data_error", "unsafe_model", "incomplete_weights",
                ]
            }
        },
    },
}

INDEXES: dict[str, list[list[tuple[str, int]]]] = {
    "models": [[("source", 1), ("name", 1)], [("task", 1)], [("status", 1)], [("datasets", 1)]],
    "dataset_examples": [[("dataset", 1), ("class_id", 1)]],
    "inferences": [[("model_key", 1)]],
    "predictions": [[("inference_id", 1), ("chunk", 1)]],
    "results": [[("model_key", 1)], [("dataset", 1), ("split", 1), ("variant", 1)], [("inference_id", 1)]],
    "failures": [[("model_key", 1)], [("error_class", 1)]],
    "runs": [[("started_at", -1)]],
}


class Store:
    """All MongoDB access for zooeval."""

    def __init__(self, uri: str, db_name: str = "zooeval", client: MongoClient | None = None, init_schema: bool = True) -> None:
        self.uri = uri
        self.db_name = db_name
        self.client = client or MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=15000)
        self.db = self.client[db_name]
        if init_schema:
            self.ensure_schema()

    # -- schema ---------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        existing = set(self.db.list_collection_names())
        for name, schema in VALIDATORS.items():
            validator = {"$jsonSchema": {"bsonType": "object", **schema}}
            if name in existing:
                self.db.command("collMod", name, validator=validator)
            else:
                try:
                    self.db.create_collection(name, validator=validator)
                except CollectionInvalid:
                    self.db.command("collMod", name, validator=validator)
        for name, indexes in INDEXES.items():
            for keys in indexes:
                self.db[name].create_index(keys)

    def close(self) -> None:
        self.client.close()

    # -- models ---------------------------------------------------------------------------------
    def upsert_models(self, docs: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Insert or update models by ``_id`` (``source/name``). Returns counts of new and changed (new revision)."""
        now = utcnow()
        docs = list(docs)
        known = {
            d["_id"]: d.get("revision")
            for d in self.db.models.find({"_id": {"$in": [d["_id"] for d in docs]}}, {"revision": 1})
        }
        changed = sum(1 for d in docs if d["_id"] in known and known[d["_id"]] != d.get("revision"))
        ops = []
        for doc in docs:
            doc = dict(doc)
            doc.setdefault("status", "active")
            doc["scraped_at"] = now
            _id = doc.pop("_id")
            ops.append(UpdateOne({"_id": _id}, {"$set": doc, "$setOnInsert": {"first_seen": now}}, upsert=True))
        if not ops:
            return {"new": 0, "changed": 0}
        res = self.db.models.bulk_write(ops, ordered=False)
        return {"new": res.upserted_count, "changed": changed}

    def mark_removed(self, source: str, keep_ids: set[str]) -> int:
        res = self.db.models.update_many(
            {"source": source, "status": "active", "_id": {"$nin": list(keep_ids)}},
            {"$set": {"status": "removed", "removed_at": utcnow()}},
        )
        return res.modified_count

    def iter_models(self, query: dict[str, Any] | None = None, projection: dict | None = None) -> Iterator[dict]:
        q = {"status": "active"}
        q.update(query or {})
        return self.db.models.find(q, projection).sort("_id", ASCENDING)

    def get_model(self, key_or_name: str) -> dict[str, Any] | None:
        doc = self.db.models.find_one({"_id": key_or_name})
        if doc is None:
            doc = self.db.models.find_one({"name": key_or_name}, sort=[("status", ASCENDING)])
        return doc

    # -- datasets and catalogue entities ---------------------------------------------------------
    def upsert_dataset(self, doc: dict[str, Any], examples: list[dict[str, Any]] | None = None) -> None:
        self.db.datasets.replace_one({"_id": doc["name"]}, {**doc, "_id": doc["name"], "updated_at": utcnow()}, upsert=True)
        if examples is not None:
            self.db.dataset_examples.delete_many({"dataset": doc["name"]})
            if examples:
                self.db.dataset_examples.insert_many([{**e, "dataset": doc["name"]} for e in examples])

    def datasets(self) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in self.db.datasets.find()}

    def upsert_named(self, collection: str, docs: Iterable[dict[str, Any]]) -> None:
        """Catalogue entities keyed by name: tasks, variants, metrics, references."""
        ops = [ReplaceOne({"_id": d["name"]}, {**d, "_id": d["name"]}, upsert=True) for d in docs]
        if ops:
            self.db[collection].bulk_write(ops, ordered=False)

    # -- planning -------------------------------------------------------------------------------
    def existing_ids(self, collection: str, ids: list[str], chunk: int = 20000) -> set[str]:
        """Which of ``ids`` exist as ``_id`` in ``collection``: one indexed $in query per chunk."""
        found: set[str] = set()
        coll = self.db[collection]
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            found.update(d["_id"] for d in coll.find({"_id": {"$in": part}}, {"_id": 1}))
        return found

    def parked_failures(self, ids: list[str], max_attempts: int) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 20000):
            part = ids[start : start + 20000]
            found.update(
                d["_id"] for d in self.db.failures.find({"_id": {"$in": part}, "attempts": {"$gte": max_attempts}}, {"_id": 1})
            )
        return found

    # -- predictions ----------------------------------------------------------------------------
    def save_inference(self, inference_id: str, doc: dict[str, Any], preds: dict[str, np.ndarray | list]) -> None:
        """Store per-sample predictions (chunked), then the inference record that marks them complete.

        Both writes are idempotent replaces keyed by id; a crash between them leaves no inference
        record, so the task is simply run again and overwrites the same chunks.

        Classification ``preds``: sample_ids, y_true, topk_labels, topk_scores (one row per sample).
        Detection ``preds`` (recognised by ``image_ids``): image_ids and counts (detections per image), and
        the detections of all images concatenated in image order: boxes (D, 4) xywh pixels, scores (D,),
        category_ids (D,). Each chunk holds whole images (at most PREDICTION_CHUNK images and
        DETECTION_CHUNK_DETECTIONS detections) with kind "detection" and the arrays as little-endian
        binary (float64 boxes and scores, int64 category ids); ``iter_detections`` decodes them.
        """
        if "image_ids" in preds:
            ops = _detection_chunk_ops(inference_id, preds)
            self._save_chunks(inference_id, doc, ops)
            return
        n = len(preds["sample_ids"])
        ops = []
        for c, start in enumerate(range(0, max(n, 1), PREDICTION_CHUNK)):
            sl = slice(start, start + PREDICTION_CHUNK)
            ops.append(
                ReplaceOne(
                    {"_id": f"{inference_id}:{c:06d}"},
                    {
                        "inference_id": inference_id,
                        "chunk": c,
                        "sample_ids": list(preds["sample_ids"][sl]),
                        "y_true": np.asarray(preds["y_true"][sl]).astype(int).tolist(),
                        "topk_labels": np.asarray(preds["topk_labels"][sl]).astype(int).tolist(),
                        "topk_scores": np.asarray(preds["topk_scores"][sl]).astype(float).tolist(),
                    },
                    upsert=True,
                )
            )
        self._save_chunks(inference_id, doc, ops)

    def _save_chunks(self, inference_id: str, doc: dict[str, Any], ops: list[ReplaceOne]) -> None:
        self.db.predictions.bulk_write(ops, ordered=True)
        self.db.predictions.delete_many({"inference_id": inference_id, "chunk": {"$gte": len(ops)}})
        self.db.inferences.replace_one(
            {"_id": inference_id}, {**doc, "_id": inference_id, "n_chunks": len(ops), "created_at": utcnow()}, upsert=True
        )

    def get_inference(self, inference_id: str) -> dict[str, Any] | None:
        return self.db.inferences.find_one({"_id": inference_id})

    def iter_predictions(self, inference_id: str) -> Iterator[dict[str, Any]]:
        return self.db.predictions.find({"inference_id": inference_id}).sort("chunk", ASCENDING)

    def iter_detections(self, inference_id: str) -> Iterator[dict[str, Any]]:
        """The stored detections of an inference, one dict per image in stored order: ``image_id``,
        ``boxes`` (k, 4) float64 xywh, ``scores`` (k,) float64, ``labels`` (k,) int64 category ids (the
        shape pipeline.detection_runner.run_detection returns)."""
        for chunk in self.iter_predictions(inference_id):
            yield from decode_detection_chunk(chunk)

    # -- results --------------------------------------------------------------------------------
    def insert_result(self, result_id: str, doc: dict[str, Any]) -> bool:
        """Insert a result once. Returns False if it was already stored (never overwritten)."""
        try:
            self.db.results.insert_one({**doc, "_id": result_id})
            return True
        except DuplicateKeyError:
            return False

    def results_for_model(self, model_key: str) -> list[dict[str, Any]]:
        return self.latest_results({"model_key": model_key})

    def latest_results(self, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The newest result of each (model, module, dataset, split, variant, processor): what tables and
        exports show. Results of older revisions or processor versions stay stored, superseded, and a result
        not yet re-scored after a version bump is shown until its successor exists."""
        key = {k: f"${k}" for k in ("model_key", "module", "dataset", "split", "variant", "processor")}
        pipeline = [{"$match": query or {}}, {"$sort": {"created_at": -1, "_id": 1}},
                    {"$group": {"_id": key, "doc": {"$first": "$$ROOT"}}}, {"$replaceRoot": {"newRoot": "$doc"}},
                    {"$sort": {"model_name": 1, "dataset": 1, "split": 1, "variant": 1, "processor": 1}}]
        return list(self.db.results.aggregate(pipeline, allowDiskUse=True))

    def iter_results(self, query: dict | None = None) -> Iterator[dict[str, Any]]:
        return self.db.results.find(query or {}).sort("_id", ASCENDING)

    def count(self, collection: str, query: dict | None = None) -> int:
        return self.db[collection].count_documents(query or {})

    # -- failures and runs ----------------------------------------------------------------------
    def record_failure(self, failure_id: str, doc: dict[str, Any]) -> None:
        now = utcnow()
        self.db.failures.update_one(
            {"_id": failure_id},
            {"$set": {**doc, "last_at": now}, "$inc": {"attempts": 1}, "$setOnInsert": {"first_at": now}},
            upsert=True,
        )

    def clear_failure(self, failure_id: str) -> None:
        self.db.failures.delete_one({"_id": failure_id})

    def start_run(self, run_id: str, doc: dict[str, Any]) -> None:
        self.db.runs.insert_one({**doc, "_id": run_id, "started_at": utcnow(), "status": "running"})

    def update_run(self, run_id: str, **fields: Any) -> None:
        self.db.runs.update_one({"_id": run_id}, {"$set": fields})

    def finish_run(self, run_id: str, status: str, counts: dict[str, Any]) -> None:
        self.db.runs.update_one({"_id": run_id}, {"$set": {"status": status, "ended_at": utcnow(), "counts": counts}})

    def last_run(self) -> dict[str, Any] | None:
        return self.db.runs.find_one(sort=[("started_at", -1)])

    # -- graceful stop --------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.db.control.replace_one({"_id": "stop"}, {"_id": "stop", "requested_at": utcnow()}, upsert=True)

    def clear_stop(self) -> None:
        self.db.control.delete_one({"_id": "stop"})

    def stop_requested(self, since: dt.datetime | None = None) -> bool:
        """True when a stop was requested (at or after ``since``: older requests are stale)."""
        q: dict[str, Any] = {"_id": "stop"}
        if since is not None:
            q["requested_at"] = {"$gte": since}
        return self.db.control.find_one(q, {"_id": 1}) is not None


def _detection_chunk_ops(inference_id: str, preds: dict[str, Any]) -> list[ReplaceOne]:
    image_ids = list(preds["image_ids"])
    counts = np.asarray(preds["counts"], dtype=np.int64).reshape(-1)
    boxes = np.asarray(preds["boxes"], dtype="<f8").reshape(-1, 4)
    scores = np.asarray(preds["scores"], dtype="<f8").reshape(-1)
    cats = np.asarray(preds["category_ids"], dtype="<i8").reshape(-1)
    if len(counts) != len(image_ids) or not (int(counts.sum()) == len(boxes) == len(scores) == len(cats)):
        raise ValueError(f"detection predictions of {inference_id}: {len(image_ids)} images, {len(counts)} counts "
                         f"summing to {int(counts.sum())}, {len(boxes)} boxes, {len(scores)} scores, {len(cats)} categories")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    ops, start = [], 0
    while True:
        end = start
        while end < len(image_ids) and (end == start or (end - start < PREDICTION_CHUNK
                                                         and offsets[end + 1] - offsets[start] <= DETECTION_CHUNK_DETECTIONS)):
            end += 1
        a, b = int(offsets[start]), int(offsets[end])
        ops.append(ReplaceOne(
            {"_id": f"{inference_id}:{len(ops):06d}"},
            {
                "inference_id": inference_id,
                "chunk": len(ops),
                "kind": "detection",
                "image_ids": [i.item() if isinstance(i, np.generic) else i for i in image_ids[start:end]],
                "counts": counts[start:end].tolist(),
                "boxes": boxes[a:b].tobytes(),
                "scores": scores[a:b].tobytes(),
                "category_ids": cats[a:b].tobytes(),
            },
            upsert=True,
        ))
        if end >= len(image_ids):
            return ops
        start = end


def decode_detection_chunk(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """One stored detection chunk as per-image prediction dicts (see Store.iter_detections)."""
    if chunk.get("kind") != "detection":
        raise ValueError(f"prediction chunk {chunk.get('_id')!r} is not a detection chunk")
    boxes = np.frombuffer(chunk["boxes"], dtype="<f8").reshape(-1, 4).astype(np.float64)
    scores = np.frombuffer(chunk["scores"], dtype="<f8").astype(np.float64)
    cats = np.frombuffer(chunk["category_ids"], dtype="<i8").astype(np.int64)
    out, at = [], 0
    for image_id, k in zip(chunk["image_ids"], chunk["counts"]):
        out.append({"image_id": image_id, "boxes": boxes[at : at + k], "scores": scores[at : at + k],
                    "labels": cats[at : at + k]})
        at += k
    return out


__all__ = ["Store", "decode_detection_chunk", "DETECTION_CHUNK_DETECTIONS", "BulkWriteError", "DUPLICATE_KEY", "PREDICTION_CHUNK", "utcnow"]
