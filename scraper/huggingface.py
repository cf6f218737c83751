"""The ``huggingface`` source: keep the store in step with the Hugging Face Hub, incrementally.

For each supported task the Hub's models are listed newest first (``sort=lastModified``). A model not in
the store is inserted, one whose commit sha changed gets the new ``revision`` (so its task identities
change and the rest of the system re-evaluates it), the rest are left untouched: an unchanged Hub costs
one listing page per task and no write. Listing stops at the task's watermark (the newest lastModified of
its last complete listing, in ``sync_state``) unless ``full=True``. Only a full listing that reached its
end marks the models it did not see as ``removed`` (their results stay; a removed model that shows up
again is active again), never a listing that failed or was cut by ``limit``.

Details (files with sizes, config.json, the model card's license, datasets, base_model and arXiv/DOI
references) are fetched for new and changed models of the supported tasks, 4 at a time, and recorded
with ``details_revision``; a model whose details could not be fetched keeps ``details_pending`` and is
tried again by the next sync. A broken card or config is stored as far as it could be read, with a note.

Gated and private repos (the token is ``HF_TOKEN`` or the logged-in one, as huggingface_hub sends it; the
store keeps a 16-hex sha256 fingerprint of it, never the token: ``access_token`` of a model, ``token`` of
a listing's ``sync_state``):

* A gated repo whose files this sync's token cannot read (the Hub shows everyone its model_info and file
  list) is stored with the listing data, ``gated``, ``files`` and ``access: "gated"`` with
  ``access_note`` "gated: needs an HF_TOKEN with access", and is neither pending nor a detail failure.
  Its details are tried again by a sync that has a token, when that token is not the one refused
  (a token appeared or changed) or the refusal is older than ``gated_recheck`` (7 days: a manual approval
  of the same token); never by a sync without a token. A listing that shows it no longer gated makes its
  details pending. Once fetched, the access fields are cleared and the model is evaluable.
* A private repo is listed only for a token with access (stored with ``private: true``). Another token sees
  other private repos, so a listing continues from the watermark only when it was made with the same
  endpoint and the same token: the first sync with another token (or none) lists everything. When that
  listing completes, a private model it did not show is marked ``removed`` like a deleted one (the Hub
  cannot tell them apart), with ``access: "private"`` and a note that it may only be hidden from this
  token; a listing that shows it again makes it active again and clears the note.

Hub etiquette (retries, rate limits, an unreachable endpoint) is scraper.hub_client's :class:`HubClient`, through
which every request goes.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Callable

from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

from core.collector import collector_paused
from core.store import Update
from modules.hf import GATED
from scraper.hub_client import HubClient, HubRequestFailed, HubUnreachable, RetryPolicy, error_line
from scraper.repo_metadata import (
    WEIGHT_SUFFIXES,
    as_list,
    card_claims,
    config_fields,
    find_references,
    parse_card,
    read_json_object,
)

SOURCE = "huggingface"


def supported_tasks() -> tuple[str, ...]:
    """The Hub pipeline tags of the models the installed task kinds evaluate (what a sync lists)."""
    from tasks.base import zoo_tasks

    return tuple(sorted(zoo_tasks(SOURCE)))


GATED_NOTE = GATED  # modules.hf says the same when a load is refused
PRIVATE_NOTE = "private: not visible without an HF_TOKEN with access (or deleted)"
GATED_RECHECK = dt.timedelta(days=7)
ACCESS_FIELDS = ("access", "access_note", "access_token", "access_checked_at")


def _parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


@dataclasses.dataclass
class _Listing:
    """How one task's listing went."""

    task: str
    watermark: dt.datetime | None
    newest: dt.datetime | None = None
    listed: int = 0
    reached_end: bool = False
    reached_watermark: bool = False
    error: str | None = None

    @property
    def complete(self) -> bool:
        """Everything changed since the watermark (or everything, with none) was seen."""
        return self.error is None and (self.reached_end or self.reached_watermark)


class _Sync:
    """One run of :func:`sync_huggingface` (its counters, the ids it saw, the time spent in MongoDB)."""

    def __init__(self, store, client: HubClient, *, limit: int | None, progress: bool, page_size: int, write_batch: int,
                 gated_recheck: dt.timedelta = GATED_RECHECK) -> None:
        self.store, self.client = store, client
        self.limit, self.progress = limit, progress
        self.page_size, self.write_batch = page_size, write_batch
        self.gated_recheck = gated_recheck
        self.counts = dict(listed=0, new=0, changed=0, restored=0, unchanged=0, removed=0, details_fetched=0,
                           detail_failures=0, gated=0, private_hidden=0, failed_listings=0)
        self.store_seconds = 0.0
        self.seen: set[str] = set()  # ids listed by full listings (for removals)
        self.listed_ids: list[str] = []  # with a limit, the ids listed in this run (details are limited to them)

    def _db(self, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.store_seconds += time.perf_counter() - start

    # -- listing ------------------------------------------------------------------------------------
    def list_task(self, task: str, watermark: dt.datetime | None) -> _Listing:
        """List ``task`` newest first down to ``watermark`` (all with None), storing as it goes."""
        from tqdm import tqdm

        result = _Listing(task, watermark)
        batch: list[dict[str, Any]] = []
        bar = tqdm(desc=f"huggingface {task}", unit=" models", disable=not self.progress, leave=False)
        try:
            for page in self.client.list_pages(task, self.page_size):
                stop = False
                for item in page:
                    modified = item["_modified"] = _parse_time(item.get("lastModified"))
                    if watermark is not None and modified is not None and modified < watermark:
                        result.reached_watermark = stop = True
                        break
                    if modified is not None and (result.newest is None or modified > result.newest):
                        result.newest = modified
                    batch.append(item)
                    result.listed += 1
                    if self.limit is not None and result.listed >= self.limit:
                        stop = True
                        break
                bar.update(len(page))
                if len(batch) >= self.write_batch:
                    self._store_listed(batch, task, watermark is None)
                    batch = []
                    bar.set_postfix(new=self.counts["new"], changed=self.counts["changed"])
                if stop:
                    break
            else:
                result.reached_end = True
        except HubRequestFailed as exc:
            result.error = str(exc)
        finally:
            self._store_listed(batch, task, watermark is None)
            bar.close()
        return result

    def _store_listed(self, items: list[dict[str, Any]], task: str, full_listing: bool) -> None:
        """Insert the unknown models, update the changed ones, write nothing for the rest.

        The ``$in`` lookup already says which models are unknown, so they are inserted (about 5 times
        faster than upserts on mongod 6); one inserted meanwhile by another sync is upserted instead."""
        if not items:
            return
        by_id = {f"{SOURCE}/{it['id']}": it for it in items}
        ids = list(by_id)
        if self.limit is not None:
            self.listed_ids += ids
        if full_listing:
            self.seen.update(ids)
        # the access fields, and the planning fields a listing sets (Store.update_models need not read them again)
        projection = dict.fromkeys(("revision", "status", "gated", "private", "access", "name", "source", "task",
                                    "library"), 1)
        known = self._db(lambda: {d["_id"]: d for d in self.store.find_models({"_id": {"$in": ids}}, projection)})
        now = dt.datetime.now(dt.timezone.utc)
        new_docs: list[dict[str, Any]] = []
        updates: list[Update] = []
        for _id, it in by_id.items():
            old = known.get(_id)
            access = self._listed_access(it)
            new_revision = old is None or old.get("revision") != it.get("sha")
            readable_now = old is not None and old.get("access") == "gated" and not access["gated"]  # gating lifted
            if not new_revision and old.get("status") == "active":
                self.counts["unchanged"] += 1
                changes = {k: v for k, v in access.items() if (old.get(k) or False) != (v or False)}
                if readable_now:
                    changes["details_pending"] = True
                if changes:  # gating or visibility changed without a new commit
                    updates.append(Update({"_id": _id}, set=changes))
                continue
            self.counts["new" if old is None else "changed" if new_revision else "restored"] += 1
            doc = {"name": it["id"], "source": SOURCE, "task": it.get("pipeline_tag") or task, "revision": it.get("sha"),
                   "last_modified": it["_modified"], "library": it.get("library_name"),
                   "tags": it.get("tags") or [], "status": "active", "scraped_at": now, **access}
            if new_revision or readable_now:
                doc["details_pending"] = True
            if old is None:
                new_docs.append({"_id": _id, **doc, "first_seen": now})
            elif old.get("access") == "private" or readable_now:  # listed, so visible (and readable) again
                updates.append(Update({"_id": _id}, set=doc, unset=[k for k in ACCESS_FIELDS if k not in doc]))
            else:
                updates.append(Update({"_id": _id}, set=doc))
        self.counts["listed"] += len(items)
        for doc in self._db(lambda: self.store.insert_new_models(new_docs)):  # inserted meanwhile by another sync
            doc = dict(doc)
            _id, first_seen = doc.pop("_id"), doc.pop("first_seen")
            updates.append(Update({"_id": _id}, set=doc, set_on_insert={"first_seen": first_seen}, upsert=True))
        if updates:
            self._db(lambda: self.store.update_models(updates, before=known))

    @staticmethod
    def _listed_access(item: dict[str, Any]) -> dict[str, Any]:
        """A listed model's gating and visibility."""
        return {"gated": item.get("gated") or False, "private": bool(item.get("private"))}

    def _access_fields(self, access: str, now: dt.datetime) -> dict[str, Any]:
        return {"access": access, "access_note": GATED_NOTE if access == "gated" else PRIVATE_NOTE,
                "access_token": self.client.token_fingerprint, "access_checked_at": now}

    def mark_removed(self, tasks: list[str]) -> int:
        """Models of ``tasks`` (whose full listings completed) that no listing showed: status removed; private
        ones also get ``access: "private"`` (counted as private_hidden, not in the returned number removed)."""
        if not tasks:
            return 0
        query = {"source": SOURCE, "status": "active", "task": {"$in": tasks}}
        gone = self._db(lambda: [d["_id"] for d in self.store.find_models(query, {"_id": 1}) if d["_id"] not in self.seen])
        now = dt.datetime.now(dt.timezone.utc)
        hidden = 0
        for start in range(0, len(gone), 10_000):
            chunk = gone[start:start + 10_000]
            self._db(lambda: self.store.update_models_where({"_id": {"$in": chunk}, "status": "active"},
                                                            {"status": "removed", "removed_at": now}))
            # a private repo this token does not see looks deleted: say it may only be hidden
            hidden += self._db(lambda: self.store.update_models_where({"_id": {"$in": chunk}, "private": True},
                                                                      self._access_fields("private", now)))
        self.counts["private_hidden"] += hidden
        return len(gone) - hidden

    # -- details ------------------------------------------------------------------------------------
    def fetch_details(self, tasks: list[str], workers: int) -> None:
        """Details of every active model of ``tasks`` still pending them, and of gated ones worth trying again
        with this sync's token (see the module docstring); only those listed now, with a limit."""
        from tqdm import tqdm

        query: dict[str, Any] = {"source": SOURCE, "status": "active", "task": {"$in": tasks}, "$or": [{"details_pending": True}]}
        fp = self.client.token_fingerprint
        if fp is not None:
            stale = dt.datetime.now(dt.timezone.utc) - self.gated_recheck
            query["$or"].append({"access": "gated",
                                 "$or": [{"access_token": {"$ne": fp}}, {"access_checked_at": {"$lt": stale}}]})
        if self.limit is not None:
            query["_id"] = {"$in": self.listed_ids}
        pending = self._db(lambda: self.store.find_models(query, {"name": 1, "revision": 1}))
        if not pending:
            return
        ops: list[Update] = []
        refs: dict[str, dict[str, str]] = {}
        bar = tqdm(total=len(pending), desc="huggingface details", unit=" models", disable=not self.progress, leave=False)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hub-details")
        try:
            futures = {pool.submit(self._details, doc) for doc in pending}
            while futures:
                done, futures = wait(futures, timeout=5, return_when=FIRST_EXCEPTION)
                for fut in done:
                    op, model_refs, outcome = fut.result()  # HubUnreachable ends the sync
                    self.counts[outcome] += 1
                    ops.append(op)
                    refs.update(model_refs)
                    bar.update(1)
                if len(ops) >= 500 or not futures:
                    self._write_details(ops, refs)
                    ops, refs = [], {}
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._write_details(ops, refs)
            bar.close()

    def _write_details(self, ops: list[Update], refs: dict[str, dict[str, str]]) -> None:
        if ops:
            self._db(lambda: self.store.update_models(ops))
        if refs:
            self._db(lambda: self.store.upsert_named("references", refs.values()))

    def _details(self, doc: dict[str, Any]) -> tuple[Update, dict[str, dict[str, str]], str]:
        """The update with one model's details (or with why they could not be fetched), its references, and
        the counter it adds to: details_fetched, detail_failures or gated."""
        from scraper.adapters import hub_adapter

        name, revision = doc["name"], doc["revision"]
        target = {"_id": doc["_id"], "revision": revision}  # a newer listing wins over late details
        now = dt.datetime.now(dt.timezone.utc)
        done = ["details_pending", "details_error", "details_attempts"]
        info = None
        try:
            info = self.client.model_info(name, revision)
            files = {s.rfilename: s.size for s in info.siblings or []}
            config_text = self.client.read_text(name, "config.json", revision) if "config.json" in files else None
            card_text = self.client.read_text(name, "README.md", revision) if "README.md" in files else None
            setfit_text = self.client.read_text(name, "config_setfit.json", revision) if "config_setfit.json" in files else None
            adapter = hub_adapter(self.client, name, revision, files, card_text)  # PEFT: the pinned base
        except GatedRepoError:  # the Hub shows a gated repo's model_info to everyone, its files to tokens with access
            fields = self._access_fields("gated", now)
            if info is not None:
                fields.update(gated=info.gated or "manual", tags=info.tags or [], library=info.library_name,
                              files={s.rfilename: s.size for s in info.siblings or []})
            return Update(target, set=fields, unset=done), {}, "gated"
        except (HfHubHTTPError, HubRequestFailed) as exc:
            return Update(target, set={"details_error": error_line(exc)}, inc={"details_attempts": 1}), {}, "detail_failures"
        fields, refs = model_details(info, files, config_text, card_text, setfit_text)
        fields.update(adapter)
        fields.update(details_revision=revision, details_at=now, gated=info.gated or False, private=bool(info.private))
        # readable now: no access state, and no reason left over from when there were no details to infer from
        cleared = [*done, *ACCESS_FIELDS, "unevaluated_reason"]
        return Update(target, set=fields, unset=cleared), {r["name"]: r for r in refs}, "details_fetched"


def model_details(info: Any, files: dict[str, int | None], config_text: str | None,
                  card_text: str | None, setfit_text: str | None = None) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The model document fields read from a ``ModelInfo``, config.json (and a SetFit repo's
    config_setfit.json) and README.md, and the references (arXiv ids and DOIs in the card and the Hub's
    tags). What cannot be read becomes a note. The config fields are those scraper.repo_metadata.config_fields
    keeps (Transformers', timm's and SetFit's); the card's performance claims those of
    scraper.repo_metadata.card_claims, for the revision ``info.sha``."""
    notes: list[str] = []
    if config_text is None:
        notes.append("config.json is missing")
    config = read_json_object(config_text, "config.json", notes)
    setfit = read_json_object(setfit_text, "config_setfit.json", notes)
    card: dict[str, Any] = {}
    if card_text is None:
        notes.append("no model card (README.md)")
    else:
        card, _, card_notes = parse_card(card_text)
        notes += card_notes
    if not card.get("pipeline_tag"):
        notes.append(f"the model card declares no pipeline_tag (the Hub's is {info.pipeline_tag!r})")
    if not any(f.endswith(WEIGHT_SUFFIXES) for f in files):
        notes.append("no weight files")
    refs = find_references("\n".join([card_text or "", *(info.tags or [])]))
    fields = {
        "tags": info.tags or [],
        "library": info.library_name or card.get("library_name"),
        "datasets": as_list(card.get("datasets")),
        "license": card.get("license"),
        "base_model": card.get("base_model"),
        "files": files,
        "config": config_fields(config, setfit),
        "references": [r["name"] for r in refs],
        "notes": notes,
        **card_claims(card, info.sha),
    }
    return fields, refs


def sync_huggingface(store, endpoint: str | None = None, token: str | None = None,
                     tasks: tuple[str, ...] | list[str] | None = None, limit: int | None = None, full: bool = False,
                     progress: bool = True, log: Callable[[str], Any] = print, *, details: bool = True,
                     retry: RetryPolicy | None = None, page_size: int = 1000, write_batch: int = 5000,
                     workers: int = 4, gated_recheck: dt.timedelta = GATED_RECHECK) -> dict[str, Any]:
    """Bring the store's ``huggingface`` models in step with the Hub (``endpoint``, default ``HF_ENDPOINT``).

    ``limit``: list at most that many models per task (such a listing never advances the watermark nor
    removes anything); ``full``: ignore the watermarks and mark what a complete listing did not show as
    removed (a listing with another token than the last one's is full too); ``details``: fetch the details
    of new and changed models; ``page_size``: the listing's ``limit`` parameter (the Hub allows up to
    1,000); ``token``: default ``HF_TOKEN`` or the logged-in token; ``gated_recheck``: how long a gated
    model refused to a token waits before that same token tries again. Returns counts: listed, new,
    changed, restored (removed, listed again), unchanged, removed, details_fetched, detail_failures, gated
    (gated models whose files this token cannot read), private_hidden (private models a complete listing
    with this token did not show: removed, with a note), failed_listings, seconds, store_seconds (time
    spent in MongoDB). Raises :class:`HubUnreachable` when the endpoint cannot be reached."""
    from huggingface_hub import constants as hub_constants

    if hub_constants.is_offline_mode():
        raise HubUnreachable("HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set in this process, so huggingface_hub "
                             "makes no requests: unset it to scrape the Hub")
    started = time.perf_counter()
    tasks = tuple(tasks or supported_tasks())
    client = HubClient(endpoint, token, retry, log)
    sync = _Sync(store, client, limit=limit, progress=progress, page_size=page_size, write_batch=write_batch,
                 gated_recheck=gated_recheck)
    removable: list[str] = []
    # listing, storing and removals make many objects and no reference cycles: collections would find nothing
    with collector_paused():
        for task in tasks:
            state_id = f"{SOURCE}:{task}"
            state = sync._db(lambda: store.sync_state(state_id))
            same_view = state.get("endpoint") == client.endpoint and state.get("token") == client.token_fingerprint
            watermark = _utc(state.get("watermark")) if not full and same_view else None
            result = sync.list_task(task, watermark)
            how = f"since {watermark.isoformat()}" if watermark else "full listing"
            if state and not same_view and not full:
                how += ": the last one was made with another endpoint or HF_TOKEN"
            if result.error:
                sync.counts["failed_listings"] += 1
                log(f"huggingface {task}: listing failed after {result.listed} models ({how}): {result.error}; "
                    "what was listed is stored, the watermark is unchanged and nothing is marked removed")
                continue
            log(f"huggingface {task}: {result.listed} models listed ({how})"
                + ("" if result.complete else f", stopped at --limit {limit}"))
            if not result.complete:
                continue
            newest = max(filter(None, [result.newest, watermark]), default=None)
            sync._db(lambda: store.save_sync_state(state_id, {
                "endpoint": client.endpoint, "token": client.token_fingerprint, "watermark": newest,
                "completed_at": dt.datetime.now(dt.timezone.utc), "full": watermark is None, "listed": result.listed}))
            if watermark is None:
                removable.append(task)
        sync.counts["removed"] = sync.mark_removed(removable)
    if details:
        sync.fetch_details(list(tasks), workers)
    counts: dict[str, Any] = dict(sync.counts)
    counts.update(seconds=round(time.perf_counter() - started, 3), store_seconds=round(sync.store_seconds, 3))
    log("huggingface sync: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts
