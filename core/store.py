"""The store: the only code that talks to MongoDB.

Collections follow the metadata model of the thesis (section 3.2): models, tasks, datasets,
dataset_examples, variants, metrics, references; evaluation data: inferences (one per inference
identity, with runtime and label mapping), predictions (per-sample outputs, chunked), results (one per
result identity: overall, per class, confusion matrix, misclassifications); claims (the verdict on each
value a model card claims, one per model revision and claim); and runs and failures.
Every write is idempotent by a deterministic ``_id``, so a killed cycle that is restarted never duplicates.
"""
from __future__ import annotations

import datetime as dt
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from pymongo import ASCENDING, DeleteMany, InsertOne, MongoClient, ReplaceOne, UpdateOne, WriteConcern
from pymongo.errors import BulkWriteError, CollectionInvalid, DuplicateKeyError, OperationFailure, PyMongoError, WriteError
from pymongo.results import BulkWriteResult

DUPLICATE_KEY = 11000
NAMESPACE_EXISTS = 48
INDEX_NOT_FOUND = 27
#: a write acknowledged once applied on the primary (see Store.save_tasks)
APPLIED = WriteConcern(w=1)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


#: MongoDB error codes of a server shutting down, stepping down or not (yet) primary
_RETRYABLE_CODES = {91, 189, 10107, 11600, 11602, 13435, 13436}


def database_unavailable(exc: BaseException) -> bool:
    """Whether a store call failed because MongoDB is briefly unreachable (restarting, stepping down), so
    an idempotent call may be retried."""
    from pymongo.errors import ConnectionFailure, OperationFailure

    if isinstance(exc, ConnectionFailure):  # AutoReconnect, NotPrimaryError, ServerSelectionTimeoutError, ...
        return True
    return isinstance(exc, OperationFailure) and exc.code in _RETRYABLE_CODES


def _write_errors(collection: Any, ops: list[Any]) -> dict[int, Exception]:
    """Send ``ops`` as one unordered bulk write; the server's error for each operation it refused, by the operation's
    index. A write-concern error (the batch applied but not confirmed durable) is raised, as is any error that is not
    per operation."""
    try:
        collection.bulk_write(ops, ordered=False)
        return {}
    except BulkWriteError as exc:
        if exc.details.get("writeConcernErrors"):
            raise
        return {error["index"]: WriteError(error.get("errmsg", "write refused"), error.get("code"), error)
                for error in exc.details.get("writeErrors", [])}


_STR = {"bsonType": "string"}
VALIDATORS: dict[str, dict[str, Any]] = {
    "models": {
        "required": ["name", "source", "status"],
        "properties": {"name": _STR, "source": _STR, "status": {"enum": ["active", "removed"]}},
    },
    "datasets": {
        "required": ["name", "datatype", "classes", "splits", "revision"],
        "properties": {"name": _STR, "task": _STR, "datatype": _STR, "revision": _STR},
    },
    "inferences": {
        "required": ["model_key", "model_revision", "module", "dataset", "split", "variant", "runtime", "n_samples"],
        "properties": {"model_key": _STR, "model_revision": _STR, "n_samples": {"bsonType": ["int", "long"]}},
    },
    "predictions": {  # chunks in the stored form of their task kind (tasks/*.py encode / decode)
        "required": ["inference_id", "chunk"],
        "properties": {"inference_id": _STR, "chunk": {"bsonType": ["int", "long"]}},
    },
    "results": {
        "required": [
            "inference_id", "model_key", "model_revision", "module", "processor", "dataset", "split",
            "dataset_revision", "variant", "overall", "created_at",
        ],
        "properties": {"inference_id": _STR, "model_key": _STR, "model_revision": _STR, "overall": {"bsonType": "object"}},
    },
    "claims": {  # one verdict per (model revision, claim position); cards.verdicts.VERDICTS
        "required": ["model_key", "model_revision", "position", "claim", "verdict", "reason", "judged_at"],
        "properties": {
            "model_key": _STR, "model_revision": _STR, "position": _STR, "claim": {"bsonType": "object"},
            "verdict": {"enum": ["confirmed", "contradicted", "not comparable", "not yet measured"]},
        },
    },
    "failures": {
        "required": ["model_key", "error_class", "reason", "attempts"],
        "properties": {
            "error_class": {
                "enum": [
                    "model_load", "incompatible_library", "unknown_labels", "inference_error", "timeout",
                    "out_of_memory", "data_error", "unsafe_model", "incomplete_weights", "processor_error",
                ]
            }
        },
    },
}

INDEXES: dict[str, list[list[tuple[str, int]]]] = {
    "models": [[("source", 1), ("name", 1)], [("task", 1)], [("status", 1)], [("datasets", 1)], [("n_claims", 1)],
               [("changed_at", 1)]],
    "dataset_examples": [[("dataset", 1), ("class_id", 1)]],
    "inferences": [[("model_key", 1)]],
    "predictions": [[("inference_id", 1), ("chunk", 1)]],
    # (model_key, _id): a model's result ids read from the index alone (planning: Store.missing_results)
    "results": [[("model_key", 1), ("_id", 1)], [("dataset", 1), ("split", 1), ("variant", 1)], [("inference_id", 1)]],
    "failures": [[("model_key", 1)], [("error_class", 1)], [("module", 1), ("retry_after", 1)]],
    "claims": [[("model_key", 1), ("model_revision", 1)], [("verdict", 1)]],
    "runs": [[("started_at", -1)]],
}


SPARSE_INDEXES = {"models": [[("details_pending", 1)], [("access", 1)]]}
#: indexes that one in INDEXES serves (it starts with their keys): dropped where an older store has them
SUPERSEDED_INDEXES = {"results": ["model_key_1"]}


@dataclass
class Update:
    """A change to the documents ``filter`` selects: fields to set, to unset and to increment, and (with
    ``upsert``) the fields a new document gets."""

    filter: dict[str, Any]
    set: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    inc: dict[str, Any] = field(default_factory=dict)
    set_on_insert: dict[str, Any] = field(default_factory=dict)
    upsert: bool = False

    def operation(self, also_set: dict[str, Any] | None = None) -> UpdateOne:
        """The bulk-write operation; ``also_set``: more fields to set."""
        doc: dict[str, Any] = {}
        for op, value in (("$set", {**self.set, **(also_set or {})}), ("$unset", {k: "" for k in self.unset}),
                          ("$inc", self.inc), ("$setOnInsert", self.set_on_insert)):
            if value:
                doc[op] = value
        return UpdateOne(self.filter, doc, upsert=self.upsert)


def _may_change(old: dict[str, Any] | None, update: Update) -> bool:
    """Whether ``update`` may change a planning field of the model document ``old`` (None: not read, or new)."""
    planned = lambda key: key.split(".")[0] in Store.PLANNING_FIELDS  # noqa: E731
    if old is None or any(planned(k) for k in (*update.inc, *update.unset)):
        return True
    for key, value in update.set.items():
        current: Any = old
        for part in key.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if planned(key) and current != value:
            return True
    return False


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
                except (CollectionInvalid, OperationFailure) as exc:  # created meanwhile by another process
                    if isinstance(exc, OperationFailure) and exc.code != NAMESPACE_EXISTS:
                        raise
                    self.db.command("collMod", name, validator=validator)
        for name, indexes in INDEXES.items():
            for keys in indexes:
                self.db[name].create_index(keys)
        for keys in SPARSE_INDEXES["models"]:  # only the few models in such a state carry the field
            self.db.models.create_index(keys, sparse=True)
        for name, index_names in SUPERSEDED_INDEXES.items():
            for index_name in set(index_names) & set(self.db[name].index_information()):
                try:
                    self.db[name].drop_index(index_name)
                except OperationFailure as exc:  # dropped meanwhile by another process
                    if exc.code != INDEX_NOT_FOUND:
                        raise
        # models stored before planning watermarks (or written around the store) get a changed_at once
        if self.db.models.find_one({"changed_at": None}, {"_id": 1}):
            with self._model_writes() as stamp:
                self.db.models.update_many({"changed_at": None}, {"$set": {"changed_at": stamp}})

    def close(self) -> None:
        self.client.close()

    # -- models ---------------------------------------------------------------------------------
    def upsert_models(self, docs: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Insert or update models by ``_id`` (``source/name``). Returns counts of new and changed (new revision).
        ``changed_at`` (see ``_model_writes``) is set when a model is inserted or a field planning reads changes
        (``PLANNING_FIELDS``), not on a scrape that changes nothing: planning watermarks rely on it."""
        now = utcnow()
        docs = list(docs)
        known = {d["_id"]: d for d in self.db.models.find({"_id": {"$in": [d["_id"] for d in docs]}},
                                                          dict.fromkeys(self.PLANNING_FIELDS, 1))}
        changed = sum(1 for d in docs if d["_id"] in known and known[d["_id"]].get("revision") != d.get("revision"))
        ops: list[Update] = []
        stamped: list[bool] = []
        for doc in docs:
            doc = dict(doc)
            doc.setdefault("status", "active")
            doc["scraped_at"] = now
            _id = doc.pop("_id")
            old = known.get(_id)
            ops.append(Update({"_id": _id}, set=doc, set_on_insert={"first_seen": now}, upsert=True))
            stamped.append(old is None or any(old.get(f) != doc[f] for f in self.PLANNING_FIELDS if f in doc))
        if not ops:
            return {"new": 0, "changed": 0}
        res = self._write_models(ops, stamped)
        return {"new": res.upserted_count, "changed": changed}

    def mark_removed(self, source: str, keep_ids: set[str]) -> int:
        res = self.db.models.update_many(
            {"source": source, "status": "active", "_id": {"$nin": list(keep_ids)}},
            {"$set": {"status": "removed", "removed_at": utcnow()}},
        )
        return res.modified_count

    def iter_models(self, query: dict[str, Any] | None = None, projection: dict | None = None,
                    limit: int | None = None) -> Iterator[dict]:
        """The active models matching ``query``, by id."""
        q = {"status": "active"}
        q.update(query or {})
        cursor = self.db.models.find(q, projection).sort("_id", ASCENDING)
        return cursor.limit(limit) if limit else cursor

    def find_models(self, query: dict[str, Any], projection: dict | None = None,
                    sort: list[tuple[str, int]] | None = None) -> list[dict[str, Any]]:
        """Models of any status matching ``query`` (a MongoDB filter), optionally sorted."""
        cursor = self.db.models.find(query, projection)
        return list(cursor.sort(sort) if sort else cursor)

    def update_models(self, updates: list[Update], before: dict[str, dict[str, Any]] | None = None) -> None:
        """Apply many model updates at once (unordered). Models whose planning fields (``PLANNING_FIELDS``) an
        update changes, or that an upsert may insert, get a new ``changed_at`` (see ``_model_writes``) in the
        same write. ``before``: the models as the caller has just read them (by id, with at least the planning
        fields the updates set), which saves reading them again; a field it lacks counts as changed."""
        if not updates:
            return
        touched = [u for u in updates if u.upsert or any(k.split(".")[0] in self.PLANNING_FIELDS
                                                         for k in (*u.set, *u.unset, *u.inc))]
        if before is None:
            ids = [u.filter["_id"] for u in touched if isinstance(u.filter.get("_id"), str)]
            before = {d["_id"]: d for d in self.db.models.find({"_id": {"$in": ids}},
                                                               dict.fromkeys(self.PLANNING_FIELDS, 1))}
        stamped = {id(u) for u in touched if _may_change(before.get(u.filter.get("_id")), u)}
        self._write_models(updates, [id(u) in stamped for u in updates])

    def _write_models(self, updates: list[Update], stamped: list[bool]) -> BulkWriteResult:
        """Bulk-write model ``updates`` (unordered); those ``stamped`` also set ``changed_at`` (see
        ``_model_writes``)."""
        if not any(stamped):
            return self.db.models.bulk_write([u.operation() for u in updates], ordered=False)
        with self._model_writes() as stamp:
            return self.db.models.bulk_write([u.operation({"changed_at": stamp} if s else None)
                                              for u, s in zip(updates, stamped)], ordered=False)

    def update_models_where(self, query: dict[str, Any], fields: dict[str, Any]) -> int:
        """Set ``fields`` on every model ``query`` selects; returns how many changed. A change to a planning field
        (``PLANNING_FIELDS``) sets ``changed_at`` too."""
        if not any(k.split(".")[0] in self.PLANNING_FIELDS for k in fields):
            return self.db.models.update_many(query, {"$set": fields}).modified_count
        with self._model_writes() as stamp:
            return self.db.models.update_many(query, {"$set": {**fields, "changed_at": stamp}}).modified_count

    def insert_new_models(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert models believed new (faster than upserts), with their ``changed_at`` (see ``_model_writes``);
        returns those another writer inserted meanwhile."""
        if not docs:
            return []
        duplicates: list[dict[str, Any]] = []
        with self._model_writes() as stamp:
            try:
                self.db.models.bulk_write([InsertOne({**d, "changed_at": stamp}) for d in docs], ordered=False)
            except BulkWriteError as exc:
                if any(e["code"] != DUPLICATE_KEY for e in exc.details["writeErrors"]):
                    raise
                duplicates = [docs[e["index"]] for e in exc.details["writeErrors"]]
        return duplicates

    @contextmanager
    def _model_writes(self) -> Iterator[dt.datetime]:
        """The ``changed_at`` for models written inside the block. The block is registered in flight (in
        ``model_writes_in_flight``, with the server's time) before the stamp is read from the server's clock, and
        a planning pass takes no watermark later than the oldest registration it sees (``planning_as_of``). So a
        model this block writes after a pass read past it is visited by the next pass: either the pass saw the
        registration, or the registration (and so the stamp) came after the pass's start."""
        batch_id = uuid.uuid4().hex
        self.db.model_writes_in_flight.update_one({"_id": batch_id}, {"$currentDate": {"since": True}}, upsert=True)
        try:
            yield self.server_time()
        finally:
            self.db.model_writes_in_flight.delete_one({"_id": batch_id})

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

    #: the most stored result ids ``missing_results`` reads as one array (about 11.5 MB of a reply's 16 MB)
    IDS_PER_REPLY = 150_000

    def missing_results(self, result_ids: list[str], model_keys: list[str]) -> list[str]:
        """Those of ``result_ids`` (results of the models ``model_keys``) not stored, in their order. The models'
        stored result ids are read from the (model_key, _id) index alone, as one array (a few client-side objects,
        not one document per id); those not among them are looked up by ``_id`` (a result stored under another
        model's key). Cheaper than ``existing_ids`` when most are stored."""
        match = {"$match": {"model_key": {"$in": model_keys}}}
        reply = list(self.db.results.aggregate([match, {"$limit": self.IDS_PER_REPLY},
                                                {"$group": {"_id": None, "ids": {"$push": "$_id"}}}]))
        stored = set(reply[0]["ids"]) if reply else set()
        if len(stored) >= self.IDS_PER_REPLY:  # more than one array may hold: read them as documents
            stored = {d["_id"] for d in self.db.results.find(match["$match"], {"_id": 1})}
        unseen = [rid for rid in result_ids if rid not in stored]
        elsewhere = self.existing_ids("results", unseen) if unseen else set()
        return [rid for rid in unseen if rid not in elsewhere]

    def failure_states(self, ids: list[str], max_attempts: int, chunk: int = 20000) -> tuple[set[str], set[str]]:
        """Of the tasks ``ids``: those not to be tried now (failed for good, ``permanent``; at least
        ``max_attempts`` times; or recently, before their ``retry_after``), and those with a stored failure at all
        (whose failure a success must clear)."""
        now = utcnow()
        blocked: set[str] = set()
        failed: set[str] = set()
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            for d in self.db.failures.find({"_id": {"$in": part}}, {"permanent": 1, "attempts": 1, "retry_after": 1}):
                failed.add(d["_id"])
                retry_after = d.get("retry_after")  # tz-aware: the client is tz_aware
                if d.get("permanent") or (d.get("attempts") or 0) >= max_attempts or (retry_after and retry_after > now):
                    blocked.add(d["_id"])
        return blocked, failed

    # -- predictions ----------------------------------------------------------------------------
    def save_inference(self, inference_id: str, doc: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
        """Store one inference's prediction chunks and its record (``save_tasks`` for one task, without results);
        raises the server's error when it refuses a write."""
        _, refused = self.save_tasks([(inference_id, doc, chunks)], [], [])
        if refused:
            raise refused[inference_id]

    def save_tasks(self, inferences: list[tuple[str, dict[str, Any], list[dict[str, Any]]]],
                   results: list[tuple[str, str, dict[str, Any]]],
                   cleared_failures: list[str]) -> tuple[set[str], dict[str, Exception]]:
        """Store finished tasks in one round trip per kind of write, whatever their number: their prediction chunks
        (``inferences``: (inference id, record, chunks), a chunk's content being its task kind's stored form), then the
        inference records that mark those chunks complete, then their ``results`` ((inference id, result id,
        document), each inserted once: one already stored is left as it is), then the removal of the stored failures
        of the inference ids in ``cleared_failures`` (tasks that succeeded this time). Returns the result ids
        inserted and, per inference id, the error of a write the server refused: that task's later writes are not
        sent (no inference record over refused chunks, no result for a refused record, its failure not cleared), the
        other tasks' are.

        Every write is idempotent by id (a chunk is ``<inference id>:<chunk number>``; chunks an earlier attempt left
        beyond this one's count are removed in the same round trip), so a crash between them leaves at worst chunks
        without their record, or a record without its results: the next cycle runs or re-scores that task again.
        Chunks and records are acknowledged once applied (``w=1``); the results are written with the client's default
        concern (majority on a replica set), and a write is majority-committed only once every write applied before
        it is (one oplog, committed in order): a result is never reported stored before the predictions it was
        computed from, and the whole batch pays one durable-write wait."""
        refused: dict[str, Exception] = {}

        def send(collection: Any, ops: list[Any], owners: list[str]) -> None:
            """One bulk write; a refused operation refuses its owner's task (``owners[i]``: operation i's; the
            task's first error is kept)."""
            for i, error in _write_errors(collection, ops).items():
                refused.setdefault(owners[i], error)

        if inferences:
            ops: list[Any] = []
            owners: list[str] = []
            for inference_id, _, chunks in inferences:
                ops += [ReplaceOne({"_id": f"{inference_id}:{c:06d}"}, {**chunk, "inference_id": inference_id, "chunk": c},
                                   upsert=True) for c, chunk in enumerate(chunks)]
                owners += [inference_id] * len(chunks)
            for inference_id, _, chunks in inferences:
                ops.append(DeleteMany({"inference_id": inference_id, "chunk": {"$gte": len(chunks)}}))
                owners.append(inference_id)
            send(self.db.predictions.with_options(write_concern=APPLIED), ops, owners)
            now = utcnow()
            records = [(inference_id, ReplaceOne({"_id": inference_id}, {**doc, "_id": inference_id, "n_chunks": len(chunks),
                                                                         "created_at": now}, upsert=True))
                       for inference_id, doc, chunks in inferences if inference_id not in refused]
            if records:
                send(self.db.inferences.with_options(write_concern=APPLIED), [op for _, op in records],
                     [inference_id for inference_id, _ in records])
        to_insert = [(inference_id, result_id, doc) for inference_id, result_id, doc in results if inference_id not in refused]
        written: set[str] = set()
        if to_insert:
            errors = _write_errors(self.db.results, [InsertOne({**doc, "_id": result_id}) for _, result_id, doc in to_insert])
            for i, (inference_id, result_id, _) in enumerate(to_insert):
                error = errors.get(i)
                if error is None:
                    written.add(result_id)
                elif getattr(error, "code", None) != DUPLICATE_KEY:  # (a result already stored stays as it is)
                    refused.setdefault(inference_id, error)
        cleared = [inference_id for inference_id in cleared_failures if inference_id not in refused]
        if cleared:
            self.db.failures.delete_many({"_id": {"$in": cleared}})
        return written, refused

    def get_inference(self, inference_id: str) -> dict[str, Any] | None:
        return self.db.inferences.find_one({"_id": inference_id})

    def iter_predictions(self, inference_id: str) -> Iterator[dict[str, Any]]:
        """An inference's stored chunks, in order (the task kind decodes them)."""
        return self.db.predictions.find({"inference_id": inference_id}).sort("chunk", ASCENDING)

    # -- results --------------------------------------------------------------------------------
    def insert_result(self, result_id: str, doc: dict[str, Any]) -> bool:
        """Insert a result once. Returns False if it was already stored (never overwritten)."""
        try:
            self.db.results.insert_one({**doc, "_id": result_id})
            return True
        except DuplicateKeyError:
            return False

    def result_model_keys(self, query: dict[str, Any] | None = None) -> list[str]:
        """The models with at least one result matching ``query``."""
        return self.db.results.distinct("model_key", query or {})

    def count_by_model(self, collection: str) -> dict[str, int]:
        """Documents per model in ``collection`` ("results" or "failures")."""
        return {d["_id"]: d["n"] for d in self.db[collection].aggregate([{"$group": {"_id": "$model_key", "n": {"$sum": 1}}}])}

    def run_progress(self, run_id: str, field: str) -> tuple[dict[str, int], dict[str, int]]:
        """Of one run, per value of ``field`` (model_key or dataset): the tasks done (with a result) and failed."""
        done = {d["_id"]: d["n"] for d in self.db.results.aggregate([
            {"$match": {"run_id": run_id}},
            {"$group": {"_id": {"k": f"${field}", "i": "$inference_id"}}},
            {"$group": {"_id": "$_id.k", "n": {"$sum": 1}}},
        ])}
        failed = {d["_id"]: d["n"] for d in self.db.failures.aggregate([
            {"$match": {"run_id": run_id}}, {"$group": {"_id": f"${field}", "n": {"$sum": 1}}},
        ])}
        return done, failed

    def results_for_model(self, model_key: str) -> list[dict[str, Any]]:
        return self.latest_results({"model_key": model_key})

    def latest_results(self, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The newest result of each (model, module, dataset, split, variant, processor): what tables and
        exports show. Results of older revisions or processor versions stay stored, superseded, and a result
        not yet re-scored after a version bump is shown until its successor exists."""
        key = {k: f"${k}" for k in ("model_key", "module", "dataset", "split", "variant", "processor", "processor_spec")}
        pipeline = [{"$match": query or {}}, {"$sort": {"created_at": -1, "_id": 1}},
                    {"$group": {"_id": key, "doc": {"$first": "$$ROOT"}}}, {"$replaceRoot": {"newRoot": "$doc"}},
                    {"$sort": {"model_name": 1, "dataset": 1, "split": 1, "variant": 1, "processor": 1}}]
        return list(self.db.results.aggregate(pipeline, allowDiskUse=True))

    def iter_results(self, query: dict | None = None) -> Iterator[dict[str, Any]]:
        return self.db.results.find(query or {}).sort("_id", ASCENDING)

    def count(self, collection: str, query: dict | None = None) -> int:
        return self.db[collection].count_documents(query or {})

    # -- claims -----------------------------------------------------------------------------------
    def save_verdicts(self, model_key: str, model_revision: str, docs: list[dict[str, Any]]) -> None:
        """Store the verdicts on one model revision's claims, one document per claim ``position`` (``_id``
        ``<model key>@<revision>#<position>``, an idempotent replace); a stored verdict on a position the
        claims no longer have is deleted."""
        now = utcnow()
        ids = [f"{model_key}@{model_revision}#{d['position']}" for d in docs]
        ops = [ReplaceOne({"_id": i}, {**d, "_id": i, "model_key": model_key, "model_revision": model_revision,
                                       "judged_at": now}, upsert=True) for i, d in zip(ids, docs)]
        if ops:
            self.db.claims.bulk_write(ops, ordered=False)
        self.db.claims.delete_many({"model_key": model_key, "model_revision": model_revision, "_id": {"$nin": ids}})

    def verdicts(self, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Stored verdicts matching ``query``, by model and claim position."""
        return list(self.db.claims.find(query or {}).sort([("model_key", ASCENDING), ("model_revision", ASCENDING),
                                                            ("order", ASCENDING)]))

    def judged_revisions(self) -> set[tuple[str, str]]:
        """The (model key, model revision) pairs with stored verdicts."""
        return {(d["_id"]["k"], d["_id"]["r"]) for d in self.db.claims.aggregate(
            [{"$group": {"_id": {"k": "$model_key", "r": "$model_revision"}}}])}

    # -- failures and runs ----------------------------------------------------------------------
    def record_failure(self, failure_id: str, doc: dict[str, Any]) -> None:
        now = utcnow()
        self.db.failures.update_one(
            {"_id": failure_id},
            {"$set": {**doc, "last_at": now}, "$inc": {"attempts": 1}, "$setOnInsert": {"first_at": now}},
            upsert=True,
        )

    def failure_attempts(self, failure_id: str) -> int:
        """How often the task has failed so far (0: never, or it succeeded since)."""
        doc = self.db.failures.find_one({"_id": failure_id}, {"attempts": 1}) or {}
        return int(doc.get("attempts") or 0)

    def failures(self, query: dict[str, Any] | None = None, projection: dict | None = None) -> list[dict[str, Any]]:
        return list(self.db.failures.find(query or {}, projection))

    def start_run(self, run_id: str, doc: dict[str, Any]) -> None:
        """Record a run once (a retry after an insert whose acknowledgement was lost finds it there)."""
        try:
            self.db.runs.insert_one({**doc, "_id": run_id, "started_at": utcnow(), "status": "running"})
        except DuplicateKeyError:
            pass

    def update_run(self, run_id: str, **fields: Any) -> None:
        self.db.runs.update_one({"_id": run_id}, {"$set": fields})

    def finish_run(self, run_id: str, status: str, counts: dict[str, Any]) -> None:
        self.db.runs.update_one({"_id": run_id}, {"$set": {"status": status, "ended_at": utcnow(), "counts": counts}})

    def last_run(self) -> dict[str, Any] | None:
        return self.db.runs.find_one(sort=[("started_at", -1)])

    # -- datasets' examples, sync state, saved options ---------------------------------------------
    def dataset_examples(self, dataset: str) -> list[dict[str, Any]]:
        return list(self.db.dataset_examples.find({"dataset": dataset}))

    def sync_state(self, state_id: str) -> dict[str, Any]:
        """What a zoo sync remembers between runs (its watermark, ...), or {}."""
        return self.db.sync_state.find_one({"_id": state_id}) or {}

    def save_sync_state(self, state_id: str, doc: dict[str, Any]) -> None:
        self.db.sync_state.replace_one({"_id": state_id}, doc, upsert=True)

    def save_control(self, control_id: str, doc: dict[str, Any]) -> None:
        """A small named document of the service's own (e.g. the options of the last cycle)."""
        self.db.control.replace_one({"_id": control_id}, {**doc, "_id": control_id, "saved_at": utcnow()}, upsert=True)

    def load_control(self, control_id: str) -> dict[str, Any] | None:
        return self.db.control.find_one({"_id": control_id})

    # -- the cycle lock ---------------------------------------------------------------------------
    def lock_acquire(self, name: str, token: str, fields: dict[str, Any]) -> bool:
        """Take the lock ``name`` for ``token`` if it is free, expired or already ours; False when held."""
        try:
            self.db.locks.find_one_and_update(
                {"_id": name, "$or": [{"expires_at": {"$lte": utcnow()}}, {"holder": token}]},
                {"$set": {**fields, "holder": token}}, upsert=True)
            return True
        except DuplicateKeyError:
            return False

    def lock_holder(self, name: str) -> dict[str, Any] | None:
        return self.db.locks.find_one({"_id": name})

    def lock_take_over(self, name: str, old_token: str | None, token: str, fields: dict[str, Any]) -> bool:
        """Take the lock from the holder ``old_token`` (atomically: only one taker wins)."""
        res = self.db.locks.update_one({"_id": name, "holder": old_token}, {"$set": {**fields, "holder": token}})
        return res.modified_count == 1

    def lock_renew(self, name: str, token: str, expires_at: dt.datetime) -> bool | None:
        """Extend our lock; False when it is no longer ours, None when MongoDB could not be asked."""
        try:
            res = self.db.locks.update_one({"_id": name, "holder": token}, {"$set": {"expires_at": expires_at}})
        except PyMongoError:
            return None
        return res.matched_count == 1

    def lock_release(self, name: str, token: str) -> None:
        try:
            self.db.locks.delete_one({"_id": name, "holder": token})
        except PyMongoError:
            pass  # it expires by itself

    # -- the scheduler's job store ----------------------------------------------------------------
    def scheduler_jobstore(self, collection: str):
        """An APScheduler job store in this database, with its own client (the job store closes it)."""
        from apscheduler.jobstores.mongodb import MongoDBJobStore

        client = MongoClient(self.uri, tz_aware=True, serverSelectionTimeoutMS=15000)
        return MongoDBJobStore(database=self.db_name, collection=collection, client=client)

    def scheduler_job(self, collection: str, job_id: str) -> dict[str, Any] | None:
        return self.db[collection].find_one({"_id": job_id}, {"next_run_time": 1})

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

    # -- planning watermarks ----------------------------------------------------------------------
    #: The model fields planning reads (pipeline.planner.MODEL_PROJECTION): a change to any of them sets the
    #: model's ``changed_at``, so a planning watermark never hides the work the change makes.
    PLANNING_FIELDS = ("name", "source", "revision", "task", "status", "datasets", "inferred_datasets", "library",
                       "files", "config", "adapter")
    _MARKS_DROPPED = "plan_marks_dropped"

    def server_time(self) -> dt.datetime:
        """MongoDB's clock (the one ``changed_at`` is set by), so watermarks never depend on a client's clock."""
        now = self.db.command("hello")["localTime"]  # commands decode dates naive (UTC)
        return now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)

    #: A model write registered longer ago than this is taken for one whose writer died (its registration is
    #: dropped, so it no longer holds planning watermarks back); no live batch of 5,000 models takes this long.
    STALE_MODEL_WRITE = dt.timedelta(hours=1)

    def planning_as_of(self) -> dt.datetime:
        """The time a planning pass starting now may record as its watermark: MongoDB's clock, or the start of the
        oldest model write still in flight (``_model_writes``) when that is earlier."""
        now = self.server_time()  # before reading the registrations: one not seen yet is stamped after ``now``
        self.db.model_writes_in_flight.delete_many({"since": {"$lt": now - self.STALE_MODEL_WRITE}})
        oldest = self.db.model_writes_in_flight.find_one({}, {"since": 1}, sort=[("since", ASCENDING)])
        return min(now, oldest["since"]) if oldest else now

    def plan_marks(self, unit_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored planning watermarks of these work units, by unit id."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(unit_ids), 20_000):
            found.update((d["_id"], d) for d in self.db.plan_marks.find({"_id": {"$in": unit_ids[start:start + 20_000]}}))
        return found

    def advance_plan_marks(self, units: dict[str, dict[str, Any]], as_of: dt.datetime) -> int:
        """Record that every candidate of each unit (unit id -> fields describing it) stood stored or as a failure
        at ``as_of``; a mark only moves forward. Marks dropped at or after ``as_of`` (results deleted meanwhile)
        are not brought back. Returns how many units were marked."""
        ops = [UpdateOne({"_id": uid}, {"$set": fields, "$max": {"complete_as_of": as_of}}, upsert=True)
               for uid, fields in units.items()]
        for start in range(0, len(ops), 10_000):
            self.db.plan_marks.bulk_write(ops[start:start + 10_000], ordered=False)
        dropped = self.db.control.find_one({"_id": self._MARKS_DROPPED}) or {}
        if dropped.get("at") and dropped["at"] >= as_of:  # a deletion raced this cycle: trust none of its marks
            self.db.plan_marks.delete_many({"_id": {"$in": list(units)}})
            return 0
        return len(ops)

    def drop_plan_marks(self) -> int:
        """Forget every planning watermark (the next cycle plans every candidate); returns how many."""
        self.db.control.update_one({"_id": self._MARKS_DROPPED}, {"$currentDate": {"at": True}}, upsert=True)
        return self.db.plan_marks.delete_many({}).deleted_count

    def delete_results(self, query: dict[str, Any]) -> int:
        """Delete the results ``query`` selects, and every planning watermark (their tasks are planned again);
        returns how many results."""
        deleted = self.db.results.delete_many(query).deleted_count
        self.drop_plan_marks()  # after the deletion: a cycle that saw the results before it keeps no mark
        return deleted


__all__ = ["Store", "Update", "DUPLICATE_KEY", "database_unavailable", "utcnow"]
